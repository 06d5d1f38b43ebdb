"""The LM client against a scripted OpenAI-compatible server, through the real openai client.

Everything talks to 127.0.0.1 only. Backoffs are tiny so the file runs in seconds;
the few elapsed-time checks are behaviour checks with wide margins, not benchmarks.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from rlm_host.errors import ConfigError, LMError, RLMHostError
from rlm_host.rlm.lm import Completion, LMClient, PriceTable, Usage
from rlm_host.testing import NO_MORE_REPLIES, ScriptedLM

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(autouse=True)
def _no_ambient_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may pick up a real endpoint, key or price file from the environment."""
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "RLM_HOST_PRICES"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def lm() -> Iterator[ScriptedLM]:
    with ScriptedLM() as server:
        yield server


@pytest.fixture
def client(lm: ScriptedLM) -> Iterator[LMClient]:
    with LMClient(base_url=lm.base_url, max_retries=3, backoff_s=0.001) as lm_client:
        yield lm_client


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- replies, usage, cost --------------------------------------------------------


def test_scripted_replies_in_order_then_fallback(lm: ScriptedLM, client: LMClient) -> None:
    """Scripted replies come back in order, then the fixed fallback text."""
    lm.script("root", ["first", "second"])
    texts = [client.chat(HELLO, model="root").text for _ in range(3)]
    assert texts == ["first", "second", NO_MORE_REPLIES]


def test_rule_computes_reply_from_messages(lm: ScriptedLM, client: LMClient) -> None:
    """A rule answers from the messages once the script is empty (sub-models echo)."""
    lm.rule("sub", lambda messages: "echo: " + messages[-1]["content"])
    question = [{"role": "user", "content": "what year?"}]
    assert client.chat(question, model="sub").text == "echo: what year?"


def test_completion_carries_usage_and_exact_cost(lm: ScriptedLM, client: LMClient) -> None:
    """Usage is the server's numbers and cost is tokens times the list price per million."""
    lm.script("gpt-4o", ["four"])
    lm.usage_for("gpt-4o", 1000, 500)
    result = client.chat(HELLO, model="gpt-4o")
    assert isinstance(result, Completion)
    assert (result.text, result.model, result.retries) == ("four", "gpt-4o", 0)
    assert result.usage == Usage(1000, 500) and result.usage.total_tokens == 1500
    assert result.cost_usd == (1000 * 2.50 + 500 * 10.00) / 1_000_000
    assert result.latency_s > 0


def test_unknown_model_has_no_cost(lm: ScriptedLM, client: LMClient) -> None:
    """A model without a price costs None, not a guess."""
    assert client.chat(HELLO, model="my-own-finetune").cost_usd is None


def test_default_usage_is_a_character_estimate(lm: ScriptedLM, client: LMClient) -> None:
    """Without fixed usage the server counts about four characters a token."""
    lm.script("m", ["x" * 12])
    result = client.chat([{"role": "system", "content": "a" * 20}, {"role": "user", "content": "b" * 20}],
                         model="m")
    assert result.usage == Usage(10, 3)


def test_options_are_sent_only_when_set(lm: ScriptedLM, client: LMClient) -> None:
    """max_tokens, temperature and stop reach the server when given and are absent otherwise."""
    client.chat(HELLO, model="m")
    client.chat(HELLO, model="m", max_tokens=64, temperature=0.0, stop=["```"])
    plain, tuned = lm.requests
    assert not {"max_tokens", "temperature", "stop"} & plain.keys()
    assert (tuned["max_tokens"], tuned["temperature"], tuned["stop"]) == (64, 0.0, ["```"])
    assert tuned["messages"] == HELLO


def test_stop_sequences_cut_the_reply(lm: ScriptedLM, client: LMClient) -> None:
    """The server cuts the reply at the earliest stop sequence, as real servers do."""
    lm.script("m", ["print(1)\n```\nmore text END tail"])
    assert client.chat(HELLO, model="m", stop=["END", "```"]).text == "print(1)\n"


def test_null_content_and_missing_usage(lm: ScriptedLM, client: LMClient) -> None:
    """A null message content reads as "" and a reply without usage as zero tokens."""
    body = {"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": None},
                         "finish_reason": "stop"}]}
    lm.fail(200, 1, body=json.dumps(body))
    result = client.chat(HELLO, model="m")
    assert (result.text, result.usage) == ("", Usage(0, 0))


