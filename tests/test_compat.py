"""Code written for the reference implementation runs with only its import changed."""

from __future__ import annotations

import pytest

from rlm_host.errors import ConfigError
from rlm_host.testing import ScriptedLM

CONTEXT = "Clause 121 (termination fee). The Customer pays a termination fee of EUR 48,500.\n" * 3


@pytest.mark.docker
def test_reference_style_script_runs() -> None:
    """RLM(backend='openai', backend_kwargs=..., environment='docker', ...).completion(prompt) works."""
    with ScriptedLM() as lm:
        lm.script("gpt-root", ["```repl\nhits = search('termination fee')\n"
                               "fee = llm_query('Fee?', hits[0].snippet)\n```",
                               "FINAL_VAR(fee)"])
        lm.rule("gpt-sub", lambda messages: "EUR 48,500")
        # --- written the reference implementation's way; only the import differs ---
        from rlm_host.compat import RLM

        rlm = RLM(
            backend="openai",
            backend_kwargs={"model_name": "gpt-root", "base_url": lm.base_url, "api_key": "sk-test"},
            environment="docker",
            max_iterations=5,
            max_depth=1,
            other_backends=["openai"],
            other_backend_kwargs=[{"model_name": "gpt-sub"}],
        )
        completion = rlm.completion(CONTEXT, root_prompt="What is the termination fee?")
        # ------------------------------------------------------------------------
    assert completion.response == "EUR 48,500"
    assert completion.root_model == "gpt-root"
    assert completion.usage_summary["gpt-sub"]["calls"] == 1
    assert completion.usage_summary["gpt-root"]["calls"] == 2
    assert completion.result.stopped == "final"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"backend": "anthropic", "backend_kwargs": {"model_name": "claude"}}, "OpenAI-compatible API"),
        ({"backend_kwargs": {"model_name": "m"}, "environment": "modal"}, "third-party cloud sandbox"),
        ({"backend_kwargs": {"model_name": "m"}, "environment_kwargs": {"image": "python:3.11"}}, "policy"),
        ({"backend_kwargs": {"model_name": "m"}, "depth": 1}, "leave it at 0"),
        ({"backend_kwargs": {"model_name": "m"}, "logger": object()}, "records every run"),
        ({"backend_kwargs": {}}, "needs 'model_name'"),
        ({"backend_kwargs": {"model_name": "m"}, "persistent": True}, "unknown argument"),
        ({"backend_kwargs": {"model_name": "m", "base_url": "http://127.0.0.1:9/v1"}, "other_backends": ["openai"],
          "other_backend_kwargs": [{"model_name": "s", "base_url": "http://127.0.0.1:8/v1"}]}, "same endpoint"),
    ],
)
def test_arguments_without_meaning_here_are_refused(kwargs: dict, needle: str) -> None:
    """Each refused argument says why in one line."""
    from rlm_host.compat import RLM

    with pytest.raises(ConfigError, match=needle):
        RLM(**kwargs)


def test_max_sub_tokens_becomes_the_policys_token_budget() -> None:
    """max_sub_tokens caps the run's sub-call tokens (the policy's max_total_tokens); max_depth stays set too."""
    from rlm_host.compat import RLM

    rlm = RLM(backend_kwargs={"model_name": "m", "base_url": "http://127.0.0.1:9/v1"}, max_depth=2,
              max_sub_tokens=5000, custom_system_prompt="Be brief.")
    limits = rlm._rlm.policy.subcalls
    assert limits.max_total_tokens == 5000 and limits.max_depth == 2
    assert rlm._rlm.opening[0]["content"] == "Be brief." and rlm._rlm.sub_model == "m"
