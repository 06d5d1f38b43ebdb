"""An OTLP/HTTP trace receiver for the suite: it decodes the real protobuf messages a collector gets.

It listens on 127.0.0.1 only, keeps every request's raw body (to look for text that must not be
there) and the spans decoded from it with ``opentelemetry-proto``'s own message classes.
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def value_of(value: AnyValue) -> Any:
    """An OTLP attribute value as Python: scalars, arrays, key-value lists."""
    which = value.WhichOneof("value")
    if which == "array_value":
        return [value_of(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: value_of(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which) if which else None


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent: str
    kind: int
    start: int
    end: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status: int
    status_message: str
    resource: dict[str, Any] = field(default_factory=dict)


class Receiver:
    """``with Receiver() as r:`` then send to ``r.url``; ``r.spans`` holds what arrived. ``refuse`` answers 503."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.bodies: list[bytes] = []
        self.spans: list[Span] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                status = receiver.take(self.path, self.headers.get("Content-Type", ""), body)
                reply = ExportTraceServiceResponse().SerializeToString() if status == 200 else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def take(self, path: str, content_type: str, body: bytes) -> int:
        with self._lock:
            self.requests += 1
            if self.refuse:
                return 503
            if path != "/v1/traces" or content_type != "application/x-protobuf":
                return 415
            request = ExportTraceServiceRequest.FromString(body)
            self.bodies.append(body)
            for resource_spans in request.resource_spans:
                resource = {kv.key: value_of(kv.value) for kv in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    for s in scope.spans:
                        self.spans.append(Span(
                            name=s.name, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                            parent=s.parent_span_id.hex(), kind=s.kind, start=s.start_time_unix_nano,
                            end=s.end_time_unix_nano,
                            attributes={kv.key: value_of(kv.value) for kv in s.attributes},
                            events=[(e.name, {kv.key: value_of(kv.value) for kv in e.attributes}) for e in s.events],
                            status=s.status.code, status_message=s.status.message, resource=resource))
            return 200

    def named(self, prefix: str) -> list[Span]:
        with self._lock:
            return [s for s in self.spans if s.name.startswith(prefix)]

    def by_id(self) -> dict[str, Span]:
        with self._lock:
            return {s.span_id: s for s in self.spans}
