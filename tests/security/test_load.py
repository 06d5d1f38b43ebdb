"""Load (issue 6): many concurrent RLM sessions on one host, nothing crossing between them.

Each session is a whole RLM run (real containers, kernels, brokers and audit logs; the scripted LM is
the one stand-in) over its own document, in which a random token is planted. Its root model (a
scripted model named after the token) first defines ``work(i)`` in the kernel, then calls it once per
cell until the load's deadline (counted from the start, session starts included; at least
``MIN_CELLS`` times), then answers with the tokens its ``context`` holds. ``work`` reads the
document from the read-only mount and from ``context``, lists ``/docs``, and makes an ``llm_query`` and
an ``llm_query_batched`` of three with a piece around the token; the shared sub model echoes the
question and every token in its prompt. Each cell reports one ``LOAD {json}`` line, checked on the
host: a session that saw another's document, got another's sub-call reply or another's cell output
(the root model records any foreign token in its prompts) fails the test, as does a leaked container,
session directory, thread or file descriptor, or an audit log that does not verify. The sessions share
a fresh state directory, so they race to create the audit key (``test_first_audit_key_under_concurrency``
pins that race down).

Latencies come from the audit logs (cells, broker sub-calls, root calls, session start) and from the
kernel's own clock (sub-call round trips through the RPC socket); they are recorded for SECURITY.md,
never asserted. ``RLM_HOST_LOAD_SECONDS`` sets how long the 20-way run loads the host (default 60;
the strict run gets a quarter of it).
"""

from __future__ import annotations

import gc
import json
import os
import re
import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import Record

from rlm_host import Generation, Models, audit
from rlm_host.sandbox.docker_engine import docker_client
from rlm_host.rlm.lm import LMClient, PriceTable
from rlm_host.policy import Policy, load_policy
from rlm_host.results import RLMResult
from rlm_host.rlm.loop import RLM
from rlm_host.settings import OWNER_LABEL, runtime_dir
from rlm_host.testing import ScriptedLM

pytestmark = pytest.mark.docker

SECONDS = float(os.environ.get("RLM_HOST_LOAD_SECONDS", "60"))
MEMORY_MB = 512  # per sandbox: 20 of them must fit in the host's RAM (the shipped 2048 would not)
MIN_CELLS = 5  # work cells every session must have run, however loaded the machine
MAX_ITERATIONS = 100_000  # the deadline ends a run, not the iteration limit
SLACK_FDS = 4  # descriptors the interpreter may open for itself meanwhile (measured: none)
MIB = 1024 * 1024
TOKEN = re.compile(r"LOADTOKEN-[0-9a-f]{16}")
QUERY = "Which load token does the document hold?"
MOUNTED = ["00000.doc", "manifest.json"]

SETUP = r'''
import json, os, re, time
_TOKEN = re.compile(r"LOADTOKEN-[0-9a-f]{16}")
def work(i):
    """Read the document (mount and context), ask the sub model about it, report one LOAD line."""
    names = [d["name"] for d in json.load(open("/docs/manifest.json"))["documents"]]
    disk = open("/docs/00000.doc", encoding="utf-8").read()
    hit = search(_TOKEN.pattern)[0]
    piece = peek(max(0, hit.start - 300), hit.end + 300)
    t0 = time.perf_counter()
    one = llm_query(f"echo {i}.0", piece)
    t1 = time.perf_counter()
    many = llm_query_batched([(f"echo {i}.{k}", piece) for k in (1, 2, 3)])
    t2 = time.perf_counter()
    print("LOAD " + json.dumps({
        "i": i, "docs": sorted(os.listdir("/docs")), "names": names,
        "disk": sorted(set(_TOKEN.findall(disk))), "context": sorted(set(_TOKEN.findall(context))),
        "one": one, "many": many, "one_ms": (t1 - t0) * 1000, "batch_ms": (t2 - t1) * 1000}))
work(1)
'''
ANSWER = 'answer("tokens: " + " ".join(sorted(set(_TOKEN.findall(context)))))'
LOAD_LINE = re.compile(r"^LOAD (\{.*\})$", re.MULTILINE)


def fenced(code: str) -> str:
    return f"```python\n{code}\n```"


def echo(messages: list[dict[str, Any]]) -> str:
    """The sub model: the question (first line) and every token in the prompt."""
    prompt = messages[-1]["content"]
    return " ".join([prompt.split("\n", 1)[0], *sorted(set(TOKEN.findall(prompt)))])


