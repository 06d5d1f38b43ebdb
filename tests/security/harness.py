"""Run an attack the way a model would: as a cell in a real RLM run, then prove the host unharmed.

Every attack goes through the whole stack: a scripted root model (the one allowed stand-in, over
real HTTP to the real openai client) replies with the attack as a ```python cell; the RLM runs it in
a real sandbox with the broker and the audit log; the next reply is a simple cell that also makes a
sub-call, so a working session *and* a live broker are proven after the attack; then FINAL ends the
run. Afterwards the harness checks the host: the audit log verifies intact and records the attack's
cell, no container of the run is left, and no host process of it survives.

An attack cell reports what happened as one line ``VERDICT <json>`` (see ``PRELUDE``), which the
test asserts on and records into SECURITY.md's table.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from helpers import Record, short_limits

from rlm_host import Generation, Models, audit
from rlm_host.sandbox.docker_engine import docker_client
from rlm_host.rlm.lm import LMClient, PriceTable
from rlm_host.policy import Policy, load_policy
from rlm_host.results import RLMResult, Step
from rlm_host.rlm.loop import RLM
from rlm_host.settings import OWNER_LABEL
from rlm_host.testing import ScriptedLM

# What an attack cell starts with: ctypes for raw syscalls and a way to report outcomes.
PRELUDE = r'''
import ctypes, errno, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)
def syscall(nr, *args):
    """A raw syscall: 'ok' or the errno name it failed with."""
    ret = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    return "ok" if ret >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
def attempt(fn, *args, **kwargs):
    """Call fn: 'ok' or the exception's name (and errno name when it has one)."""
    try:
        fn(*args, **kwargs)
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, type(exc).__name__) if exc.errno else type(exc).__name__
    except Exception as exc:
        return type(exc).__name__
def verdict(**found):
    print("VERDICT " + json.dumps(found, sort_keys=True))
'''

ALIVE_CELL = "print('alive', 6 * 7, llm_query('ping', 'are you there?'))"
ALIVE_OUTPUT = "alive 42 pong"
VERDICT_LINE = re.compile(r"^VERDICT (\{.*\})$", re.MULTILINE)


def cell(code: str) -> str:
    return f"```python\n{code}\n```"


@dataclass
class Outcome:
    """What the attack did, and what the run and the host looked like afterwards."""

    runtime: str
    step: Step
    result: RLMResult
    events: list[dict[str, Any]]
    found: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.step.status

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.events]


def run_attack(policy: str | Policy, code: str | Callable[[int], str], tmp_path: Path, *, prelude: bool = True,
               documents: list[Path] | None = None, sub: Callable[[list[dict]], str] | None = None,
               followup: str = ALIVE_CELL, expect_followup: str = ALIVE_OUTPUT, **rlm_options: Any) -> Outcome:
    """Run ``code`` as the first cell of an RLM run under ``policy`` and check the host afterwards.

    ``code`` may be a function of the scripted LM's port (a host service on 127.0.0.1 to aim at).
    """
    loaded = policy if isinstance(policy, Policy) else short_limits(load_policy(policy))
    before = _own_containers()
    audit_dir = tmp_path / "audit"
    with ScriptedLM() as lm:
        code = code(urlsplit(lm.base_url).port) if callable(code) else code
        attack_code = (PRELUDE + "\n" + code) if prelude else code
        lm.script("root", [cell(attack_code), cell(followup), "FINAL(done)"])
        lm.rule("sub", sub or (lambda messages: "pong"))
        prices = PriceTable({"root": (0.0, 0.0), "sub": (0.0, 0.0)})
        client = LMClient(base_url=lm.base_url, backoff_s=0.01, max_retries=2, prices=prices)
        rlm = RLM(Models("root", sub_model="sub", lm=client, prices=prices), generation=Generation(few_shot=False),
                  policy=loaded, audit_dir=audit_dir, **rlm_options)
        result = rlm.complete("security probe", documents or None)
    step, after = result.trajectory[0], result.trajectory[1]
    log = Path(result.audit_log)
    events = audit.events(log)
    outcome = Outcome(loaded.runtime, step, result, events, _verdict(step.output))

    # The session (or its replacement) still answers, and the broker still serves sub-calls.
    assert after.status == "ok" and expect_followup in after.output, (step.output, after.output)
    assert result.stopped == "final" and result.answer == "done", result.stopped
    # The audit log verifies and holds the attack's cell.
    verdict = audit.verify(log)
    assert verdict.status == "intact", verdict
    digest = hashlib.sha256(step.code.encode()).hexdigest()
    assert any(e["kind"] == "cell" and e.get("code_sha256") == digest for e in events), "attack not audited"
    # No container of the run, and no host process of its containers, is left.
    assert _own_containers() == before, "a container of the run was left behind"
    started = [e["container"] for e in events if e["kind"] == "sandbox.start"]
    assert started and not _host_processes_of(started), "a process of the sandbox outlived it"
    return outcome


def _verdict(output: str) -> dict[str, Any]:
    match = VERDICT_LINE.search(output)
    return json.loads(match.group(1)) if match else {}


def _own_containers() -> set[str]:
    label = f"{OWNER_LABEL}={os.getpid()}"
    return {c.id for c in docker_client().containers.list(all=True, filters={"label": label})}


def _host_processes_of(container_ids: list[str]) -> list[int]:
    """Host pids whose cgroup or command line names one of the containers (runc or runsc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "cgroup").read_text() + (entry / "cmdline").read_bytes().decode("utf-8", "replace")
        except OSError:
            continue  # the process ended while we looked
        if any(cid in text for cid in container_ids):
            found.append(int(entry.name))
    return found


@pytest.fixture
def record(evidence: Record, request: pytest.FixtureRequest) -> Callable[[Outcome, str], None]:
    """``record(outcome, text)``: one cell of SECURITY.md's attack table (row: the test's docstring).

    The category is the test module's ``CATEGORY``; the column is the outcome's runtime.
    """
    title = (request.node.function.__doc__ or request.node.originalname).strip().splitlines()[0]

    def add(outcome: Outcome, text: str) -> None:
        evidence("attacks", category=request.module.CATEGORY, attack=title, runtime=outcome.runtime,
                 outcome=text)
    return add
