"""Audit logs of real runs: levels hide text at `hashes`, and a SIGKILLed run leaves a log that verifies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rlm_host.audit import events, verify
from rlm_host.lm import LMClient
from rlm_host.policy import parse_policy, policies_dir
from rlm_host.rlm import RLM
from rlm_host.sandbox import reap
from scripted_lm import ScriptedLM

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
        rlm = RLM(model="root", sub_model="sub", lm=LMClient(base_url=lm.base_url), policy=policy_at(level),
                  audit_dir=tmp_path)
        result = rlm.complete("What is the termination fee of the Customer?", [DOC])
    log = Path(result.audit_log)
    assert verify(log).status == "intact"
    text = log.read_text()
    kinds = [e["kind"] for e in events(log)]
    recorded = [k for k in kinds if k != "progress"]  # the ingestion sandbox's progress lines come first
    assert recorded[0] == "document" and kinds.index("document") < kinds.index("run.start") and kinds[-1] == "seal"
    assert {"run.start", "sandbox.start", "iteration.start", "root", "cell", "subcall", "answer", "run.end"} <= set(kinds)
    secrets = ["Clause 121", "initial term", "EUR 48,500", "termination fee of the Customer", "You answer a question"]
    if level == "full":
        assert all(s in text for s in secrets[:4])
    else:
        assert not [s for s in secrets if s in text]
        assert '"stdout_digest"' in text and '"prompt_digest"' in text and '"code_digest"' in text


CHILD = """
import sys
from rlm_host.lm import LMClient
from rlm_host.rlm import RLM
rlm = RLM(model="root", sub_model="sub", lm=LMClient(base_url=sys.argv[1]), max_iterations=3)
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
