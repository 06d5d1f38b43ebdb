"""Containers go away however the host process ends: Ctrl-C, SIGTERM, or exit without close()."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlm_host import audit
from rlm_host.sandbox.docker_engine import docker_client
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
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509 - the test starts no thread
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


STORMS = {
    "sleeping-threads": "import threading, time\n"
                        "for _ in range(5000):\n"
                        "    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n",
    "threads-ignoring-sigint": "import signal, threading, time\n"
                               "for _ in range(5000):\n"
                               "    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n"
                               "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                               "while True:\n    time.sleep(1)\n",
}


@pytest.mark.parametrize("storm", list(STORMS))
@pytest.mark.parametrize("policy", ["standard", "strict"], ids=["runc", "runsc"])
def test_storm_cell_ends_in_its_recorded_status(policy: str, storm: str, tmp_path, docker_ready: str) -> None:
    """`rlm-host exec` of a thread storm exits 0 with the cell's JSON, as recorded, and no container left."""
    cell = tmp_path / "storm.py"
    cell.write_text(STORMS[storm])
    proc = subprocess.Popen([sys.executable, "-m", "rlm_host", "exec", "--policy", policy, "--timeout", "6", str(cell)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()  # only if it hung; its containers are then the fixture's to report
    assert proc.returncode == 0, err[-3000:]
    result = json.loads(out)
    assert result["status"] in {"ok", "timeout", "killed", "oom"}, result
    events = audit.events(Path(result["audit_log"]))
    cells = [e for e in events if e["kind"] == "cell"]
    assert [c["status"] for c in cells] == [result["status"]], cells
    assert "sandbox.remove_failed" not in [e["kind"] for e in events]
    assert audit.verify(Path(result["audit_log"])).status == "intact"
    assert containers_of(proc.pid) == []
