"""The LM client: one chat completion from any OpenAI-compatible endpoint.

The controller (root model) and the RPC broker (``llm_query`` sub-calls) both
call ``LMClient.chat``. It returns a ``Completion`` with the text, the token
usage, the cost and how many retries it took, or raises ``LMError`` saying what
to fix. The ``openai`` client does the HTTP with its own retries turned off: the
retry loop is ours, so retries are counted (the audit log records them), the
Retry-After header is honoured under our cap, and every failure leaves as one
error type.

Costs come from ``PriceTable``: the shipped ``data/prices.json`` plus an
optional user file (``RLM_HOST_PRICES``). A model without a price costs
``None``, never a guessed number: budgets can then refuse or warn, by policy.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import openai
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..errors import ConfigError, LMError
from ..settings import LM_TIMEOUT_S, PRICES_ENV, openai_api_key, openai_base_url, prices_file

REASONING_MODEL = re.compile(r"^(gpt-5|o[134])(\b|-|$)")
MAX_WAIT_S = 30.0  # no single backoff or Retry-After wait is longer than this
PLACEHOLDER_KEY = "rlm-host-no-key"  # local servers ignore the key; openai refuses none
_EXCERPT_CHARS = 200
_STATUS_HINTS = {
    400: "the request was refused: check the model's context length and parameters",
    401: "check OPENAI_API_KEY",
    403: "check that OPENAI_API_KEY may use this model",
    404: "check --model / the endpoint's model list",
    413: "the prompt is too large for this endpoint: lower the output and chunk sizes",
    422: "the request was refused: check the model's parameters",
}


@dataclass(frozen=True)
class Usage:
    """Tokens one completion used, as the endpoint reported them (0 when it did not)."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Completion:
    """One model reply with what it cost; ``latency_s`` includes the retries' waits."""

    text: str
    model: str
    usage: Usage
    cost_usd: float | None  # None when the model's price is unknown
    latency_s: float
    retries: int


# -- prices ------------------------------------------------------------------


