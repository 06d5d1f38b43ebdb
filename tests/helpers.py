"""Plain helpers the tests import (conftest.py holds only fixtures and hooks)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from rlm_host.policy import Policy

RUNTIMES = {"standard": "runc", "strict": "runsc"}  # shipped policy -> its Docker runtime

Record = Callable[..., None]  # the `evidence` fixture: evidence(section, **columns)


def cell(code: str) -> str:
    """A model reply that is one Python cell."""
    return f"```python\n{code}\n```"


def say_n(messages: list[dict]) -> str:
    """A root model for batches: answer the number the task's question asks for ("Say N")."""
    asked = re.search(r"Question: Say (\d+)", "\n".join(str(m.get("content")) for m in messages))
    return cell(f"answer('{asked.group(1) if asked else '?'}')")


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


class Tmux:
    """A real terminal: a detached tmux session of its own server, read back with capture-pane."""

    def __init__(self, cmd: str, size: tuple[int, int] = (100, 30), env: dict[str, str] | None = None) -> None:
        assert shutil.which("tmux"), "tmux is needed for this test: apt-get install tmux (make test does)"
        self.server = f"rlmtui{os.getpid()}{int(time.time() * 1000) % 100000}"
        self.run("-f", "/dev/null", "new-session", "-d", "-s", "s", "-x", str(size[0]), "-y", str(size[1]),
                 f"{cmd}; echo EXIT=$?; sleep 120", env=env)  # the pane stays to be read

    def run(self, *args: str, env: dict[str, str] | None = None) -> str:
        return subprocess.run(["tmux", "-L", self.server, *args], capture_output=True, text=True, timeout=30,
                              env=env).stdout

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.run("send-keys", "-t", "s", key)
            time.sleep(0.15)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "s")

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in (shown := self.screen()):
                return shown
            time.sleep(0.3)
        raise AssertionError(f"{text!r} never appeared:\n{self.screen()}")

    def close(self) -> None:
        self.run("kill-server")
