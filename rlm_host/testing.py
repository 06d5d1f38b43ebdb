"""A scripted OpenAI-compatible chat server on 127.0.0.1: test your code against rlm-host without a model.

The one stand-in rlm-host's own suite allows, shipped so yours can use it too (as
``structlog.testing`` or ``httpx.MockTransport`` are). It speaks the real wire
protocol (``POST /v1/chat/completions`` non-streaming, ``GET /v1/models``), so
the real ``openai`` client, its HTTP stack and our retry loop are all exercised;
only the model's words are scripted. Replies come from a per-model queue, then a
per-model rule, then ``NO_MORE_REPLIES``. Failures (429, 5xx, garbage bodies) are
injected by count. Stdlib only (importing it loads nothing else of rlm-host),
bound to port 0, quiet, and it joins every thread it started on exit (pytest
with warnings as errors stays clean).

    from rlm_host import open_rlm
    from rlm_host.testing import ScriptedLM

    with ScriptedLM(latency_s=0.1) as lm:
        lm.script("root", ["```repl\\nprint(llm_query('Who pays?', context))\\n```", "FINAL(the tenant)"])
        lm.rule("sub", lambda messages: "the tenant")
        with open_rlm(base_url=lm.base_url, model="root", sub_model="sub") as rlm:
            result = rlm.complete("Who pays?", "The tenant pays.")
        lm.requests  # every chat request's JSON body, in order

README.md's "Testing your code against rlm-host" has an example that the suite runs.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

NO_MORE_REPLIES = "(no more scripted replies)"

Rule = Callable[[list[dict[str, Any]]], str]

_ERROR_TYPES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass(frozen=True)
class _Reply:
    """One HTTP answer: status, body and extra headers."""

    status: int
    body: bytes
    headers: dict[str, str]


@dataclass
class _Failure:
    """An injected failure; ``remaining`` counts down as requests consume it."""

    status: int
    remaining: int
    model: str | None
    retry_after: float | None
    body: str | None
    after: int = 0  # requests for the model to answer normally first

    def matches(self, model: str) -> bool:
        """Whether a request for ``model`` consumes this failure (or one of the requests it lets by)."""
        return self.remaining > 0 and self.model in (None, model)


def _json_reply(status: int, payload: object, headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), headers or {})


def _error_payload(status: int, message: str) -> dict[str, Any]:
    """An error body shaped like OpenAI's, so the client builds its typed errors."""
    kind, code = _ERROR_TYPES.get(status, ("server_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _text_of(content: object) -> str:
    """A message's text, whether plain or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _cut_at_stop(text: str, stop: object) -> str:
    """The reply up to the earliest stop sequence, as a real server would return it."""
    sequences = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    cuts = [text.find(s) for s in sequences if isinstance(s, str) and s and s in text]
    return text[: min(cuts)] if cuts else text


def _default_usage(messages: list[dict[str, Any]], reply: str) -> tuple[int, int]:
    """About four characters a token, never zero: good enough for budget tests."""
    prompt_chars = sum(len(_text_of(m.get("content"))) for m in messages)
    return max(1, prompt_chars // 4), max(1, len(reply) // 4)


class ScriptedLM:
    """A deterministic OpenAI-compatible server; use it as a context manager."""

    def __init__(self, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._replies: dict[str, deque[str]] = {}
        self._rules: dict[str, Rule] = {}
        self._failures: list[_Failure] = []
        self._usage: dict[str, tuple[int, int]] = {}
        self._ids = itertools.count(1)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- scripting -------------------------------------------------------

    def script(self, model: str, replies: list[str]) -> None:
        """Queue the next replies for ``model``, answered in order."""
        with self._lock:
            self._replies.setdefault(model, deque()).extend(replies)

    def rule(self, model: str, fn: Rule) -> None:
        """Compute ``model``'s replies from the messages once its queue is empty."""
        with self._lock:
            self._rules[model] = fn

    def fail(self, status: int, times: int, *, model: str | None = None,
             retry_after: float | None = None, body: str | None = None, after: int = 0) -> None:
        """Answer the next ``times`` chat requests (for ``model``, or any) with ``status``.

        The body is an OpenAI-style error object, or ``body`` verbatim (still
        labelled JSON, as a broken proxy would); ``retry_after`` adds the header;
        ``after`` lets that many matching requests through first (a failure mid-run).
        """
        with self._lock:
            self._failures.append(_Failure(status, times, model, retry_after, body, after))

    def usage_for(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Report fixed token counts for ``model`` instead of the character estimate."""
        with self._lock:
            self._usage[model] = (prompt_tokens, completion_tokens)

    # -- lifecycle -------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, the value for ``--base-url`` / ``OPENAI_BASE_URL``."""
        if self._server is None:
            raise RuntimeError("ScriptedLM is not running: use it in a `with` block")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> ScriptedLM:
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="scripted-lm",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Stop serving, close the socket and join every handler thread."""
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = None

    # -- answering (called from handler threads) -------------------------

    def respond(self, body: dict[str, Any]) -> _Reply:
        """The answer to one chat request: an injected failure or the next reply."""
        with self._lock:
            self.requests.append(body)
        time.sleep(self.latency_s)
        model = body.get("model")
        messages = body.get("messages")
        if not isinstance(model, str) or not isinstance(messages, list):
            return _json_reply(400, _error_payload(400, "'model' and 'messages' are required"))
        failure = self._take_failure(model)
        if failure is not None:
            return self._failure_reply(failure)
        return self._completion_reply(model, messages, body.get("stop"))

    def models(self) -> dict[str, Any]:
        """The ``/v1/models`` listing: every model that has a script, rule or usage."""
        with self._lock:
            names = sorted({*self._replies, *self._rules, *self._usage})
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "scripted"} for n in names]
        return {"object": "list", "data": data}

    def _take_failure(self, model: str) -> _Failure | None:
        with self._lock:
            failure = next((f for f in self._failures if f.matches(model)), None)
            if failure is not None and failure.after > 0:
                failure.after -= 1
                return None
            if failure is not None:
                failure.remaining -= 1
            return failure

    def _failure_reply(self, failure: _Failure) -> _Reply:
        headers = {} if failure.retry_after is None else {"Retry-After": f"{failure.retry_after:g}"}
        if failure.body is not None:
            return _Reply(failure.status, failure.body.encode(), headers)
        message = f"scripted failure: HTTP {failure.status}"
        return _json_reply(failure.status, _error_payload(failure.status, message), headers)

    def _next_text(self, model: str, messages: list[dict[str, Any]]) -> str:
        """The queued reply, else the rule's, else the fixed fallback text."""
        with self._lock:
            queue = self._replies.get(model)
            if queue:
                return queue.popleft()
            rule = self._rules.get(model)
        return rule(messages) if rule is not None else NO_MORE_REPLIES

    def _usage_of(self, model: str, messages: list[dict[str, Any]], text: str) -> tuple[int, int]:
        with self._lock:
            fixed = self._usage.get(model)
        return fixed or _default_usage(messages, text)

    def _completion_reply(self, model: str, messages: list[dict[str, Any]], stop: object) -> _Reply:
        try:
            text = _cut_at_stop(self._next_text(model, messages), stop)
        except Exception as exc:  # a broken rule is the test's bug: say so over HTTP
            return _json_reply(500, _error_payload(500, f"scripted rule failed: {exc!r}"))
        prompt, completion = self._usage_of(model, messages, text)
        return _json_reply(200, {
            "id": f"chatcmpl-scripted-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        })


class _Server(ThreadingHTTPServer):
    """Threaded HTTP server that knows its ScriptedLM and stays quiet about hang-ups.

    Handler threads are daemons (a server someone forgot to stop never blocks
    interpreter exit) yet joined on close: the stdlib joins only non-daemon ones.
    """

    daemon_threads = True
    # Room for many clients connecting at once (a load test has ~80): with the stdlib's backlog of 5
    # the kernel reset connections past it, and the client's retries hid that in the latencies.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 lm: ScriptedLM) -> None:
        super().__init__(address, handler)
        self.lm = lm
        self._handlers: list[threading.Thread] = []
        self._handlers_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve each connection in its own thread, remembered so close can join it."""
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                                  name="scripted-lm-request", daemon=True)
        with self._handlers_lock:
            self._handlers = [t for t in self._handlers if t.is_alive()] + [thread]
        thread.start()

    def server_close(self) -> None:
        """Close the listening socket, then wait for replies still in flight."""
        super().server_close()
        with self._handlers_lock:
            handlers, self._handlers = self._handlers, []
        for thread in handlers:
            thread.join()

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that timed out and hung up is expected; anything else is printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.0, one request per connection: nothing lingers after a reply."""

    server: _Server
    timeout = 10  # a client that connects and never sends cannot hold shutdown forever

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests and benchmarks read results, not access logs."""

    def do_GET(self) -> None:
        if urlsplit(self.path).path.rstrip("/") == "/v1/models":
            self._send(_json_reply(200, self.server.lm.models()))
        else:
            self._send(_json_reply(404, _error_payload(404, f"no route {self.path}")))

    def do_POST(self) -> None:
        if urlsplit(self.path).path.rstrip("/") != "/v1/chat/completions":
            self._send(_json_reply(404, _error_payload(404, f"no route {self.path}")))
            return
        body = self._read_json()
        if body is None:
            self._send(_json_reply(400, _error_payload(400, "the body is not a JSON object")))
            return
        self._send(self.server.lm.respond(body))

    def _read_json(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _send(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)


def main(argv: list[str] | None = None) -> None:
    """``python -m rlm_host.testing RULE [--latency S]``: serve the scripted model in a process of its own
    (where a test cannot reach an in-process one: a node inside a network namespace). RULE is
    ``module:function`` (importable from the current directory or PYTHONPATH), the rule of each ``--model``;
    the first line on stdout is the base URL; it serves until SIGTERM."""
    import argparse
    import importlib
    import signal

    parser = argparse.ArgumentParser(prog="python -m rlm_host.testing")
    parser.add_argument("rule", help="module:function giving each reply from the messages")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--model", action="append", help="a model name the rule answers as (repeatable; default root)")
    args = parser.parse_args(argv)
    module, _, name = args.rule.partition(":")
    sys.path.insert(0, "")
    rule = getattr(importlib.import_module(module), name)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ScriptedLM(latency_s=args.latency) as lm:
        for model in args.model or ["root"]:
            lm.rule(model, rule)
        print(lm.base_url, flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
