"""Run code written for the reference implementation (PyPI ``rlms``) on rlm-host.

Change ``from rlm import RLM`` to ``from rlm_host.compat import RLM``; the rest
stays. Every run happens in the hardened sandbox, whatever ``environment`` says.
Arguments that have no sound meaning here are refused with the reason (see
``docs/compat.md`` for the whole mapping).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .results import RLMResult
from .rlm.loop import RLM as _RLM
from .rlm.config import Generation, Models

OPENAI_COMPATIBLE = {"openai", "vllm", "openrouter"}
REPL_ENVIRONMENTS = {"local", "docker", "ipython"}
CLOUD_ENVIRONMENTS = {"modal", "prime", "daytona", "e2b"}
DEFAULT_TASK = "The task is given in `context`: read it and do what it asks."


@dataclass
class RLMChatCompletion:
    """What ``completion`` returns, shaped like the reference's; ``result`` has everything else."""

    root_model: str
    prompt: Any
    response: str
    usage_summary: dict[str, dict[str, Any]]
    execution_time: float
    result: RLMResult = field(repr=False)


class RLM:
    """The reference implementation's constructor and ``completion``, on rlm-host."""

    def __init__(
        self,
        backend: str = "openai",
        backend_kwargs: dict[str, Any] | None = None,
        environment: str = "local",
        environment_kwargs: dict[str, Any] | None = None,
        depth: int = 0,
        max_depth: int = 1,
        max_iterations: int = 30,
        max_root_tokens: int | None = None,
        max_sub_tokens: int | None = None,
        custom_system_prompt: str | None = None,
        other_backends: list[str] | None = None,
        other_backend_kwargs: list[dict[str, Any]] | None = None,
        logger: Any = None,
        verbose: bool = False,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise ConfigError(f"rlm_host.compat.RLM: unknown argument(s) {', '.join(sorted(unknown))}")
        model, base_url, api_key = _backend(backend, backend_kwargs)
        sub_model = _sub_model(other_backends, other_backend_kwargs, base_url)
        policy = _environment(environment, environment_kwargs)
        _refuse_if(depth != 0, "depth is set by rlm-host for child RLMs; leave it at 0")
        _refuse_if(max_root_tokens is not None, "max_root_tokens is not supported; bound the root model "
                                                "with max_iterations")
        _refuse_if(logger is not None, "rlm-host records every run itself (the result's trajectory and events); "
                                       "pass logger=None")
        self.backend_kwargs = dict(backend_kwargs or {})
        rlm = _RLM(Models(model, sub_model=sub_model, base_url=base_url, api_key=api_key),
                   generation=Generation(system_prompt=custom_system_prompt), policy=policy,
                   max_iterations=max_iterations, max_depth=max_depth, on_event=_printer() if verbose else None)
        if max_sub_tokens is not None:
            rlm = rlm.with_policy(rlm.policy.with_subcalls(max_total_tokens=max_sub_tokens))
        self._rlm = rlm

    def completion(self, prompt: str | list[Any] | dict[str, Any], root_prompt: str | None = None) -> RLMChatCompletion:
        """``prompt`` is the context (loaded into the REPL); ``root_prompt`` the question, if any."""
        started = time.monotonic()
        text = prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False, indent=1)
        result = self._rlm.complete(root_prompt or DEFAULT_TASK, text)
        usage = {u.model: {"calls": u.calls, "input_tokens": u.prompt_tokens,
                           "output_tokens": u.completion_tokens, "cost_usd": u.cost_usd} for u in result.usage}
        return RLMChatCompletion(root_model=self._rlm.model, prompt=prompt, response=result.answer,
                                 usage_summary=usage, execution_time=time.monotonic() - started, result=result)


def _refuse_if(condition: bool, why: str) -> None:
    if condition:
        raise ConfigError(f"rlm_host.compat.RLM: {why}")


def _backend(backend: str, kwargs: dict[str, Any] | None) -> tuple[str, str | None, str | None]:
    _refuse_if(backend not in OPENAI_COMPATIBLE,
               f"backend {backend!r} is not supported: rlm-host speaks the OpenAI-compatible API; use "
               "backend='openai' with backend_kwargs base_url pointing at a compatible endpoint")
    kwargs = dict(kwargs or {})
    model = kwargs.pop("model_name", None)
    _refuse_if(not model, "backend_kwargs needs 'model_name'")
    base_url, api_key = kwargs.pop("base_url", None), kwargs.pop("api_key", None)
    _refuse_if(backend == "openrouter" and base_url is None, "backend 'openrouter' needs backend_kwargs base_url")
    _refuse_if(bool(kwargs), f"backend_kwargs {sorted(kwargs)} are not supported (model_name, base_url, api_key are)")
    return model, base_url, api_key


def _sub_model(backends: list[str] | None, kwargs: list[dict[str, Any]] | None, base_url: str | None) -> str | None:
    if not backends:
        return None
    if len(backends) != 1 or not kwargs or len(kwargs) != 1:
        raise ConfigError("rlm_host.compat.RLM: other_backends takes one sub-model backend with one "
                          "other_backend_kwargs entry")
    model, other_url, _key = _backend(backends[0], kwargs[0])
    _refuse_if(other_url not in (None, base_url), "the sub-model must be served by the same endpoint "
                                                  "(one base_url per run)")
    return model


def _environment(environment: str, kwargs: dict[str, Any] | None) -> str:
    _refuse_if(environment in CLOUD_ENVIRONMENTS,
               f"environment {environment!r} runs code in a third-party cloud sandbox; rlm-host always runs it "
               "in its own hardened local sandbox: use 'docker' (or 'local')")
    _refuse_if(environment not in REPL_ENVIRONMENTS, f"unknown environment {environment!r}")
    kwargs = dict(kwargs or {})
    policy = kwargs.pop("policy", "standard")
    _refuse_if(bool(kwargs), f"environment_kwargs {sorted(kwargs)} are not supported: the container is "
                             "configured by rlm-host's policy (environment_kwargs={'policy': 'strict'})")
    return policy


def _printer():
    from rich.console import Console
    from rich.text import Text

    from .sanitize import safe_text

    console = Console(stderr=True)

    def show(kind: str, fields: dict[str, Any]) -> None:
        if kind in {"iteration.start", "cell", "subcall", "answer"} or kind.startswith("limit."):
            detail = ", ".join(f"{k}={v}" for k, v in fields.items() if k in {"iteration", "status", "model", "chars"})
            # model names are hostile
            console.print(Text.assemble(("rlm-host", "dim"), " ", safe_text(f"{kind} {detail}")))

    return show
