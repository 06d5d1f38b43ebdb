"""Plain helpers the tests import (conftest.py holds only fixtures and hooks)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from rlm_host.policy import Policy

RUNTIMES = {"standard": "runc", "strict": "runsc"}  # shipped policy -> its Docker runtime

Record = Callable[..., None]  # the `evidence` fixture: evidence(section, **columns)


def short_limits(policy: Policy) -> Policy:
    """Short limits so exhaustion tests end quickly."""
    pids = 64 if policy.runtime == "runc" else 160  # gVisor's own threads count too
    return policy.with_limits(cell_timeout_s=4, interrupt_grace_s=2, memory_mb=384, pids=pids,
                              tmpfs_mb=16, fsize_mb=8, output_cap_bytes=4096, session_lifetime_s=900)


# Headless Chromium, for pages a reviewer opens (the run report, the index, a batch's page).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium")
    assert binary, "Debian's chromium is needed for this test: apt-get install chromium (make test does)"
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr",
                           "--v=0", *args], capture_output=True, text=True, timeout=120)


def page_requests(netlog: Path) -> list[str]:
    """The URLs a page asked for (Chromium's own background requests have no origin and are left out)."""
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    jobs = [e["params"] for e in log["events"] if e["type"] == start and "url" in e.get("params", {})]
    return [job["url"] for job in jobs if job.get("initiator") != "not an origin"]
