"""Audit logs of real runs: levels hide text at `hashes`, a SIGKILLed run leaves a log that verifies, and
every other ending (answer, last resort, Ctrl-C, SIGTERM, SIGHUP, an LM error, a sandbox error) seals the
log with its reason and prints its path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rlm_host.sandbox.docker_engine import docker_client

from rlm_host.audit import SEAL_REASONS, AuditLog, FsyncWriter, events, seal_reason, verify
from rlm_host.errors import AuditError
from rlm_host.errors import ConfigError, LMError, SessionClosed
from rlm_host.rlm.lm import LMClient
from rlm_host.policy import parse_policy, policies_dir
from rlm_host.rlm.loop import RLM
from rlm_host.rlm.config import Models
from rlm_host.sandbox import reap
from rlm_host.settings import OWNER_LABEL
from rlm_host.testing import ScriptedLM

pytestmark = pytest.mark.docker

DOC = Path(__file__).resolve().parent.parent / "examples" / "clauses.txt"
RUN = ["```python\nhits = search(r'termination fee')\nprint(hits[0].snippet)\n```",
       "```python\nreply = llm_query('What is the fee?', peek(hits[0].start, hits[0].end + 150))\nprint(reply)\n```",
       "```python\nanswer(reply, citations=[hits[0]])\n```"]


def policy_at(level: str):
    raw = yaml.safe_load((policies_dir() / "standard.yaml").read_text())
    raw["audit_level"] = level
    return parse_policy(raw, base_dir=policies_dir())


@pytest.mark.parametrize("level", ["full", "hashes"])
def test_audit_level_of_a_real_run(tmp_path: Path, level: str, docker_ready: str) -> None:
    """The run's log verifies; at `hashes` no document text, code output or prompt text is in it."""
    with ScriptedLM() as lm:
        lm.script("root", RUN)
        lm.rule("sub", lambda messages: "The fee is EUR 48,500.")
        rlm = RLM(Models("root", sub_model="sub", lm=LMClient(base_url=lm.base_url)), policy=policy_at(level),
                  audit_dir=tmp_path)
        result = rlm.complete("What is the termination fee of the Customer?", [DOC])
    log = Path(result.audit_log)
    assert verify(log).status == "intact"
    text = log.read_text()
    kinds = [e["kind"] for e in events(log)]
    recorded = [k for k in kinds if k != "progress"]  # the ingestion sandbox's progress lines come first
    assert recorded[0] == "document" and kinds.index("document") < kinds.index("run.start") and kinds[-1] == "seal"
    expected = {"run.start", "sandbox.start", "iteration.start", "root", "cell", "subcall", "answer", "run.end"}
    assert expected <= set(kinds)
    secrets = ["Clause 121", "initial term", "EUR 48,500", "termination fee of the Customer", "You answer a question"]
    if level == "full":
        assert all(s in text for s in secrets[:4])
    else:
        assert not [s for s in secrets if s in text]
        assert '"stdout_digest"' in text and '"prompt_digest"' in text and '"code_digest"' in text


CHILD = """
import sys
from rlm_host.rlm.lm import LMClient
from rlm_host.rlm.loop import RLM
from rlm_host.rlm.config import Models
rlm = RLM(Models("root", sub_model="sub", lm=LMClient(base_url=sys.argv[1])), max_iterations=3)
rlm.complete("What is the fee?", [sys.argv[2]])
"""


