"""The event catalogue: every kind an audit log can hold, its field names pinned (the log is a file format)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

import run_logs
from rlm_host import events
from rlm_host.audit import read_records

# kind -> its fields in the order they are written. Changing this changes the audit log's format:
# add fields at the end and add kinds, never rename or drop (old logs must still read the same).
GOLDEN = {
    "progress": "message",
    "document": "name type size sha256 text_bytes text_sha256 chars pages source",
    "document.skipped": "path reason",
    "run.start": "run depth query model sub_model policy policy_sha256 runtime audit_level host_version limits "
                 "subcall_budget info",
    "iteration.start": "iteration depth",
    "root": "model prompt response messages prompt_tokens completion_tokens cost_usd latency_s retries depth",
    "cell": "iteration depth status code code_sha256 stdout stderr result error reason chars duration_ms truncated "
            "restarted",
    "kernel.rebind_refused": "iteration message",
    "subcall": "model prompt response prompt_chars reply_chars prompt_tokens completion_tokens cost_usd latency_s "
               "retries depth endpoint redacted",
    "subcall.egress_refused": "refused_by found endpoint model depth",
    "subcall.denied": "reason",
    "subcall.failed": "error",
    "subcall.depth_fallback": "depth max_depth",
    "subcall.child_rlm": "depth text_chars",
    "answer": "answer chars citations evidence depth",
    "rpc.connection_refused": "reason",
    "rpc.frame_rejected": "code message",
    "rpc.internal_error": "error",
    "sandbox.start": "container runtime image image_id image_content_hash session queued_ms boot_ms",
    "sandbox.start_refused": "error",
    "sandbox.restart": "reason",
    "sandbox.stop": "restarts",
    "sandbox.remove_failed": "container error",
    "limit.cell_timeout": "limit_s",
    "limit.session_lifetime": "limit_s",
    "limit.pids": "limit",
    "limit.nofile": "limit needed",
    "limit.oom": "exit_code",
    "limit.killed": "exit_code",
    "limit.max_iterations": "iterations",
    "limit.wall_time": "iterations",
    "run.end": "run depth stopped iterations answer fallback citations evidence usage cost_usd comparison subcalls"
               " passages",
    "run.error": "error",
    "exec.start": "policy policy_sha256 runtime host_version limits documents",
    "exec.error": "error",
    "seal": "lines reason",
    "checkpoint": "size key note",
}
ENVELOPE = {"seq", "ts", "run_id", "kind", "prev", "hash"}
RUN_INFO = {"local_model", "quality"}  # what a run on the embedded model adds to run.start


def test_the_catalogue_matches_the_golden_field_names() -> None:
    """Each declared kind has exactly the pinned fields, in order, and no kind is missing or extra."""
    declared = {kind: " ".join(f.name for f in dataclasses.fields(cls)) for kind, cls in events.CATALOGUE.items()}
    assert declared == GOLDEN


def test_each_kind_has_a_description_and_a_producer() -> None:
    """Every kind says when it happens (its docstring) and which modules write it: files that name its class."""
    package = Path(events.__file__).parent
    for kind, cls in events.CATALOGUE.items():
        assert cls.__doc__ and cls.__doc__.strip() and cls.producer, kind
        for producer in cls.producer.split(", "):
            assert cls.__name__ in (package / producer).read_text(), (kind, producer)


def test_a_kind_cannot_be_declared_twice() -> None:
    """Declaring a second kind under a name already in the catalogue fails at import time."""
    with pytest.raises(ValueError, match="declared twice"):
        @events.declared("cell", "elsewhere")
        @dataclasses.dataclass(frozen=True)
        class Again(events.Event):
            """Another cell."""


def test_run_info_never_overwrites_a_declared_field() -> None:
    """Extra fields of run.start (the embedded model's) come after the declared ones and cannot replace them."""
    start = events.RunStart(run="r", depth=1, query="the real query", model="m", sub_model="m", policy="p",
                            policy_sha256="h", runtime="runc", audit_level="full", host_version="0",
                            limits={}, subcall_budget={}, info={"query": "forged", "quality": True})
    fields = start.fields()
    assert fields["query"] == "the real query" and fields["quality"] is True
    assert list(fields)[-1] == "quality" and "info" not in fields


@pytest.fixture(scope="module")
def real_logs(tmp_path_factory: pytest.TempPathFactory, docker_ready: str) -> list[Path]:
    """Logs of real runs: the three-turn demo, 20 iterations, 40 documents, a failed run, an exec."""
    makers = [run_logs.three_turns, run_logs.twenty_iterations, run_logs.forty_documents, run_logs.failed_run,
              run_logs.exec_log]
    return [make(tmp_path_factory.mktemp(make.__name__)) for make in makers]


@pytest.mark.docker
def test_real_logs_hold_only_declared_kinds_with_their_fields(real_logs: list[Path]) -> None:
    """Every line a real run writes is a declared kind with exactly its declared fields (and the envelope)."""
    seen = set()
    for log in real_logs:
        for line in read_records(log):
            record = line.record
            assert record is not None and record["kind"] in GOLDEN, (log.name, line.number)
            extra = RUN_INFO if record["kind"] == "run.start" else set()
            fields = set(record) - ENVELOPE
            golden = set(GOLDEN[record["kind"]].split())
            assert golden - {"info"} <= fields <= golden | extra
            seen.add(record["kind"])
    assert {"run.start", "document", "root", "cell", "subcall", "answer", "run.end", "run.error", "seal",
            "limit.max_iterations", "sandbox.start", "sandbox.stop", "exec.start"} <= seen


def test_docs_list_every_kind_as_declared() -> None:
    """docs/audit.md's table of kinds is the one generated from the catalogue (it cannot drift)."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "event_catalogue.py"
    check = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
