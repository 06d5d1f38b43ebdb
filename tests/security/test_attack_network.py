"""Network: the sandbox has no interface but lo; nothing leaves it."""

from __future__ import annotations

import pytest
from harness import record, run_attack  # noqa: F401 - record is a fixture

pytestmark = pytest.mark.docker
CATEGORY = "network"
POLICIES = pytest.mark.parametrize("policy", ["standard", "strict"], ids=["runc", "runsc"])


@POLICIES
def test_tcp_to_public_address(policy: str, tmp_path, record) -> None:
    """TCP connect to a public address (1.1.1.1:443)"""
    out = run_attack(policy, "s = socket.socket()\ns.settimeout(3)\n"
                             "verdict(tcp=attempt(s.connect, ('1.1.1.1', 443)))", tmp_path)
    assert out.found["tcp"] in {"ENETUNREACH", "EHOSTUNREACH"}, out.step.output
    record(out, f"refused: {out.found['tcp']}")