# -- retries and failures ------------------------------------------------------


def test_429_twice_then_success(lm: ScriptedLM, client: LMClient) -> None:
    """Rate limits are retried and counted."""
    lm.script("m", ["ok"])
    lm.fail(429, 2)
    result = client.chat(HELLO, model="m")
    assert (result.text, result.retries) == ("ok", 2)
    assert len(lm.requests) == 3


def test_500_then_success(lm: ScriptedLM, client: LMClient) -> None:
    """A server error is retried once and the reply still arrives."""
    lm.script("m", ["ok"])
    lm.fail(500, 1)
    assert client.chat(HELLO, model="m").retries == 1


def test_failure_for_another_model_is_not_consumed(lm: ScriptedLM, client: LMClient) -> None:
    """A failure injected for one model leaves requests for other models alone."""
    lm.fail(503, 1, model="root")
    assert client.chat(HELLO, model="sub").retries == 0
    assert client.chat(HELLO, model="root").retries == 1


def test_gives_up_after_the_retry_limit(lm: ScriptedLM) -> None:
    """A server that keeps failing ends in LMError after max_retries + 1 attempts."""
    lm.fail(503, 100)
    with (LMClient(base_url=lm.base_url, max_retries=2, backoff_s=0.001) as client,
          pytest.raises(LMError) as caught):
        client.chat(HELLO, model="m")
    assert (caught.value.status, caught.value.attempts) == (503, 3)
    assert "after 3 attempts" in str(caught.value) and lm.base_url in str(caught.value)
    assert isinstance(caught.value, RLMHostError)
    assert isinstance(caught.value.__cause__, openai.InternalServerError)
    assert len(lm.requests) == 3


def test_retry_after_is_honoured(lm: ScriptedLM, client: LMClient) -> None:
    """The client waits at least the Retry-After the server asked for."""
    lm.fail(429, 1, retry_after=0.2)
    started = time.monotonic()
    result = client.chat(HELLO, model="m")
    assert result.retries == 1
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize(("status", "hint"), [(404, "--model"), (400, "refused"), (401, "OPENAI_API_KEY")])
def test_client_errors_are_not_retried(lm: ScriptedLM, client: LMClient, status: int, hint: str) -> None:
    """400, 401 and 404 fail at once with the status and what to check."""
    lm.fail(status, 5, model="nope")
    with pytest.raises(LMError) as caught:
        client.chat(HELLO, model="nope")
    assert (caught.value.status, caught.value.attempts) == (status, 1)
    assert f"answered {status} for model 'nope'" in str(caught.value) and hint in str(caught.value)
    assert len(lm.requests) == 1


@pytest.mark.parametrize("body", ["<html><body>Bad Gateway</body></html>", '{"unexpected": true}', "[1, 2]"])
def test_garbage_body_with_200_is_an_lm_error(lm: ScriptedLM, client: LMClient, body: str) -> None:
    """A 200 whose body is not a chat completion raises LMError quoting it, not a crash."""
    lm.fail(200, 1, body=body)
    with pytest.raises(LMError) as caught:
        client.chat(HELLO, model="m")
    assert caught.value.status == 200 and "not a chat completion" in str(caught.value)
    assert body.split(">", maxsplit=1)[0] in str(caught.value)


def test_connection_refused_is_an_lm_error_after_retries() -> None:
    """A closed port is retried, then reported as unreachable with the fix."""
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    with LMClient(base_url=url, max_retries=2, backoff_s=0.001) as client, pytest.raises(LMError) as caught:
        client.chat(HELLO, model="m")
    assert (caught.value.status, caught.value.attempts) == (None, 3)
    assert "unreachable" in str(caught.value) and "OPENAI_BASE_URL" in str(caught.value)


def test_timeouts_are_retried_then_reported() -> None:
    """A server slower than the timeout is retried, then reported as not answering."""
    with (ScriptedLM(latency_s=0.3) as lm,
          LMClient(base_url=lm.base_url, max_retries=1, timeout_s=0.05, backoff_s=0.001) as client,
          pytest.raises(LMError) as caught):
        client.chat(HELLO, model="m")
    assert (caught.value.status, caught.value.attempts) == (None, 2)
    assert "did not answer" in str(caught.value)


# -- configuration ---------------------------------------------------------------


