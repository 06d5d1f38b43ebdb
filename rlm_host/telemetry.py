"""OpenTelemetry traces of a run, sent over OTLP/HTTP to an endpoint the user names (optional extra ``otel``).

The spans are built from the run's events, the ones the audit log records, by an ordinary event hook:
nothing in the loop knows about tracing. Each event is cut down by the run's audit level exactly as
the log line is (``audit.Redact``) before any of it becomes an attribute, so a span never carries
text the log would not keep: at ``hashes`` no document, model or cell text leaves, only digests.

The tree (docs/telemetry.md): ``invoke_agent rlm-host`` per run (a child RLM's run under the
``execute_tool rlm_query`` that started it), ``rlm.iteration`` per root turn, ``chat <model>`` per
root-model reply and per sub-call (the GenAI semantic conventions' attributes for model and token
usage), ``execute_tool cell`` per cell, ``execute_tool answer`` for ``answer(...)``. Every other event
(documents, sandbox, limits, refusals) is a span event on the innermost open span.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from . import events
from .audit import Level, Redact
from .errors import ConfigError
from .events import EventHook, Say
from .settings import __version__

MAX_ATTRIBUTE_CHARS = 8192  # one text attribute (code, a prompt) at audit level full; longer is cut by the SDK
EXPORT_TIMEOUT_S = 5.0  # one export request; a dead collector costs the run at most a few of these at its end
AGENT = "rlm-host"
# Not a span event: progress lines say nothing the spans do not.
_NOT_EVENTS = {events.ProgressNote.kind}

try:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - exercised by the error line when the extra is missing
    trace = None  # type: ignore[assignment]


def endpoint_url(url: str) -> str:
    """The traces URL, checked: http(s) with a host; a base URL without a path gets ``/v1/traces``."""
    try:
        parts = urlsplit(url.strip())
        usable = parts.scheme in {"http", "https"} and bool(parts.hostname) and (parts.port or 1) > 0
    except ValueError:  # a bracket that opens no IPv6 address, a port that is not a number
        usable = False
    if not usable:
        raise ConfigError(f"the OTLP endpoint must be an http(s) URL such as http://127.0.0.1:4318/v1/traces "
                          f"(got {url!r})")
    if parts.username or parts.password:
        raise ConfigError("the OTLP endpoint must not carry credentials in the URL; "
                          "set OTEL_EXPORTER_OTLP_HEADERS instead")
    return url.strip() if parts.path not in {"", "/"} else url.strip().rstrip("/") + "/v1/traces"


def label(url: str) -> str:
    """The endpoint as messages show it: scheme, host and path (no query string, which may hold a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


@contextmanager
def otlp_traces(endpoint: str, *, say: Say | None = None,
                timeout_s: float = EXPORT_TIMEOUT_S) -> Iterator[EventHook]:
    """An event hook that turns a run's events into spans sent to ``endpoint`` (OTLP over HTTP, protobuf).

    Pass it as ``RLM(on_event=...)`` (``events.fan_out`` joins it with another hook). Spans are sent
    in batches while the run goes on and flushed when the block ends; a collector that is down or
    refuses costs the run nothing but one line to ``say`` at the end, naming how many spans were lost.
    """
    if trace is None:
        raise ConfigError("OpenTelemetry export needs the otel extra: pip install 'rlm-host[otel]'")
    url = endpoint_url(endpoint)
    exporter = _Delivery(OTLPSpanExporter(endpoint=url, timeout=timeout_s))
    logging.getLogger("opentelemetry.exporter.otlp").setLevel(logging.CRITICAL)  # _Delivery says it, once
    provider = TracerProvider(resource=Resource.create({"service.name": AGENT, "service.version": __version__}),
                              span_limits=SpanLimits(max_attribute_length=MAX_ATTRIBUTE_CHARS))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000,
                                                   export_timeout_millis=int(timeout_s * 1000)))
    spans = Spans(provider.get_tracer("rlm_host", __version__))
    try:
        yield spans
    finally:
        spans.close()
        provider.shutdown()
        if spans.faults and say is not None:
            say(f"traces: {spans.faults} events could not be traced; the audit log has the whole run")
        if exporter.lost and say is not None:
            say(f"traces: {exporter.lost} of {exporter.lost + exporter.sent} spans were not delivered to "
                f"{label(url)} ({exporter.why}); the audit log has the whole run")


if trace is not None:
    class _Delivery(SpanExporter):
        """Counts what the OTLP exporter delivered and lost, so the user hears of a dead collector once."""

        def __init__(self, inner: SpanExporter) -> None:
            self.inner = inner
            self.sent = self.lost = 0
            self.why = ""

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            try:
                result = self.inner.export(spans)
            except Exception as exc:  # a collector's failure never reaches the run
                result, self.why = SpanExportResult.FAILURE, type(exc).__name__
            if result is SpanExportResult.SUCCESS:
                self.sent += len(spans)
            else:
                self.lost += len(spans)
                self.why = self.why or "the collector did not accept them"
            return result

        def shutdown(self) -> None:
            self.inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return self.inner.force_flush(timeout_millis)