@dataclass
class Session:
    """One session's document and root-model script, and what its root model was shown."""

    index: int
    token: str
    document: Path
    deadline: float
    replies: int = 0
    answered: bool = False
    foreign: set[str] = field(default_factory=set)

    @property
    def model(self) -> str:
        return f"root-{self.token}"

    def reply(self, messages: list[dict[str, Any]]) -> str:
        """Set up, then ``work`` cells until the deadline (at least MIN_CELLS), then the answer (once)."""
        self.foreign |= set(TOKEN.findall(messages[-1]["content"])) - {self.token}
        self.replies += 1
        if self.replies == 1:
            return fenced(SETUP)
        if self.replies <= MIN_CELLS or time.monotonic() < self.deadline:
            return fenced(f"work({self.replies})")
        if self.answered:
            return "FINAL(the answer cell did not record an answer)"
        self.answered = True
        return fenced(ANSWER)

    def expected(self, i: int) -> dict[str, Any]:
        """What ``work(i)`` must report when the session sees only its own things."""
        return {"i": i, "docs": MOUNTED, "names": [self.document.name], "disk": [self.token],
                "context": [self.token], "one": f"echo {i}.0 {self.token}",
                "many": [f"echo {i}.{k} {self.token}" for k in (1, 2, 3)]}


def make_session(index: int, directory: Path, deadline: float) -> Session:
    """A document of filler lines with the session's token planted at a random line."""
    token = f"LOADTOKEN-{secrets.token_hex(8)}"
    lines = [f"line {n}: the quick brown fox jumps over the lazy dog, record {n * 7919 % 10007}"
             for n in range(300)]
    lines.insert(secrets.randbelow(len(lines)), f"The load token of this document is {token}.")
    path = directory / f"load-{index:02d}-{token[-6:]}.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Session(index, token, path, deadline)


@dataclass
class Outcome:
    """A finished session: its result (or the exception), its audit log and its LOAD reports."""

    session: Session
    result: RLMResult | None = None
    error: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    verdict: str = "no log"
    loads: list[dict[str, Any]] = field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]


def run_session(session: Session, base_url: str, policy: Policy, audit_dir: Path) -> RLMResult:
    """One whole RLM run against the scripted LM (in a worker thread)."""
    prices = PriceTable({session.model: (0.0, 0.0), "sub": (0.0, 0.0)})
    client = LMClient(base_url=base_url, backoff_s=0.01, max_retries=2, prices=prices)
    rlm = RLM(Models(session.model, sub_model="sub", lm=client, prices=prices), generation=Generation(few_shot=False),
              policy=policy, audit_dir=audit_dir, max_iterations=MAX_ITERATIONS)
    return rlm.complete(QUERY, [session.document])


def finish(session: Session, future: Future) -> Outcome:
    """The session's outcome, read from its result and its audit log."""
    try:
        result = future.result()
    except Exception as exc:  # one failed session is reported with the rest
        return Outcome(session, error=f"{type(exc).__name__}: {exc}")
    log = Path(result.audit_log)
    loads = [json.loads(m.group(1)) for step in result.trajectory for m in LOAD_LINE.finditer(step.output)]
    return Outcome(session, result, None, audit.events(log), audit.verify(log).status, loads)


def problems(outcome: Outcome) -> list[str]:
    """Everything wrong with one session: cross-talk, errors, a short run, a log that does not verify."""
    s, found = outcome.session, errors(outcome)
    if outcome.result is None:
        return [f"session {s.index}: {p}" for p in found]
    answer = TOKEN.findall(outcome.result.answer)
    if outcome.result.stopped != "answer" or answer != [s.token]:
        found.append(f"answer {outcome.result.answer!r} (stopped: {outcome.result.stopped})")
    if outcome.verdict != "intact":
        found.append(f"audit log {outcome.verdict}")
    if len(outcome.loads) < MIN_CELLS:
        found.append(f"only {len(outcome.loads)} work cells ran (at least {MIN_CELLS} expected)")
    found += [f"work({r.get('i')}) saw {_diff(r, s.expected(r.get('i')))}" for r in outcome.loads
              if _diff(r, s.expected(r.get("i")))]
    if s.foreign:
        found.append(f"its root model was shown other sessions' tokens {sorted(s.foreign)}")
    starts = outcome.of("sandbox.start")
    if len(starts) != 1 or (runtime_dir() / starts[0]["session"]).exists():
        found.append(f"{len(starts)} sandbox starts, or its session directory outlived it")
    return [f"session {s.index}: {p}" for p in found]


ERROR_KINDS = {"subcall.failed", "subcall.denied", "rpc.frame_rejected", "rpc.internal_error",
               "rpc.connection_refused", "sandbox.restart", "run.error"}


