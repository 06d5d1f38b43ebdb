"""Audit log overhead: the cost of one event (HMAC chain, JSON, write, flush, fsync) and its share of a run.

1. Per event: N events of a typical size (a cell with its code and output) appended to a log in the
   audit directory's filesystem, with fsync (the real setting) and, for comparison, without.
2. Signing: the same events written side by side, alternately, to a log chained with the HMAC only
   and to one that also keeps the keyless head and signs a checkpoint every 64 events (the default),
   with and without fsync: the ratio is the cost of signing per event. And one checkpoint's signature.
3. Verify speed: a 100,000-event log (written without fsync), checked with the HMAC key
   (``audit.verify``) and with the public key alone (``checkpoints.verify_signed``), in events/s.
4. Share of a run: a scripted three-turn run through the real sandbox (runc), its event count times
   the per-event cost, against the run's wall time (``--no-run`` skips it: no Docker needed).

    python3 bench/audit.py [--events 2000] [--verify-events 100000] [--no-run] [--out bench/results]

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
from rlm_host.checkpoints import verify_signed
from rlm_host.policy import Checkpoints
from rlm_host.signing import Signer
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


def _no_fsync(fsync: bool) -> mock._patch:
    return mock.patch.object(audit.os, "fsync", audit.os.fsync if fsync else (lambda _fd: None))


def _log(directory: Path, run_id: str, signer: Signer | None) -> AuditLog:
    """A log signed by ``signer``, or chained with the HMAC only (whatever key this host has)."""
    with mock.patch.object(audit, "host_signer", lambda: None):
        return AuditLog(run_id, "full", directory=directory, key=bytes(32), signer=signer)


def per_event(n: int, directory: Path, fsync: bool) -> list[float]:
    times = []
    with _no_fsync(fsync):
        log = _log(directory, "bench", None)
        for _ in range(n):
            began = time.perf_counter()
            log.record("cell", dict(FIELDS))
            times.append((time.perf_counter() - began) * 1000)
        log.close()
    return times


def signing_side_by_side(n: int, directory: Path, fsync: bool) -> dict[str, float]:
    """Median ms per event of the HMAC-only log and of the signed one, events written alternately."""
    hmac_only, signed = [], []
    with _no_fsync(fsync):
        plain, checked = _log(directory, "hmac", None), _log(directory, "signed", Signer.generate())
        for _ in range(n):
            for log, times in ((plain, hmac_only), (checked, signed)):
                began = time.perf_counter()
                log.record("cell", dict(FIELDS))
                times.append((time.perf_counter() - began) * 1000)
        plain.seal("answered")
        checked.seal("answered")
    return {"hmac_ms": statistics.median(hmac_only), "signed_ms": statistics.median(signed),
            "hmac_mean_ms": statistics.fmean(hmac_only), "signed_mean_ms": statistics.fmean(signed),
            "ratio": statistics.fmean(signed) / statistics.fmean(hmac_only)}


def one_signature(repeat: int = 2000) -> float:
    signer, body = Signer.generate(), "rlm-host/audit/bench\n64\n" + "A" * 43 + "=\n"
    began = time.perf_counter()
    for _ in range(repeat):
        signer.sign(body)
    return (time.perf_counter() - began) / repeat * 1000


def verify_speed(n: int, directory: Path) -> dict[str, float]:
    """Events/s of the HMAC verify and of the public-key verify over one ``n``-event signed log."""
    signer = Signer.generate()
    with _no_fsync(False):
        log = _log(directory, "big", signer)
        log._signing.every = Checkpoints()  # the default: every 64 events or 10 s
        for _ in range(n):
            log.record("cell", dict(FIELDS))
        log.seal("answered")
    lines = len(log.path.read_bytes().split(b"\n")) - 1
    began = time.perf_counter()
    assert audit.verify(log.path, bytes(32)).status == "intact"
    hmac_s = time.perf_counter() - began
    began = time.perf_counter()
    assert verify_signed(log.path, {signer.verifier.hash: signer.verifier}).status == "intact"
    signed_s = time.perf_counter() - began
    return {"events": n, "lines": lines, "bytes": log.path.stat().st_size, "hmac_verify_s": hmac_s,
            "pubkey_verify_s": signed_s, "hmac_events_per_s": lines / hmac_s, "pubkey_events_per_s": lines / signed_s}


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
    parser.add_argument("--verify-events", type=int, default=100_000)
    parser.add_argument("--no-run", action="store_true", help="skip the run through the sandbox (no Docker)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    audit_root = settings.audit_dir()
    audit_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=audit_root) as folder:
        synced = per_event(args.events, Path(folder), fsync=True)
        unsynced = per_event(args.events, Path(folder) / "nosync", fsync=False)
        p50 = statistics.median(synced)
        signed = {"fsync": signing_side_by_side(args.events, Path(folder) / "sign", fsync=True),
                  "no_fsync": signing_side_by_side(args.events, Path(folder) / "sign-nosync", fsync=False)}
        speed = verify_speed(args.verify_events, Path(folder) / "verify")
        share = None if args.no_run else run_share(Path(folder) / "run", p50)
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "events": args.events,
              "event_bytes": len(json.dumps(FIELDS)),
              "fsync_p50_ms": p50, "fsync_p99_ms": statistics.quantiles(synced, n=100)[98],
              "no_fsync_p50_ms": statistics.median(unsynced), "signing": signed, "signature_ms": one_signature(),
              "verify": speed, "run": share}
    text = "\n".join(_summary(report, args.events))
    write_results(args.out, "audit", report, text)
    print(text)
    return 0


def _summary(report: dict, events: int) -> list[str]:
    p50, share, signed, speed = report["fsync_p50_ms"], report["run"], report["signing"], report["verify"]
    lines = [
        "# Audit log overhead", "", f"{report['date']} · {events} events of ~{report['event_bytes']} bytes, "
        f"audit directory on the same disk as the state directory", "",
        "| | p50 | p99 |", "|---|---|---|",
        f"| one event, with fsync (the real setting) | {p50:.3f} ms | {report['fsync_p99_ms']:.3f} ms |",
        f"| one event, without fsync (for comparison) | {report['no_fsync_p50_ms']:.3f} ms | |", "",
        "Signing, side by side (the same events written alternately to each log; mean per event, "
        "a checkpoint every 64 events):", "",
        "| | HMAC only | HMAC + keyless head + checkpoints | ratio |", "|---|---|---|---|",
        *[f"| {label} | {signed[k]['hmac_mean_ms']:.4f} ms | {signed[k]['signed_mean_ms']:.4f} ms | "
          f"{signed[k]['ratio']:.3f} |" for k, label in (("fsync", "with fsync"), ("no_fsync", "without fsync"))],
        "", f"One Ed25519 checkpoint signature: {report['signature_ms']:.3f} ms "
        f"({report['signature_ms'] / 64:.4f} ms per event at one per 64).", "",
        f"Verifying a {speed['events']:,}-event log ({speed['lines']:,} lines, {speed['bytes'] / 1e6:.0f} MB): "
        f"with the HMAC key {speed['hmac_events_per_s']:,.0f} events/s ({speed['hmac_verify_s']:.1f} s), with the "
        f"public key alone {speed['pubkey_events_per_s']:,.0f} events/s ({speed['pubkey_verify_s']:.1f} s).", ""]
    if share:
        lines += [f"A scripted three-turn run through the sandbox wrote {share['events']} events: about "
                  f"{share['audit_ms']:.1f} ms of {share['wall_s'] * 1000:.0f} ms wall time "
                  f"({share['share_pct']:.2f}%).", ""]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
