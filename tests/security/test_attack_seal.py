"""The seal's reason, attacked from the kernel: model code cannot end the host's run or choose how it reads.

The reason a log is sealed with comes from the host alone (which exception, if any, ended
``RLM.complete``). Each attack is a real run (scripted root model, real sandbox, real broker) whose
first cell raises what would end the host process if it were raised there, or signals its own
kernel; each asserts that the run went on and answered, and that its log verifies intact, sealed
``answered``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import record, run_attack  # noqa: F401 - record is a fixture

from rlm_host import audit

pytestmark = pytest.mark.docker
CATEGORY = "record integrity"
POLICIES = pytest.mark.parametrize("policy", ["standard", "strict"], ids=["runc", "runsc"])
ATTACKS = {
    "KeyboardInterrupt": "raise KeyboardInterrupt",
    "SystemExit(143)": "raise SystemExit(143)",
    "SIGTERM to its own kernel": "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)",
}


@POLICIES
@pytest.mark.parametrize("name", list(ATTACKS))
def test_a_cell_cannot_end_the_run_or_fake_its_seal(policy: str, name: str, tmp_path: Path, record) -> None:
    """A cell raising KeyboardInterrupt or SystemExit, or signalling its kernel, to fake how the run ended"""
    out = run_attack(policy, ATTACKS[name], tmp_path, prelude=False)
    log = Path(out.result.audit_log)
    seal = audit.events(log)[-1]
    assert seal["kind"] == "seal" and seal["reason"] == "answered", seal
    assert not [e for e in out.events if e["kind"] == "run.error"]
    record(out, f"{name}: cell `{out.step.status}`; the run went on and answered; log intact, sealed `answered`")