@dataclass
class _Run:
    """The open spans of one run (one depth): the run, its iteration, its cell, a child's tool span."""

    span: Span
    iteration: Span | None = None
    cell: Span | None = None
    cell_from: int = 0  # when the current cell began: the root reply before it, or the cell before it
    tool: Span | None = None  # execute_tool rlm_query, open while a child RLM runs
    tokens: list[int] = field(default_factory=lambda: [0, 0])


class Spans:
    """The event hook: keeps the open spans of every depth and builds the tree as events arrive (thread-safe).

    Events say what already happened (a reply and its latency, a cell and its duration), so spans get
    explicit start and end times. Sub-calls arrive from the broker's threads while a cell runs: the
    cell's span is opened when the first of them (or the cell's own event) needs it.
    """

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer
        self.level: Level = "hashes"  # until a run says its level, keep the least
        self.runs: dict[int, _Run] = {}
        self.pending: list[tuple[str, dict[str, Any], int]] = []  # document events before the first run
        self.faults = 0  # events the hook could not turn into spans (said once at the end)
        self._lock = threading.Lock()

    def __call__(self, kind: str, fields: dict[str, Any]) -> None:
        now = time.time_ns()
        handlers = {events.RunStart.kind: self._run_start, events.RunEnd.kind: self._run_end,
                    events.RunError.kind: self._run_error, events.IterationStart.kind: self._iteration_start,
                    events.RootReply.kind: self._root, events.Subcall.kind: self._subcall,
                    events.Cell.kind: self._cell_ran, events.AnswerGiven.kind: self._answer,
                    events.ChildRLM.kind: self._child}
        with self._lock:
            try:
                handler = handlers.get(kind)
                if handler is not None:
                    handler(fields, now)
                elif kind not in _NOT_EVENTS:
                    self._event(kind, fields, now)
            except Exception:  # a trace is a view of the run: its faults never reach the run
                self.faults += 1

    def close(self) -> None:
        """End whatever is still open (a run cut off by an error the hook did not hear)."""
        with self._lock:
            for depth in sorted(self.runs, reverse=True):
                self._end_run(depth, time.time_ns(), error="the run did not finish")

    # -- runs -----------------------------------------------------------------------------------

    def _run_start(self, fields: dict[str, Any], now: int) -> None:
        depth = int(fields.get("depth") or 1)
        if depth == 1:
            self.level = fields.get("audit_level") or "hashes"
        parent = self.runs.get(depth - 1)
        context = None
        if parent is not None:
            context = trace.set_span_in_context(parent.tool or self._cell(parent, now))
        attributes = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": AGENT,
                      "gen_ai.conversation.id": str(fields.get("run", "")),
                      "gen_ai.request.model": str(fields.get("model", "")), **self._attributes(fields)}
        span = self.tracer.start_span(f"invoke_agent {AGENT}", context=context, kind=SpanKind.INTERNAL,
                                      attributes=attributes, start_time=now)
        self.runs[depth] = _Run(span)
        for kind, pending, t in self.pending:
            span.add_event(kind, self._attributes(pending), timestamp=t)
        self.pending.clear()

    def _run_end(self, fields: dict[str, Any], now: int) -> None:
        depth = int(fields.get("depth") or 1)
        run = self.runs.get(depth)
        if run is not None:
            run.span.set_attributes(self._attributes(fields))
        self._end_run(depth, now)

    def _run_error(self, fields: dict[str, Any], now: int) -> None:
        for depth in sorted(self.runs, reverse=True):
            self._end_run(depth, now, error=str(fields.get("error", "error")))

    def _end_run(self, depth: int, now: int, error: str | None = None) -> None:
        run = self.runs.pop(depth, None)
        if run is None:
            return
        for span in (run.tool, run.cell, run.iteration):
            if span is not None:
                span.end(end_time=now)
        run.span.set_attributes({"gen_ai.usage.input_tokens": run.tokens[0],
                                 "gen_ai.usage.output_tokens": run.tokens[1]})
        if error is not None:
            run.span.set_status(Status(StatusCode.ERROR, error))
        run.span.end(end_time=now)
        parent = self.runs.get(depth - 1)
        if parent is not None and parent.tool is not None:  # the child RLM was its parent's rlm_query
            parent.tool.end(end_time=now)
            parent.tool = None

    # -- iterations, replies, cells -------------------------------------------------------------

    def _iteration_start(self, fields: dict[str, Any], now: int) -> None:
        run = self._run_of(fields)
        if run is None:
            return
        for span in (run.cell, run.iteration):
            if span is not None:
                span.end(end_time=now)
        run.cell = None
        run.iteration = self.tracer.start_span(
            "rlm.iteration", context=trace.set_span_in_context(run.span), start_time=now,
            attributes={"rlm_host.iteration": int(fields.get("iteration") or 0)})

    def _root(self, fields: dict[str, Any], now: int) -> None:
        run = self._run_of(fields)
        if run is None:
            return
        self._chat(run, run.iteration or run.span, fields, now, role="root")
        run.cell_from = now

    def _subcall(self, fields: dict[str, Any], now: int) -> None:
        run = self._run_of(fields)
        if run is not None:
            self._chat(run, self._cell(run, now), fields, now, role="sub")

    def _chat(self, run: _Run, parent: Span, fields: dict[str, Any], now: int, *, role: str) -> None:
        model = str(fields.get("model", ""))
        started = now - int(float(fields.get("latency_s") or 0) * 1e9)
        tokens = int(fields.get("prompt_tokens") or 0), int(fields.get("completion_tokens") or 0)
        run.tokens = [run.tokens[0] + tokens[0], run.tokens[1] + tokens[1]]
        attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                      "gen_ai.response.model": model, "gen_ai.usage.input_tokens": tokens[0],
                      "gen_ai.usage.output_tokens": tokens[1], "rlm_host.role": role,
                      **self._attributes(fields)}
        span = self.tracer.start_span(f"chat {model}", context=trace.set_span_in_context(parent),
                                      kind=SpanKind.CLIENT, attributes=attributes, start_time=started)
        span.end(end_time=now)

    def _cell(self, run: _Run, now: int) -> Span:
        """The running cell's span, opened when first needed (a sub-call's, or the cell's own event)."""
        if run.cell is None:
            parent = run.iteration or run.span
            run.cell = self.tracer.start_span(
                "execute_tool cell", context=trace.set_span_in_context(parent), start_time=run.cell_from or now,
                attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "cell"})
        return run.cell

    def _cell_ran(self, fields: dict[str, Any], now: int) -> None:
        run = self._run_of(fields)
        if run is None:
            return
        if run.cell is None:  # no sub-call opened it: it began its duration ago, or at the reply before it
            run.cell_from = max(run.cell_from, now - int(float(fields.get("duration_ms") or 0) * 1e6))
        span = self._cell(run, now)
        span.set_attributes(self._attributes(fields))
        if fields.get("status") != "ok":
            span.set_status(Status(StatusCode.ERROR, str(fields.get("status"))))
        span.end(end_time=now)
        run.cell, run.cell_from = None, now

    def _answer(self, fields: dict[str, Any], now: int) -> None:
        run = self._run_of(fields)
        if run is None:
            return
        span = self.tracer.start_span(
            "execute_tool answer", context=trace.set_span_in_context(self._cell(run, now)), start_time=now,
            attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "answer",
                        "rlm_host.citation_count": len(fields.get("citations") or []), **self._attributes(fields)})
        span.end(end_time=now)

    def _child(self, fields: dict[str, Any], now: int) -> None:
        run = self.runs.get(int(fields.get("depth") or 2) - 1)  # the event's depth is the child's
        if run is None:
            return
        run.tool = self.tracer.start_span(
            "execute_tool rlm_query", context=trace.set_span_in_context(self._cell(run, now)), start_time=now,
            attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "rlm_query",
                        **self._attributes(fields)})

    # -- everything else ------------------------------------------------------------------------

    def _event(self, kind: str, fields: dict[str, Any], now: int) -> None:
        if not self.runs:
            self.pending.append((kind, dict(fields), now))
            return
        run = self.runs[max(self.runs)]
        target = run.tool or run.cell or run.iteration or run.span
        target.add_event(kind, self._attributes(fields), timestamp=now)

    def _run_of(self, fields: Mapping[str, Any]) -> _Run | None:
        return self.runs.get(int(fields.get("depth") or 1))

    def _attributes(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The event's fields as ``rlm_host.*`` attributes, cut down by the audit level as its log line is."""
        kept = Redact(self.level)(None, "", dict(fields))
        out: dict[str, Any] = {}
        for name, value in kept.items():
            _flatten(out, f"rlm_host.{name}", value, depth=0)
        return out


def _flatten(out: dict[str, Any], key: str, value: Any, depth: int) -> None:
    """Scalars as they are, lists of scalars as arrays, small dicts one level down, the rest as JSON."""
    if value is None:
        return
    if isinstance(value, bool | int | float | str):
        out[key] = value
    elif isinstance(value, Mapping) and depth < 2:
        for name, item in value.items():
            _flatten(out, f"{key}.{name}", item, depth + 1)
    elif isinstance(value, list) and (all(isinstance(v, str) for v in value)
                                      or all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
        out[key] = list(value)
    else:
        out[key] = json.dumps(value, default=str, ensure_ascii=False)[:MAX_ATTRIBUTE_CHARS]
