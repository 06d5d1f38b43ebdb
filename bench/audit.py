"""Audit log overhead: the cost of one event (HMAC chain, JSON, write, flush, fsync) and its share of a run.

1. Per event: N events of a typical size (a cell with its code and output) appended to a log in the
   audit directory's filesystem, with fsync (the real setting) and, for comparison, without.
2. Share of a run: a scripted three-turn run through the real sandbox (runc), its event count times
   the per-event cost, against the run's wall time.

    python3 bench/audit.py [--events 2000] [--out bench/results]

Writes ``audit.json`` and ``audit.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

from report import RESULTS, write_results  # bench/report.py

from rlm_host import audit, settings
from rlm_host.audit import AuditLog
from rlm_host.rlm.lm import LMClient
from rlm_host.rlm.loop import RLM
from rlm_host.rlm.config import Models
from rlm_host.testing import ScriptedLM

ROOT = Path(__file__).resolve().parent.parent

FIELDS = {"iteration": 3, "status": "ok", "code": "hits = search(r'fee')\nfor h in hits[:5]:\n    print(h)\n" * 3,
          "stdout": "Hit(30890-30905 in clauses.txt: 'termination fee ...')\n" * 20, "duration_ms": 4.2}
RUN = ["```python\nhits = search(r'termination fee')\nprint(hits[0])\n```",
       "```python\nreply = llm_query('Fee?', peek(hits[0].start, hits[0].end + 150))\nprint(reply)\n```",
       "```python\nanswer(reply, citations=[hits[0]])\n```"]


def per_event(n: int, directory: Path, fsync: bool) -> list[float]:
    times = []
    with mock.patch.object(audit.os, "fsync", audit.os.fsync if fsync else (lambda _fd: None)):
        log = AuditLog("bench", "full", directory=directory, key=bytes(32))
        for _ in range(n):
            began = time.perf_counter()
            log.record("cell", dict(FIELDS))
            times.append((time.perf_counter() - began) * 1000)
        log.close()
    return times


def run_share(directory: Path, event_ms: float) -> dict[str, float]:
    with ScriptedLM() as lm:
        lm.script("root", RUN)
        lm.rule("sub", lambda messages: "EUR 48,500")
        rlm = RLM(Models("root", sub_model="sub", lm=LMClient(base_url=lm.base_url)), audit_dir=directory)
        began = time.perf_counter()
        result = rlm.complete("What is the fee?", [ROOT / "examples" / "clauses.txt"])
        wall = time.perf_counter() - began
    count = len(Path(result.audit_log).read_text().splitlines())
    return {"events": count, "wall_s": wall, "audit_ms": count * event_ms,
            "share_pct": 100 * count * event_ms / 1000 / wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    audit_root = settings.audit_dir()
    audit_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=audit_root) as folder:
        synced = per_event(args.events, Path(folder), fsync=True)
        unsynced = per_event(args.events, Path(folder) / "nosync", fsync=False)
        p50 = statistics.median(synced)
        share = run_share(Path(folder) / "run", p50)
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "events": args.events,
              "event_bytes": len(json.dumps(FIELDS)),
              "fsync_p50_ms": p50, "fsync_p99_ms": statistics.quantiles(synced, n=100)[98],
              "no_fsync_p50_ms": statistics.median(unsynced), "run": share}
    text = "\n".join([
        "# Audit log overhead", "", f"{report['date']} · {args.events} events of ~{report['event_bytes']} bytes, "
        f"audit directory on the same disk as the state directory", "",
        "| | p50 | p99 |", "|---|---|---|",
        f"| one event, with fsync (the real setting) | {p50:.3f} ms | {report['fsync_p99_ms']:.3f} ms |",
        f"| one event, without fsync (for comparison) | {report['no_fsync_p50_ms']:.3f} ms | |", "",
        f"A scripted three-turn run through the sandbox wrote {share['events']} events: about "
        f"{share['audit_ms']:.1f} ms of {share['wall_s'] * 1000:.0f} ms wall time ({share['share_pct']:.2f}%).", ""])
    write_results(args.out, "audit", report, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
