"""Exhaustion ends in a recorded status within the limit plus grace, and the next cell works."""

from __future__ import annotations

import pytest

from rlm_host.policy import Policy
from rlm_host.results import ExecutionResult
from rlm_host.sandbox import DockerSandbox

pytestmark = pytest.mark.docker

SLACK_S = 3.0  # scheduling and docker round trips on a busy 2-core machine


def within(result: ExecutionResult, policy: Policy) -> bool:
    limit = policy.limits.cell_timeout_s + policy.limits.interrupt_grace_s + SLACK_S
    return result.duration_ms <= limit * 1000


def next_cell_works(sandbox: DockerSandbox) -> None:
    after = sandbox.execute("print('alive', 6 * 7)")
    assert after.status == "ok" and after.stdout == "alive 42\n", after


def test_infinite_loop_is_interrupted_and_state_kept(policy: Policy) -> None:
    """A busy loop is interrupted at the cell limit; variables survive."""
    with DockerSandbox.start(policy) as sandbox:
        sandbox.execute("kept = 'yes'")
        result = sandbox.execute("while True:\n    pass")
        assert result.status == "timeout" and not result.restarted
        assert result.error is not None and result.error.name == "KeyboardInterrupt"
        assert within(result, policy) and "interrupted" in result.reason
        assert sandbox.execute("print(kept)").stdout == "yes\n"
        next_cell_works(sandbox)


def test_loop_ignoring_sigint_gets_a_new_sandbox(policy: Policy, tmp_path) -> None:
    """A loop that ignores SIGINT is killed after the grace; a fresh kernel has the documents."""
    doc = tmp_path / "doc.txt"
    doc.write_text("the documents come back")
    with DockerSandbox.start(policy, [doc]) as sandbox:
        first = sandbox.container_id
        sandbox.execute("lost = 1")
        result = sandbox.execute("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass")
        assert result.status == "timeout" and result.restarted and "variables are lost" in result.reason
        assert within(result, policy)
        assert sandbox.container_id != first and sandbox.restarts == 1
        assert sandbox.execute("'lost' in dir()").result == "False"
        assert sandbox.execute("print(context)").stdout == "the documents come back\n"
        next_cell_works(sandbox)


def test_memory_hog_is_reported_as_oom(policy: Policy) -> None:
    """Touching more memory than the limit ends in status oom and a restart."""
    with DockerSandbox.start(policy) as sandbox:
        result = sandbox.execute(f"hog = b'x' * ({policy.limits.memory_mb} * 2 * 1024 * 1024)")
        assert result.status == "oom" and result.restarted, result
        assert "out of memory" in result.reason and within(result, policy)
        next_cell_works(sandbox)


def test_fork_bomb_is_contained(policy: Policy) -> None:
    """A fork bomb hits the pids or memory limit; the sandbox is replaced and works."""
    with DockerSandbox.start(policy) as sandbox:
        result = sandbox.execute("import os\nwhile True:\n    os.fork()")
        assert result.status in {"killed", "oom", "timeout"} and result.restarted, result
        assert within(result, policy)
        next_cell_works(sandbox)


def test_thread_bomb_is_contained(policy: Policy) -> None:
    """A thread bomb ends within the limit; under runc it hits the pids limit and is replaced.

    Under gVisor the sandbox's threads are the sentry's own tasks, not host threads, so the
    host pids cgroup does not see them: the bomb runs until the cell limit and is interrupted.
    """
    with DockerSandbox.start(policy) as sandbox:
        code = ("import threading, time\nthreads = []\nwhile True:\n"
                "    t = threading.Thread(target=time.sleep, args=(60,), daemon=True)\n"
                "    t.start()\n    threads.append(t)")
        result = sandbox.execute(code)
        assert result.status in {"killed", "timeout", "oom"}, result
        if policy.runtime == "runc":
            assert result.restarted and "process limit" in result.reason, result
        assert within(result, policy)
        next_cell_works(sandbox)


def test_disk_filler_hits_tmpfs_size(policy: Policy) -> None:
    """Filling the scratch tmpfs fails inside the cell (ENOSPC or EFBIG); the kernel lives."""
    with DockerSandbox.start(policy) as sandbox:
        result = sandbox.execute("f = open('/tmp/fill', 'wb')\nwhile True:\n    f.write(b'x' * (1 << 20))")
        assert result.status == "error" and not result.restarted, result
        assert result.error.name in {"OSError", "IOError"}
        assert "No space left" in result.error.value or "too large" in result.error.value
        sandbox.execute("f.close(); import os; os.remove('/tmp/fill')")
        next_cell_works(sandbox)


def test_output_flood_is_capped(policy: Policy) -> None:
    """An endless print loop is cut at the output cap and stopped at the cell limit."""
    with DockerSandbox.start(policy) as sandbox:
        result = sandbox.execute("while True:\n    print('flood' * 20)")
        assert result.status == "timeout" and result.truncated, result
        assert len(result.stdout.encode()) <= policy.limits.output_cap_bytes + 200
        assert "output truncated" in result.stdout and within(result, policy)
        next_cell_works(sandbox)


def test_single_giant_line_is_capped(policy: Policy) -> None:
    """One 64 MB line never reaches the host whole; the cell finishes truncated."""
    with DockerSandbox.start(policy) as sandbox:
        result = sandbox.execute("print('z' * (64 * 1024 * 1024))")
        assert result.status == "ok" and result.truncated, result
        assert len(result.stdout.encode()) <= policy.limits.output_cap_bytes + 200
        next_cell_works(sandbox)


def test_session_lifetime_closes_the_session(policy: Policy) -> None:
    """A cell that outlives the session's lifetime is killed and the session closed."""
    from rlm_host.errors import SessionClosed

    short = policy.with_limits(session_lifetime_s=3, cell_timeout_s=30)
    sandbox = DockerSandbox.start(short)
    try:
        result = sandbox.execute("import time\ntime.sleep(20)")
        assert result.status == "killed" and "session lifetime" in result.reason
        assert result.duration_ms < 10_000
        with pytest.raises(SessionClosed, match="closed"):
            sandbox.execute("1")
    finally:
        sandbox.close()
    assert sandbox.container_id is None
