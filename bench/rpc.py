"""RPC benchmark: llm_query overhead and llm_query_batched concurrency.

Measured from inside a real sandbox (runc, policy "standard") against the
scripted OpenAI-compatible server on 127.0.0.1:

1. ``llm_query`` round trip (kernel -> broker -> LM client -> instant scripted
   model -> back), p50/p99 over N calls timed in the kernel; and the broker's
   own share: that round trip minus the LM client's measured latency per call.
   The aim is under 1 ms p50 for the broker's share.
2. ``llm_query_batched`` of 1, 2, 4 ... 128 calls with 200 ms scripted latency: wall time
   against the ideal for the policy's concurrency, ceil(n / concurrency) x 200 ms.
   The aim is within 10%.

    python3 bench/rpc.py [--calls 300] [--batch 1,2,4,8,16,32,64,128] [--latency 0.2] [--out bench/results]

Writes ``rpc.json``, ``rpc.md`` and ``rpc.png`` (wall time against the ideal) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from datetime import UTC, datetime
from pathlib import Path

from report import RESULTS, write_results  # bench/report.py

from rlm_host.events import Recorder
from rlm_host.rlm.lm import LMClient
from rlm_host.policy import load_policy
from rlm_host.rlm.broker import Broker
from rlm_host.rlm.subcalls import Budget, Subcalls
from rlm_host.sandbox import DockerSandbox
from rlm_host.testing import ScriptedLM

TIMED_CELL = """
import time, json
_t = []
for _i in range({n}):
    _a = time.perf_counter(); llm_query("q", None); _t.append((time.perf_counter() - _a) * 1000)
print(json.dumps(_t))
"""
BATCH_CELL = """
import time
_a = time.perf_counter(); _r = llm_query_batched([("q%d" % i, None) for i in range({n})])
print((time.perf_counter() - _a), len(_r))
"""


def quantile(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100)[int(q * 100) - 1] if len(xs) > 1 else xs[0]


def with_sandbox(latency_s: float, calls: int, code: str) -> tuple[str, Recorder, int]:
    """Run ``code`` in a sandbox whose sub-calls go to a scripted model with ``latency_s``."""
    policy = load_policy("standard").with_subcalls(max_calls=calls + 10, max_total_tokens=10**9)
    with ScriptedLM(latency_s=latency_s) as lm:
        lm.rule("sub", lambda messages: "ok")
        events = Recorder()
        subcalls = Subcalls(LMClient(base_url=lm.base_url), "sub", Budget(policy.subcalls), on_event=events)
        with DockerSandbox.start(policy) as sandbox:
            broker = Broker(sandbox.rpc_socket_path, subcalls, uid=sandbox.rpc_socket_owner,
                            max_frame_bytes=policy.subcalls.max_frame_bytes).start()
            try:
                result = sandbox.execute(code, timeout=600)
            finally:
                broker.close()
    if not result.ok:
        raise RuntimeError(f"benchmark cell failed: {result.error or result.reason}")
    return result.stdout, events, policy.subcalls.max_concurrency


def overhead(calls: int) -> dict[str, float]:
    stdout, events, _ = with_sandbox(0.0, calls + 20, TIMED_CELL.format(n=calls + 20))
    round_trips = json.loads(stdout)[20:]
    lm_ms = [e["latency_s"] * 1000 for e in events.of("subcall")][20:]
    broker = [rt - lm for rt, lm in zip(round_trips, lm_ms, strict=False)]
    return {"calls": calls, "round_trip_p50_ms": statistics.median(round_trips),
            "round_trip_p99_ms": quantile(round_trips, 0.99), "lm_client_p50_ms": statistics.median(lm_ms),
            "broker_share_p50_ms": statistics.median(broker), "broker_share_p99_ms": quantile(broker, 0.99)}


def batched(n: int, latency_s: float) -> dict[str, float]:
    stdout, _, concurrency = with_sandbox(latency_s, n, BATCH_CELL.format(n=n))
    wall = float(stdout.split()[0])
    ideal = math.ceil(n / concurrency) * latency_s
    return {"calls": n, "latency_s": latency_s, "concurrency": concurrency, "wall_s": wall, "ideal_s": ideal,
            "ratio": wall / ideal}


def markdown(report: dict) -> str:
    o, batches = report["overhead"], report["batched"]
    return "\n".join([
        "# RPC benchmark", "", f"{report['date']} · policy standard (runc) · scripted model on 127.0.0.1", "",
        "| measure | p50 | p99 | aim |", "|---|---|---|---|",
        f"| llm_query round trip, in the kernel ({o['calls']} calls) | {o['round_trip_p50_ms']:.2f} ms | "
        f"{o['round_trip_p99_ms']:.2f} ms | |",
        f"| of which the LM client (HTTP to the scripted model) | {o['lm_client_p50_ms']:.2f} ms | | |",
        f"| broker's share (round trip - LM client) | {o['broker_share_p50_ms']:.2f} ms | "
        f"{o['broker_share_p99_ms']:.2f} ms | < 1 ms p50 |", "",
        f"llm_query_batched at {batches[0]['latency_s'] * 1000:.0f} ms scripted latency per call, the policy's "
        f"concurrency {batches[0]['concurrency']} (aim: within 1.10x of the ideal):", "",
        "| calls | wall | ideal | ratio | calls/s |", "|---|---|---|---|---|",
        *[f"| {b['calls']} | {b['wall_s']:.3f} s | {b['ideal_s']:.3f} s | {b['ratio']:.3f}x | "
          f"{b['calls'] / b['wall_s']:.1f} |" for b in batches], ""])


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = report["batched"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([b["calls"] for b in batches], [b["wall_s"] for b in batches], marker="o", label="llm_query_batched")
    ax.plot([b["calls"] for b in batches], [b["ideal_s"] for b in batches], linestyle="--", label="ideal")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("calls in the batch")
    ax.set_ylabel("wall time (s)")
    ax.set_title(f"sub-calls at {batches[0]['latency_s'] * 1000:.0f} ms, concurrency {batches[0]['concurrency']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--batch", default="1,2,4,8,16,32,64,128", help="batch sizes, comma-separated")
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              "overhead": overhead(args.calls),
              "batched": [batched(int(n), args.latency) for n in args.batch.split(",")]}
    text = markdown(report)
    write_results(args.out, "rpc", report, text, plot)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