def errors(outcome: Outcome) -> list[str]:
    """The session's errors: an exception, a cell not ok, a refused or failed sub-call, a limit, an LM retry."""
    if outcome.result is None:
        return [f"raised {outcome.error}"]
    found = []
    for event in outcome.events:
        kind = event["kind"]
        if kind in ERROR_KINDS or kind.startswith("limit.") or (kind == "cell" and event["status"] != "ok"):
            found.append(f"{kind}: {event.get('error') or event.get('reason') or event.get('status')}")
        if event.get("retries"):
            found.append(f"{kind}: the LM call was retried {event['retries']} time(s)")
    return found


def _diff(seen: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    return {k: seen.get(k) for k in expected if seen.get(k) != expected[k]}


def percentiles(values: list[float]) -> dict[str, float | None]:
    """Nearest-rank p50/p95/p99 and the maximum."""
    ordered = sorted(values)
    if not ordered:
        return dict.fromkeys(["p50", "p95", "p99", "max"])

    def rank(q: int) -> float:
        return round(ordered[max(0, -(-q * len(ordered) // 100) - 1)], 1)  # the ceil(q% of n)-th value
    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "max": round(ordered[-1], 1)}


def metrics(outcomes: list[Outcome]) -> dict[str, list[float]]:
    """Latency samples (ms) from the audit logs and the kernel's clock, and per-session counts."""
    ran = [o for o in outcomes if o.result is not None]

    def every(kind: str, key: str, scale: float = 1.0) -> list[float]:
        return [e[key] * scale for o in ran for e in o.of(kind)]
    return {
        "cell round trip (ms)": every("cell", "duration_ms"),
        "sub-call at the broker, LM call (ms)": every("subcall", "latency_s", 1000),
        "llm_query round trip in the kernel (ms)": [r["one_ms"] for o in ran for r in o.loads],
        "llm_query_batched x3 round trip in the kernel (ms)": [r["batch_ms"] for o in ran for r in o.loads],
        "root model call (ms)": every("root", "latency_s", 1000),
        "session start: run.start to sandbox ready (ms)": [
            (o.of("sandbox.start")[0]["ts"] - o.of("run.start")[0]["ts"]) * 1000 for o in ran if o.of("sandbox.start")],
        "of which queued for a boot slot (ms)": every("sandbox.start", "queued_ms"),
        "of which kernel boot (ms)": every("sandbox.start", "boot_ms"),
        "cells per session": [len(o.of("cell")) for o in ran],
        "sub-calls per session": [len(o.of("subcall")) for o in ran],
        "errors per session": [len(errors(o)) for o in outcomes],
    }


class Monitor:
    """Samples host memory in use and this process's live sandbox containers in the background."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.memory_mib: list[float] = []
        self.peak_containers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-monitor", daemon=True)

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        ticks = 0
        while not self._stop.wait(self.interval_s):
            self.memory_mib.append(host_memory_used() / MIB)
            if ticks % 4 == 0:
                self.peak_containers = max(self.peak_containers, len(own_containers()))
            ticks += 1


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    fields = (line.split() for line in Path("/proc/meminfo").read_text().splitlines())
    return {f[0].rstrip(":"): int(f[1]) * 1024 for f in fields if len(f) >= 2}


def host_memory_used() -> int:
    info = meminfo()
    return info["MemTotal"] - info["MemAvailable"]


def own_containers() -> set[str]:
    """This process's sandbox containers, by label (ids only: one may vanish while listed)."""
    label = f"{OWNER_LABEL}={os.getpid()}"
    return {c["Id"] for c in docker_client().api.containers(all=True, filters={"label": label})}


def open_fds() -> int:
    """This process's open descriptors, the Docker client's idle connections closed first.

    docker-py keeps a connection pool per URL (up to 25), so a container's URLs can hold a connection
    to the engine after it is gone; dropping them leaves what the sessions themselves kept open.
    """
    docker_client().api.close()
    return len(os.listdir("/proc/self/fd"))


@dataclass(frozen=True)
class Footprint:
    """What of this process is on the host: its containers, threads and open descriptors."""

    containers: frozenset[str]
    threads: int
    fds: int

    @classmethod
    def now(cls) -> Footprint:
        gc.collect()  # whatever the sessions dropped is closed before it is counted
        return cls(frozenset(own_containers()), threading.active_count(), open_fds())

    def leaks(self, after: Footprint) -> list[str]:
        """What is left after the load that was not there before it."""
        found = [f"container {c[:12]} left behind" for c in sorted(after.containers - self.containers)]
        if after.threads > self.threads:
            found.append(f"{after.threads - self.threads} thread(s) outlived the sessions")
        if after.fds > self.fds + SLACK_FDS:
            found.append(f"{after.fds - self.fds} file descriptors more than before the load")
        return found


def load_policy_for(name: str, sessions: int) -> Policy:
    """The shipped policy with room for a long run; its memory limit times the sessions fits the host."""
    policy = load_policy(name).with_limits(memory_mb=MEMORY_MB).with_subcalls(
        max_calls=100_000, max_total_tokens=1_000_000_000)
    assert sessions * policy.limits.memory_mb * MIB <= meminfo()["MemTotal"], \
        "the sandboxes could take more memory than the host has"
    return policy


@dataclass
class Load:
    """One concurrent run: its sessions' outcomes and what the host looked like meanwhile."""

    outcomes: list[Outcome]
    monitor: Monitor
    wall_s: float
    cpu_s: float

    def shared(self) -> list[str]:
        """Session ids or containers that two sessions had in common (each must have its own)."""
        seen = [e[key] for o in self.outcomes for e in o.of("sandbox.start") for key in ("session", "container")]
        return [f"{value} used by two sessions" for value in sorted(set(seen)) if seen.count(value) > 1]


def run_load(policy: Policy, sessions: int, seconds: float, tmp_path: Path) -> Load:
    """``sessions`` RLM runs at once, each in its own thread, loading the host for ``seconds``.

    Threads, not processes: the host process used well under one core (see the CPU row), so the GIL
    is not what limits the load; the containers' kernels are.
    """
    deadline = time.monotonic() + seconds
    docs = tmp_path / "docs"
    docs.mkdir()
    planned = [make_session(i, docs, deadline) for i in range(sessions)]
    started, cpu = time.monotonic(), time.process_time()
    with ScriptedLM() as lm, Monitor() as monitor, ThreadPoolExecutor(sessions, "load-session") as pool:
        lm.rule("sub", echo)
        for session in planned:
            lm.rule(session.model, session.reply)
        futures = [pool.submit(run_session, s, lm.base_url, policy, tmp_path / "audit") for s in planned]
        outcomes = [finish(s, f) for s, f in zip(planned, futures, strict=False)]
    return Load(outcomes, monitor, time.monotonic() - started, time.process_time() - cpu)


def record_metrics(evidence: Record, load: Load, runtime: str, problems_found: int) -> None:
    """The load's rows of SECURITY.md: latency percentiles, counts, peak memory, problems."""
    sessions = len(load.outcomes)

    def row(metric: str, values: list[float] | None = None, **columns: float) -> None:
        shown = {k: v for k, v in {**percentiles(values or []), **columns}.items() if v is not None}
        evidence("load", metric=metric, runtime=runtime, sessions=sessions, **shown)

    for metric, values in metrics(load.outcomes).items():
        row(metric, values, count=sum(values) if "per session" in metric else len(values))
    row("host memory in use, whole host (MiB)", load.monitor.memory_mib, count=len(load.monitor.memory_mib))
    row("sandboxes live at once (peak)", max=load.monitor.peak_containers)
    row("host process CPU (cores, mean over the run)", max=round(load.cpu_s / load.wall_s, 2))
    row("cross-talk, leaks, logs not intact", count=problems_found)


@pytest.fixture
def fresh_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A state directory with no audit key yet: the sessions' first use of it races."""
    monkeypatch.setenv("RLM_HOST_STATE_DIR", str(tmp_path / "state"))


@pytest.mark.parametrize("name, sessions, share", [("standard", 20, 1.0), ("strict", 6, 0.25)], ids=["runc", "runsc"])
def test_concurrent_sessions(name: str, sessions: int, share: float, tmp_path: Path, fresh_state: None,
                             docker_ready: str, evidence: Record) -> None:
    """Concurrent RLM sessions each see only their own document and answers; nothing leaks; every log verifies."""
    policy = load_policy_for(name, sessions)
    before = Footprint.now()
    load = run_load(policy, sessions, SECONDS * share, tmp_path)
    found = [p for o in load.outcomes for p in problems(o)] + load.shared() + before.leaks(Footprint.now())
    record_metrics(evidence, load, policy.runtime, len(found))
    assert not found, "\n".join(found[:40])
    assert load.monitor.peak_containers == sessions, "the sessions did not all run at once"


def test_first_audit_key_under_concurrency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs starting at once on a fresh install all chain their logs with one whole audit key."""
    for trial in range(50):
        monkeypatch.setenv("RLM_HOST_STATE_DIR", str(tmp_path / f"state-{trial}"))
        barrier = threading.Barrier(20)

        def first_use() -> bytes:
            barrier.wait()  # noqa: B023 - used up within its own trial
            return audit.load_key()
        with ThreadPoolExecutor(20) as pool:
            keys = list(pool.map(lambda _: first_use(), range(20)))
        assert len(set(keys)) == 1 and len(keys[0]) == 32, f"trial {trial}: {len(set(keys))} different keys"