class _Price(BaseModel):
    """One entry of a prices file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: float = Field(ge=0, allow_inf_nan=False)
    """USD per million prompt tokens."""
    output_per_mtok: float = Field(ge=0, allow_inf_nan=False)
    """USD per million completion tokens."""


_PRICE_FILE = TypeAdapter(dict[str, _Price])


def _parse_prices(text: str) -> dict[str, tuple[float, float]]:
    """The entries of a prices file; keys starting with ``_`` are comments.

    Raises ``ValueError`` (bad JSON, or a pydantic ``ValidationError``).
    """
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the top level is not a JSON object")
    entries = _PRICE_FILE.validate_python({k: v for k, v in data.items() if not k.startswith("_")})
    return {name: (p.input_per_mtok, p.output_per_mtok) for name, p in entries.items()}


def _reason(exc: ValueError) -> str:
    """One line for a parse failure (pydantic's own message spans many)."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"
    return str(exc)


def _read_user_prices(path: Path) -> dict[str, tuple[float, float]]:
    """A user's prices file, or ``ConfigError`` naming the file and the expected shape."""
    shape = '{"model": {"input_per_mtok": 2.5, "output_per_mtok": 10.0}}'
    try:
        return _parse_prices(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the prices file {path}: {exc.strerror}; "
                          f"fix the path (or {PRICES_ENV})") from exc
    except ValueError as exc:
        raise ConfigError(f"prices file {path} is malformed ({_reason(exc)}); "
                          f"expected a JSON object like {shape}") from exc


class PriceTable:
    """USD per 1M input/output tokens, from rlm_host/data/prices.json plus an optional user file."""

    def __init__(self, prices: Mapping[str, tuple[float, float]] | None = None) -> None:
        self._exact = dict(prices or {})
        self._folded = {name.casefold(): price for name, price in self._exact.items()}

    @classmethod
    def load(cls, extra: Path | None = None) -> PriceTable:
        """Shipped prices overridden by ``extra`` (default: the file ``RLM_HOST_PRICES`` names)."""
        shipped = resources.files("rlm_host").joinpath("data/prices.json").read_text(encoding="utf-8")
        extra = extra or prices_file()
        user = _read_user_prices(extra) if extra is not None else {}
        return cls({**_parse_prices(shipped), **user})

    def price(self, model: str) -> tuple[float, float] | None:
        """(input, output) USD per 1M tokens: the exact name first, then ignoring case."""
        return self._exact.get(model) or self._folded.get(model.casefold())

    def cost(self, model: str, usage: Usage) -> float | None:
        """USD for ``usage`` on ``model``, or ``None`` when its price is unknown."""
        price = self.price(model)
        if price is None:
            return None
        return (usage.prompt_tokens * price[0] + usage.completion_tokens * price[1]) / 1_000_000

    def known(self, model: str) -> bool:
        """Whether ``model`` has a price (possibly 0.0, for local models)."""
        return self.price(model) is not None


# -- one attempt and what went wrong -------------------------------------------

_NOT_COMPLETION = "answered with something that is not a chat completion"
_CHECK_ENDPOINT = "check that --base-url / OPENAI_BASE_URL is an OpenAI-compatible /v1 endpoint"


class _AttemptError(Exception):
    """One attempt failed: what the endpoint did, what it said, and what to do about it."""

    def __init__(self, what: str, detail: str, hint: str, *, status: int | None = None,
                 retryable: bool = False, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.what = what
        self.detail = detail
        self.hint = hint
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


def _excerpt(text: object) -> str:
    """A short, one-line quote of what the endpoint sent."""
    flat = " ".join(str(text).split())
    return repr(flat if len(flat) <= _EXCERPT_CHARS else flat[:_EXCERPT_CHARS] + "...")


def _seconds_until(http_date: str) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(http_date).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait (delta-seconds or an HTTP date), if it did."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds: float | None = float(value)
    except ValueError:
        seconds = _seconds_until(value)
    return max(0.0, seconds) if seconds is not None and math.isfinite(seconds) else None


def _status_detail(exc: openai.APIStatusError) -> str:
    """The server's own error message when it sent an OpenAI-style body, else an excerpt."""
    body = exc.body  # openai already unwrapped {"error": {...}}; some servers send it flat
    error = body.get("error", body) if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return _excerpt(message) if message else _excerpt(exc.response.text or exc.message)


def _status_failure(exc: openai.APIStatusError) -> _AttemptError:
    """408, 429 and 5xx are worth retrying; any other status is final."""
    status = exc.status_code
    retryable = status in (408, 429) or status >= 500
    if status == 429:
        hint = "rate limited: wait, or lower the concurrency"
    elif retryable:
        hint = "the server is failing: check its health and logs"
    else:
        hint = _STATUS_HINTS.get(status, "see the endpoint's documentation for this status")
    return _AttemptError(f"answered {status}", _status_detail(exc), hint, status=status,
                         retryable=retryable, retry_after=_retry_after_s(exc.response.headers))


def _classify(exc: openai.OpenAIError, timeout_s: float) -> _AttemptError:
    """Translate an openai error; timeouts and lost connections are retryable."""
    if isinstance(exc, openai.APITimeoutError):
        return _AttemptError("did not answer", f"no reply within {timeout_s:g} s",
                             "raise the timeout or check the server's load", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return _AttemptError("was unreachable", str(exc.__cause__ or exc),
                             "check --base-url / OPENAI_BASE_URL and that the server is running", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        return _status_failure(exc)
    if isinstance(exc, openai.APIResponseValidationError):
        return _AttemptError(_NOT_COMPLETION, _excerpt(exc.response.text), _CHECK_ENDPOINT,
                             status=exc.status_code)
    return _AttemptError("could not be asked", str(exc), "check the LM settings")


def _reply_text(response: object, raw: str) -> str:
    """The first choice's text; a missing ``content`` (e.g. a refusal) is ``""``."""
    choices = getattr(response, "choices", None) if isinstance(response, ChatCompletion) else None
    message = getattr(choices[0], "message", None) if isinstance(choices, list) and choices else None
    content = getattr(message, "content", None)
    if message is None or not isinstance(content, (str, type(None))):
        raise _AttemptError(_NOT_COMPLETION, _excerpt(raw), _CHECK_ENDPOINT, status=200)
    return content or ""


def _count(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _reply_usage(response: object) -> Usage:
    """Reported usage; an endpoint that reports none counts as zero tokens."""
    usage = getattr(response, "usage", None)
    return Usage(_count(getattr(usage, "prompt_tokens", 0)), _count(getattr(usage, "completion_tokens", 0)))


# -- the client ----------------------------------------------------------------


class LMClient:
    """Chat completions with our own retries, usage and cost; thread-safe (the broker
    calls it from several threads for ``llm_query_batched``)."""

    def __init__(self, *, base_url: str | None = None, api_key: str | None = None, max_retries: int = 4,
                 timeout_s: float = LM_TIMEOUT_S, backoff_s: float = 0.5, prices: PriceTable | None = None) -> None:
        base_url = base_url or openai_base_url()
        api_key = api_key or openai_api_key()
        if base_url is None and api_key is None:
            raise ConfigError("no LM endpoint: set OPENAI_API_KEY for api.openai.com, or pass "
                              "--base-url / OPENAI_BASE_URL for an OpenAI-compatible server")
        if max_retries < 0 or timeout_s <= 0 or backoff_s < 0:
            raise ConfigError(f"LM client settings out of range (max_retries={max_retries}, "
                              f"timeout_s={timeout_s}, backoff_s={backoff_s}): use >= 0, > 0, >= 0")
        endpoint: dict[str, Any] = {"base_url": base_url} if base_url else {}
        self._client = openai.OpenAI(api_key=api_key or PLACEHOLDER_KEY, max_retries=0,
                                     timeout=timeout_s, **endpoint)
        self._endpoint = str(self._client.base_url).rstrip("/")
        self._max_retries = max_retries
        self._timeout_s = timeout_s
        self._backoff_s = backoff_s
        self._prices = prices if prices is not None else PriceTable.load()

    @property
    def base_url(self) -> str:
        """The endpoint requests go to (for the audit log and error messages)."""
        return self._endpoint

    def chat(self, messages: list[dict[str, str]], *, model: str, max_tokens: int | None = None,
             temperature: float | None = None, stop: list[str] | None = None) -> Completion:
        """One chat completion, retried on 429/5xx/timeouts/lost connections; else ``LMError``."""
        request = _request(messages, model, max_tokens, temperature, stop)
        started, attempt = time.monotonic(), 1
        while True:
            try:
                text, usage = self._attempt(request)
            except _AttemptError as failed:
                if not failed.retryable or attempt > self._max_retries:
                    raise self._error(failed, model, attempt) from failed.__cause__
                time.sleep(self._wait_s(attempt, failed.retry_after))
                attempt += 1
            else:
                return Completion(text=text, model=model, usage=usage, cost_usd=self._prices.cost(model, usage),
                                  latency_s=time.monotonic() - started, retries=attempt - 1)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> LMClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _attempt(self, request: dict[str, Any]) -> tuple[str, Usage]:
        """Send once; any failure leaves as ``_AttemptError``, ``from`` the original error."""
        try:
            raw = self._client.chat.completions.with_raw_response.create(**request)
        except openai.OpenAIError as exc:
            raise _classify(exc, self._timeout_s) from exc
        try:
            response = raw.parse()
        except (openai.OpenAIError, ValueError) as exc:  # a 200 whose body is not JSON
            body = _excerpt(raw.http_response.text)
            raise _AttemptError(_NOT_COMPLETION, body, _CHECK_ENDPOINT, status=raw.status_code) from exc
        return _reply_text(response, raw.http_response.text), _reply_usage(response)

    def _wait_s(self, attempt: int, retry_after: float | None) -> float:
        """Retry-After when the server sent it, else exponential backoff; both capped."""
        backoff = self._backoff_s * 2.0 ** min(attempt - 1, 32)
        return min(retry_after if retry_after is not None else backoff, MAX_WAIT_S)

    def _error(self, failed: _AttemptError, model: str, attempts: int) -> LMError:
        """The one-line ``LMError`` for a final failure: what happened and what to do."""
        after = f" after {attempts} attempts" if attempts > 1 else ""
        message = (f"LM endpoint {self._endpoint} {failed.what} for model '{model}'{after}: "
                   f"{failed.detail}; {failed.hint}")
        return LMError(message, status=failed.status, attempts=attempts)


def _request(messages: list[dict[str, str]], model: str, max_tokens: int | None,
             temperature: float | None, stop: list[str] | None) -> dict[str, Any]:
    """The ``create`` arguments; unset options are left out so servers apply their defaults.

    OpenAI's reasoning models (gpt-5, o1/o3/o4) take ``max_completion_tokens`` and refuse
    a non-default temperature and ``stop``; they get the request they accept.
    """
    options: dict[str, Any]
    if REASONING_MODEL.match(model):
        options = {"max_completion_tokens": max_tokens}
    else:
        options = {"max_tokens": max_tokens, "temperature": temperature, "stop": stop}
    return {"model": model, "messages": messages, **{k: v for k, v in options.items() if v is not None}}