def test_sigkill_mid_run_leaves_a_verifiable_log(tmp_path: Path, docker_ready: str) -> None:
    """A host process killed with SIGKILL mid-cell leaves a log that verifies to its last line and reads."""
    with ScriptedLM() as lm:
        lm.script("root", ["```python\nimport time\ntime.sleep(60)\n```"])
        env = {**os.environ, "RLM_HOST_AUDIT_DIR": str(tmp_path)}
        child = subprocess.Popen([sys.executable, "-c", CHILD, lm.base_url, str(DOC)], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                logs = list(tmp_path.glob("*.jsonl"))
                if logs and '"kind":"root"' in logs[0].read_text():
                    break
                time.sleep(0.2)
            time.sleep(1.0)  # the cell is now sleeping in the kernel
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait(timeout=30)
    reap()  # the killed process could not remove its container; its owner is gone
    log = logs[0]
    verdict = verify(log)
    assert verdict.status == "unfinished" and verdict.lines == len(log.read_text().splitlines())
    assert events(log)[-1]["kind"] == "root"
    shown = subprocess.run([sys.executable, "-m", "rlm_host", "audit", "show", str(log)], capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 2 and "iteration.start" in shown.stdout and "unfinished" in shown.stderr  # the table: 2
    code = subprocess.run([sys.executable, "-m", "rlm_host", "audit", "verify", str(log)], capture_output=True,
                          text=True, timeout=60)
    assert code.returncode == 2 and "unfinished" in code.stdout


# -- how a run ends: every ending seals the log with its reason and prints the log's path ------------

SLEEP_CELL = "```python\nimport time\ntime.sleep(60)\n```"


def start_run(lm: ScriptedLM, folder: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    """`rlm-host run` as a user starts it, against the scripted model, its logs in ``folder``."""
    env = {**os.environ, "RLM_HOST_AUDIT_DIR": str(folder), "OPENAI_API_KEY": "test", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "rlm_host", "run", "-q", "What is the fee?", "--context",
                             str(DOC), "--base-url", lm.base_url, "--model", "root", "--sub-model", "sub", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(folder: Path, needle: str, timeout: float = 90) -> Path:
    """The run's log once it holds ``needle`` (an event kind, as written)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = list(folder.glob("*.jsonl"))
        if logs and needle in logs[0].read_text():
            return logs[0]
        time.sleep(0.1)
    raise AssertionError(f"no log in {folder} reached {needle}")


def ended(child: subprocess.Popen, log: Path, reason: str) -> tuple[int, str, list[str]]:
    """Exit code, stdout and stderr lines, once the log verifies intact with ``reason`` and no container is left."""
    out, errors = child.communicate(timeout=120)
    verdict = verify(log)
    assert verdict.status == "intact", (verdict, errors)
    assert events(log)[-1]["kind"] == "seal" and events(log)[-1]["reason"] == reason, events(log)[-1]
    left = docker_client().containers.list(all=True, filters={"label": f"{OWNER_LABEL}={child.pid}"})
    assert left == [], left
    assert "Traceback" not in errors and errors.count(f"audit log: {log}") == 1, errors
    return child.returncode, out, errors.strip().splitlines()


@pytest.mark.parametrize(("sig", "code", "reason", "moment"), [
    (signal.SIGINT, 130, "interrupted", "cell"),
    (signal.SIGINT, 130, "interrupted", "model"),
    (signal.SIGTERM, 143, "terminated", "cell"),
    (signal.SIGTERM, 143, "terminated", "model"),
    (signal.SIGHUP, 129, "terminated", "cell"),
])
def test_a_signalled_run_is_sealed_with_its_reason(tmp_path: Path, sig: int, code: int, reason: str,
                                                   moment: str, docker_ready: str) -> None:
    """Ctrl-C, SIGTERM or SIGHUP mid-cell or mid-model-call: exit 128+n, log intact and sealed, no container left."""
    with ScriptedLM(latency_s=0.0 if moment == "cell" else 4.0) as lm:
        lm.script("root", [SLEEP_CELL] if moment == "cell" else RUN)
        child = start_run(lm, tmp_path)
        log = wait_for(tmp_path, '"kind":"root"' if moment == "cell" else '"kind":"iteration.start"')
        time.sleep(1.0)  # inside the sleeping cell, or waiting for the slow model's reply
        child.send_signal(sig)
        returncode, _out, lines = ended(child, log, reason)
    assert returncode == code and lines == [f"audit log: {log}"]
    kinds = [e["kind"] for e in events(log)]
    assert "sandbox.stop" in kinds and "run.end" not in kinds, kinds
    shown = subprocess.run([sys.executable, "-m", "rlm_host", "audit", "verify", str(log)], capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0 and "intact" in shown.stdout


def test_answered_and_last_resort_runs_say_so(tmp_path: Path, docker_ready: str) -> None:
    """A run that answers seals "answered"; one out of turns seals "last_resort"; --json stdout stays one object."""
    with ScriptedLM() as lm:
        lm.script("root", RUN)
        lm.rule("sub", lambda messages: "EUR 48,500")
        child = start_run(lm, tmp_path / "a", "--json")
        log = wait_for(tmp_path / "a", '"kind":"seal"')
        returncode, out, lines = ended(child, log, "answered")
        assert returncode == 0 and json.loads(out)["answer"] == "EUR 48,500" \
            and json.loads(out)["audit_log"] == str(log)
        assert lines == [f"audit log: {log}"]
        lm.script("root", ["```python\nprint(1)\n```", "The fee is EUR 48,500."])
        child = start_run(lm, tmp_path / "b", "--max-iterations", "1")
        returncode, out, _lines = ended(child, wait_for(tmp_path / "b", '"kind":"seal"'), "last_resort")
    assert returncode == 0 and "EUR 48,500" in out


def test_a_failed_model_seals_lm_error(tmp_path: Path, docker_ready: str) -> None:
    """An endpoint refusing the key mid-run: exit 1, one error line ending with the log's path, sealed "lm_error"."""
    with ScriptedLM() as lm:
        lm.script("root", RUN)
        lm.fail(401, 10, model="root", after=1)
        child = start_run(lm, tmp_path)
        log = wait_for(tmp_path, '"kind":"seal"')
        returncode, out, lines = ended(child, log, "lm_error")
    assert returncode == 1 and out == "" and len(lines) == 1, lines
    assert lines[0].startswith("rlm-host: error: ") and lines[0].endswith(f"(audit log: {log})")
    assert [e for e in events(log) if e["kind"] == "run.error"], "the failure's cause is recorded"


def test_a_broken_sandbox_seals_sandbox_error(tmp_path: Path, docker_ready: str) -> None:
    """A session whose lifetime ran out mid-run ends the run with a sandbox error, sealed "sandbox_error"."""
    raw = yaml.safe_load((policies_dir() / "standard.yaml").read_text())
    raw["limits"]["session_lifetime_s"] = 3
    (tmp_path / "seccomp-standard.json").write_text((policies_dir() / "seccomp-standard.json").read_text())
    (tmp_path / "short.yaml").write_text(yaml.safe_dump(raw))
    with ScriptedLM() as lm:
        lm.script("root", ["```python\nimport time\ntime.sleep(10)\n```", "```python\nprint(1)\n```"])
        child = start_run(lm, tmp_path / "logs", "--policy", str(tmp_path / "short.yaml"))
        returncode, _out, lines = ended(child, wait_for(tmp_path / "logs", '"kind":"seal"'), "sandbox_error")
    assert returncode == 1 and len(lines) == 1 and "is closed" in lines[0], lines


def test_exec_seals_done_and_interrupted(tmp_path: Path, docker_ready: str) -> None:
    """exec's log ends "exec_done", "interrupted" on Ctrl-C (no container left), and prints its path each time."""
    env = {**os.environ, "RLM_HOST_AUDIT_DIR": str(tmp_path / "done")}
    done = subprocess.run([sys.executable, "-m", "rlm_host", "exec", "-"], input="print(1)\n", env=env,
                          capture_output=True, text=True, timeout=120)
    log = next((tmp_path / "done").glob("*.jsonl"))
    assert done.returncode == 0 and json.loads(done.stdout)["audit_log"] == str(log)
    assert f"audit log: {log}" in done.stderr.splitlines() and events(log)[-1]["reason"] == "exec_done"
    env["RLM_HOST_AUDIT_DIR"] = str(tmp_path / "int")
    (tmp_path / "sleep.py").write_text("import time\ntime.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-m", "rlm_host", "exec", str(tmp_path / "sleep.py")], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = wait_for(tmp_path / "int", '"kind":"sandbox.start"')
    time.sleep(1.0)
    child.send_signal(signal.SIGINT)
    returncode, _out, lines = ended(child, log, "interrupted")
    assert returncode == 130 and lines == [f"audit log: {log}"]


def test_a_signal_mid_line_waits_until_the_line_is_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C arriving while a line is being written lands after it: the seal then continues the chain."""
    key = b"k" * 32
    log = AuditLog("signalled", "full", directory=tmp_path, key=key)
    write = FsyncWriter.msg

    def interrupted(self: FsyncWriter, line: str) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # numbered and chained, not yet written
        time.sleep(0.05)
        write(self, line)

    monkeypatch.setattr(FsyncWriter, "info", interrupted)
    with pytest.raises(KeyboardInterrupt):
        log.record("cell", {"code": "print(1)"})
    monkeypatch.undo()
    log.seal("interrupted")
    assert [e["kind"] for e in events(log.path)] == ["cell", "seal"]
    assert verify(log.path, key=key).status == "intact" and events(log.path)[-1]["reason"] == "interrupted"


@pytest.mark.parametrize(("exc", "reason"), [
    (KeyboardInterrupt(), "interrupted"), (SystemExit(143), "terminated"),
    (LMError("x", status=401, attempts=1), "lm_error"),
    (SessionClosed("x"), "sandbox_error"), (AuditError("x"), "audit_error"), (ConfigError("x"), "error"),
    (ValueError("x"), "error")])
def test_seal_reason_follows_the_exception(exc: BaseException, reason: str) -> None:
    """Which exception ended a run decides its seal reason, and only from the host's own error tree."""
    assert seal_reason(exc) == reason and reason in SEAL_REASONS
