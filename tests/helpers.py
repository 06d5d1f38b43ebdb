"""Plain helpers the tests import (conftest.py holds only fixtures and hooks)."""

from __future__ import annotations

from collections.abc import Callable

from rlm_host.policy import Policy

RUNTIMES = {"standard": "runc", "strict": "runsc"}  # shipped policy -> its Docker runtime

Record = Callable[..., None]  # the `evidence` fixture: evidence(section, **columns)


def short_limits(policy: Policy) -> Policy:
    """Short limits so exhaustion tests end quickly."""
    pids = 64 if policy.runtime == "runc" else 160  # gVisor's own threads count too
    return policy.with_limits(cell_timeout_s=4, interrupt_grace_s=2, memory_mb=384, pids=pids,
                              tmpfs_mb=16, fsize_mb=8, output_cap_bytes=4096, session_lifetime_s=900)