def test_base_url_from_environment_needs_no_key(lm: ScriptedLM, monkeypatch: pytest.MonkeyPatch) -> None:
    """OPENAI_BASE_URL alone is enough: local servers get a placeholder key."""
    monkeypatch.setenv("OPENAI_BASE_URL", lm.base_url)
    with LMClient(backoff_s=0.001) as client:
        assert client.base_url == lm.base_url
        assert client.chat(HELLO, model="m").text == NO_MORE_REPLIES


def test_no_endpoint_and_no_key_is_a_config_error() -> None:
    """Without a key or a base URL the client says how to configure one."""
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        LMClient()


def test_price_lookup_exact_then_case_insensitive() -> None:
    """Prices are found by exact name, then ignoring case; unknown models have none."""
    prices = PriceTable.load()
    assert prices.price("gpt-4o-mini") == (0.15, 0.60)
    assert prices.price("GPT-4o-Mini") == (0.15, 0.60)
    assert prices.known("qwen2.5-coder-0.5b-instruct")
    assert prices.cost("qwen2.5-coder-1.5b-instruct", Usage(10_000, 10_000)) == 0.0
    assert prices.price("no-such-model") is None and not prices.known("no-such-model")
    assert not prices.known("_comment")


def test_user_prices_extend_and_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user file (RLM_HOST_PRICES) adds models and overrides shipped prices."""
    user = tmp_path / "prices.json"
    user.write_text(json.dumps({"gpt-4o": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
                                "my-model": {"input_per_mtok": 0.5, "output_per_mtok": 0.5}}))
    monkeypatch.setenv("RLM_HOST_PRICES", str(user))
    prices = PriceTable.load()
    assert prices.price("gpt-4o") == (1.0, 2.0)
    assert prices.price("my-model") == (0.5, 0.5)
    assert prices.price("gpt-4.1") == (2.0, 8.0)


@pytest.mark.parametrize("text", ["{not json", '["a list"]', '{"m": {"input_per_mtok": 1}}',
                                  '{"m": {"input_per_mtok": -1, "output_per_mtok": 1}}'])
def test_malformed_user_prices_name_the_file(tmp_path: Path, text: str) -> None:
    """A malformed prices file is a ConfigError that names the file."""
    user = tmp_path / "my-prices.json"
    user.write_text(text)
    with pytest.raises(ConfigError, match=r"my-prices\.json"):
        PriceTable.load(user)


def test_missing_user_prices_file_is_a_config_error(tmp_path: Path) -> None:
    """A prices path that does not exist is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=r"absent\.json"):
        PriceTable.load(tmp_path / "absent.json")


# -- the scripted server itself ----------------------------------------------------


def test_scripted_server_lists_models_to_the_real_client(lm: ScriptedLM) -> None:
    """GET /v1/models lists the scripted models, readable by the openai client."""
    lm.script("root", ["x"])
    lm.rule("sub", lambda messages: "y")
    with openai.OpenAI(base_url=lm.base_url, api_key="unused", max_retries=0) as raw:
        assert [m.id for m in raw.models.list()] == ["root", "sub"]


def test_scripted_server_answers_concurrent_requests_in_parallel() -> None:
    """Eight requests with 0.2 s latency from eight threads overlap instead of queueing."""
    with ScriptedLM(latency_s=0.2) as lm, LMClient(base_url=lm.base_url, backoff_s=0.001) as client:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda i: client.chat(HELLO, model=f"m{i}"), range(8)))
        elapsed = time.monotonic() - started
    assert len(results) == 8 and all(r.retries == 0 for r in results)
    assert elapsed < 8 * 0.2 / 2


def test_scripted_server_stops_its_threads() -> None:
    """Leaving the context stops the server and joins every thread it started."""
    before = set(threading.enumerate())
    with ScriptedLM(latency_s=0.05) as lm, LMClient(base_url=lm.base_url) as client:
        client.chat(HELLO, model="m")
    assert set(threading.enumerate()) <= before


def test_reasoning_models_get_the_request_they_accept() -> None:
    """gpt-5 and o-series models get max_completion_tokens and no temperature or stop."""
    from rlm_host.rlm.lm import _request

    assert _request([], "gpt-5-mini", 100, 0.0, ["x"]) == {"model": "gpt-5-mini", "messages": [],
                                                          "max_completion_tokens": 100}
    assert _request([], "gpt-4o", 100, 0.0, None) == {"model": "gpt-4o", "messages": [], "max_tokens": 100,
                                                      "temperature": 0.0}
