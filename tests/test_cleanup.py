"""Containers go away however the host process ends: Ctrl-C, SIGTERM, or exit without close()."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from rlm_host.engine import docker_client
from rlm_host.settings import OWNER_LABEL

pytestmark = pytest.mark.docker


def containers_of(pid: int) -> list:
    return docker_client().containers.list(all=True, filters={"label": f"{OWNER_LABEL}={pid}"})


def wait_for_container(proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not containers_of(proc.pid):
        if proc.poll() is not None:
            pytest.fail(f"exec ended early: {proc.communicate()}")
        assert time.monotonic() < deadline, "no container appeared"
        time.sleep(0.2)
    time.sleep(1.5)  # let the kernel start and the cell begin


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_signal_removes_the_container(sig: signal.Signals, tmp_path, docker_ready: str) -> None:
    """A signal to `rlm-host exec` mid-cell ends it promptly with its container removed."""
    cell = tmp_path / "sleep.py"
    cell.write_text("import time\nwhile True:\n    time.sleep(1)\n")
    # -X faulthandler: if it hangs, SIGABRT makes it print every thread's stack for the failure message
    # SIGINT at its default: a suite started in the background (`make test &`) runs with SIGINT ignored,
    # which children inherit, and Python then installs no KeyboardInterrupt handler (Ctrl-C never
    # reaches a background job anyway; the test is about a foreground one).
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "rlm_host", "exec", str(cell)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for_container(proc)
    proc.send_signal(sig)
    try:
        _out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        _out, err = proc.communicate(timeout=30)
        for container in containers_of(proc.pid):
            container.remove(force=True)
        pytest.fail(f"`rlm-host exec` still ran 30 s after {sig.name}; its stacks:\n{err[-6000:]}")
    assert proc.returncode != 0
    assert "Traceback" not in err, err
    assert containers_of(proc.pid) == []


def test_exit_without_close_removes_the_container(docker_ready: str) -> None:
    """A program that forgets close() still leaves no container when the interpreter exits."""
    code = ("from rlm_host import DockerSandbox, load_policy\n"
            "sb = DockerSandbox.start(load_policy('standard'))\n"
            "print(sb.execute('6 * 7').result)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "42", proc.stderr
    # the child is gone; its pid may not be reused this fast, and its containers must be gone
    leftovers = docker_client().containers.list(all=True, filters={"label": OWNER_LABEL})
    assert not [c for c in leftovers if c.labels[OWNER_LABEL] != str(os.getpid())
                and not _alive(int(c.labels[OWNER_LABEL]))]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
