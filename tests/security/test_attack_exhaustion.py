"""Exhaustion, through whole RLM runs: each attack hits one limit and ends in a recorded outcome.

tests/test_limits.py checks the sandbox alone; here the same breaches come from a model's cell
in a real run, under test limits (4 s cells, 2 s grace, 384 MB, 16 MB tmpfs, 8 MB files,
4 KiB of output). The audit log records the limit hit (``limit.*``) and any replacement of the
kernel (``sandbox.restart``, then a second ``sandbox.start``), and the harness proves the
session, or its replacement, answers a cell and a sub-call afterwards.
"""

from __future__ import annotations

import pytest
from harness import Outcome, record, run_attack  # noqa: F401 - record is a fixture
from helpers import short_limits

from rlm_host.policy import load_policy

pytestmark = pytest.mark.docker
CATEGORY = "exhaustion"
POLICIES = pytest.mark.parametrize("policy", ["standard", "strict"], ids=["runc", "runsc"])
LIMITS = short_limits(load_policy("standard")).limits


def restarted(out: Outcome) -> bool:
    """Whether the kernel was replaced, as the result and the audit log both say."""
    kinds = out.kinds()
    replaced = "sandbox.restart" in kinds and kinds.count("sandbox.start") == 2
    assert replaced == out.step.output.endswith("variables are lost]"), (kinds, out.step.output)
    return replaced


def truncated(out: Outcome) -> bool:
    """Whether the attack's output reached the host cut to the cap, and the audit log says so."""
    cell = next(e for e in out.events if e["kind"] == "cell" and e["iteration"] == 1)
    return cell["truncated"] and len(out.step.output.encode()) <= LIMITS.output_cap_bytes + 300


def limits_hit(out: Outcome) -> list[str]:
    return [kind for kind in out.kinds() if kind.startswith("limit.")]


@POLICIES
def test_cpu_spin(policy: str, tmp_path, record) -> None:
    """CPU spin: a busy loop that never ends"""
    out = run_attack(policy, "while True:\n    pass", tmp_path)
    assert out.status == "timeout" and "KeyboardInterrupt" in out.step.output, out.step.output
    assert limits_hit(out) == ["limit.cell_timeout"] and not restarted(out), out.kinds()
    record(out, f"interrupted at the {LIMITS.cell_timeout_s:g} s cell limit (timeout); variables kept")


@POLICIES
def test_loop_ignoring_sigint(policy: str, tmp_path, record) -> None:
    """A busy loop that ignores SIGINT (signal.SIG_IGN)"""
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    out = run_attack(policy, code, tmp_path)
    assert out.status == "timeout" and restarted(out), out.step.output
    assert limits_hit(out) == ["limit.cell_timeout"], out.kinds()
    record(out, f"timeout; not stopped {LIMITS.interrupt_grace_s:g} s after the interrupt: kernel replaced "
                "(sandbox.restart)")


@POLICIES
def test_memory_hog(policy: str, tmp_path, record) -> None:
    """Memory: allocate and touch twice the memory limit"""
    out = run_attack(policy, f"hog = bytearray({LIMITS.memory_mb * 2} * 1024 * 1024)", tmp_path)
    assert out.status == "oom" and restarted(out), out.step.output
    # on a busy host the OOM kill can come after the cell limit: then both are on record, the kill last
    assert limits_hit(out) in (["limit.oom"], ["limit.cell_timeout", "limit.oom"]), out.kinds()
    record(out, f"OOM-killed at {LIMITS.memory_mb} MB (oom); kernel replaced")


@POLICIES
def test_fork_bomb(policy: str, tmp_path, record) -> None:
    """Fork bomb: os.fork() in an endless loop"""
    out = run_attack(policy, "while True:\n    os.fork()", tmp_path)
    assert out.status in {"killed", "oom", "timeout"} and restarted(out), out.step.output
    hit = limits_hit(out)
    assert hit and set(hit) <= {"limit.pids", "limit.oom", "limit.killed", "limit.cell_timeout"}, hit
    record(out, f"{out.status} ({', '.join(hit)}); kernel and every child replaced")


@POLICIES
def test_thread_bomb(policy: str, tmp_path, record) -> None:
    """Thread bomb: start sleeping threads until something gives"""
    code = ("import threading, time\nthreads = []\nwhile True:\n"
            "    t = threading.Thread(target=time.sleep, args=(60,), daemon=True)\n"
            "    t.start()\n    threads.append(t)")
    out = run_attack(policy, code, tmp_path)
    hit = limits_hit(out)
    if out.runtime == "runc":  # host threads count against the pids cgroup
        assert out.status == "killed" and restarted(out) and hit == ["limit.pids"], (hit, out.step.output)
    else:  # gVisor's threads are the sentry's tasks: the cell runs to its limit
        assert out.status in {"timeout", "killed", "oom"} and hit, (hit, out.step.output)
    record(out, f"{out.status} ({', '.join(hit)})" + ("; kernel replaced" if restarted(out) else ""))


FDS = '''
held = []
try:
    while True:
        held.append(open("/dev/null"))
except OSError as exc:
    found = errno.errorcode[exc.errno]
count = len(held)
for f in held:
    f.close()
verdict(error=found, opened=count, socket_after=attempt(socket.socket))
'''


@POLICIES
def test_file_descriptors(policy: str, tmp_path, record) -> None:
    """File descriptors: open /dev/null until EMFILE"""
    out = run_attack(policy, FDS, tmp_path)
    nofile = load_policy(policy).limits.nofile
    assert out.status == "ok" and out.found["error"] == "EMFILE", out.step.output
    assert nofile - 100 < out.found["opened"] < nofile and out.found["socket_after"] == "ok", out.found
    assert not limits_hit(out) and not restarted(out), out.kinds()
    record(out, f"EMFILE after {out.found['opened']} files (nofile {nofile}); the kernel goes on")


HELD_FDS = '''
import threading
held, full = [], threading.Event()
def hold():
    try:
        while True:
            held.append(socket.socketpair())
    except OSError as exc:
        held.append(errno.errorcode[exc.errno])
    full.set()
    threading.Event().wait()  # never returns: nothing the next cell does can close them
threading.Thread(target=hold, daemon=True).start()
full.wait(3)
verdict(error=held[-1] if held and isinstance(held[-1], str) else None, pairs=len(held) - 1)
'''


@POLICIES
@pytest.mark.parametrize("ending", ["ok", "error"])
def test_file_descriptors_left_held(policy: str, ending: str, tmp_path, record) -> None:
    """File descriptors: a thread opens sockets until EMFILE and blocks for ever holding them"""
    # A cell that ends ok is probed in its own reply; one that raised by a probe cell of the host's.
    code = HELD_FDS + ("raise RuntimeError('and the cell fails')\n" if ending == "error" else "")
    out = run_attack(policy, code, tmp_path)
    nofile = load_policy(policy).limits.nofile
    assert out.status == ending and out.found["error"] == "EMFILE", out.step.output
    assert 2 * out.found["pairs"] > nofile - 100, out.found
    # The cell ran to its end; the probe after it found no descriptor free, so the kernel was replaced
    # (run_attack's next cell makes a sub-call through a new socket, which must work).
    assert "limit.nofile" in limits_hit(out) and restarted(out), (out.kinds(), out.step.output)
    assert out.step.output.count("variables are lost") == 1, out.step.output
    record(out, f"EMFILE after {out.found['pairs']} socket pairs (nofile {nofile}), held by a blocked thread, "
                f"cell ends {ending}: limit.nofile, fresh kernel; the next cell's sub-call works")


FILL = '''
def fill(directory):
    """Write 1 MiB pieces into 4 MiB files until the filesystem refuses (at most 64 MiB)."""
    piece, written = b"x" * (1 << 20), 0
    try:
        for n in range(16):
            with open(f"{directory}/fill{n}", "wb") as f:
                for _ in range(4):
                    f.write(piece)
                    f.flush()
                    written += 1
        return "filled 64 MiB"
    except OSError as exc:
        return f"{errno.errorcode[exc.errno]} at {written} MiB"
def big_file():
    try:
        with open("/tmp/big", "wb") as f:
            f.write(b"x" * (9 << 20))
        return "written"
    except OSError as exc:
        return errno.errorcode[exc.errno]
tmp, shm, session = fill("/tmp"), fill("/dev/shm"), fill("/session")
for d in ("/tmp", "/dev/shm"):
    for n in range(16):
        if os.path.exists(f"{d}/fill{n}"):
            os.remove(f"{d}/fill{n}")
verdict(tmp=tmp, shm=shm, session=session, big=big_file())
'''


@POLICIES
def test_tmpfs_fill(policy: str, tmp_path, record) -> None:
    """Fill every writable filesystem: /tmp, /dev/shm and /session (left full), and one file past fsize"""
    out = run_attack(policy, FILL, tmp_path)
    assert out.status == "ok" and not restarted(out), out.step.output
    tmp, shm, session = (out.found[k].split() for k in ("tmp", "shm", "session"))
    assert tmp[0] == "ENOSPC" and int(tmp[2]) <= LIMITS.tmpfs_mb, out.found
    assert shm[0] == "ENOSPC" and int(shm[2]) <= 16, out.found
    assert session[0] == "ENOSPC" and int(session[2]) <= 1, out.found
    assert out.found["big"] == "EFBIG", out.found
    record(out, f"ENOSPC at {tmp[2]} MiB (/tmp), {shm[2]} MiB (/dev/shm), {session[2]} MiB (/session, left "
                f"full); a 9 MiB file: EFBIG (fsize {LIMITS.fsize_mb} MB)")


@POLICIES
def test_output_flood(policy: str, tmp_path, record) -> None:
    """Output flood: print in an endless loop"""
    out = run_attack(policy, "while True:\n    print('flood' * 20)", tmp_path)
    assert out.status == "timeout" and "output truncated" in out.step.output, out.step.output
    assert truncated(out), len(out.step.output)
    assert limits_hit(out) == ["limit.cell_timeout"] and not restarted(out), out.kinds()
    record(out, f"cut at the {LIMITS.output_cap_bytes} B output cap, stopped at the cell limit (timeout)")


@POLICIES
def test_single_giant_line(policy: str, tmp_path, record) -> None:
    """A single 64 MiB line of output"""
    out = run_attack(policy, "print('z' * (64 * 1024 * 1024))", tmp_path)
    assert out.status == "ok" and not restarted(out), out.step.output
    assert truncated(out), len(out.step.output)
    record(out, f"truncated to the {LIMITS.output_cap_bytes} B cap in the kernel; the cell ends ok")


@POLICIES
def test_deep_recursion(policy: str, tmp_path, record) -> None:
    """Deep recursion: sys.setrecursionlimit(10**6), then recurse through C calls until the stack overflows"""
    # Python 3.11 keeps Python-to-Python calls off the C stack; a call through a method-wrapper does not
    code = ("import sys\nsys.setrecursionlimit(10**6)\n"
            "def down(n):\n    return down.__call__(n + 1) + 1\ndown(0)")
    out = run_attack(policy, code, tmp_path)
    assert out.status == "killed" and restarted(out), out.step.output
    assert limits_hit(out) == ["limit.killed"], out.kinds()
    exit_code = next(e["exit_code"] for e in out.events if e["kind"] == "limit.killed")
    assert exit_code == 139, exit_code  # 128 + SIGSEGV
    record(out, "the kernel segfaults (exit 139): recorded (limit.killed) and replaced")


@POLICIES
def test_endless_generator_printed(policy: str, tmp_path, record) -> None:
    """A never-ending generator printed: print(*forever()), each item a new 1 KiB string"""
    code = "def forever():\n    while True:\n        yield 'tick' * 256\nprint(*forever())"
    out = run_attack(policy, code, tmp_path)
    assert out.status == "oom" and restarted(out), out.step.output
    assert limits_hit(out) in (["limit.oom"], ["limit.cell_timeout", "limit.oom"]), out.kinds()
    record(out, f"the arguments never finish: OOM-killed at {LIMITS.memory_mb} MB (oom) before any output; "
                "kernel replaced")


@POLICIES
def test_huge_integer(policy: str, tmp_path, record) -> None:
    """A huge integer: str(10**10**8)"""
    out = run_attack(policy, "print(str(10**10**8))", tmp_path)
    hit = limits_hit(out)
    assert out.status in {"timeout", "error"}, out.step.output
    if out.status == "timeout":
        assert hit == ["limit.cell_timeout"], hit
        record(out, "timeout at the cell limit" + ("; kernel replaced" if restarted(out) else "; variables kept"))
    else:  # Python refuses to convert an int of more than 4300 digits
        assert "ValueError" in out.step.output and not hit, out.step.output
        record(out, "ValueError (int max str digits); the kernel goes on")


# Storms: each leaves the kernel with thousands of threads or processes that resist being stopped.
# Whatever the cell's status, it is recorded, the container is removed (by the restart or at the end
# of the run: the harness checks none is left, nor any host process of it) and the next cell works.
STORM_STATUSES = {"ok", "timeout", "killed", "oom"}

THREAD_STORM = '''
import threading, time
started = 0
try:
    for _ in range(5000):
        threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
        started += 1
except RuntimeError:
    pass
verdict(threads=started)
'''

THREAD_STORM_IGNORING_SIGINT = '''
import signal, threading, time
for _ in range(5000):
    try:
        threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
    except RuntimeError:
        break
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    time.sleep(1)
'''

STUBBORN_CHILDREN = '''
import signal, time
forked = 0
for _ in range(2000):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        time.sleep(3600)
        os._exit(0)
    forked += 1
verdict(children=forked)
'''

ZOMBIES = '''
made = 0
for _ in range(2000):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        os._exit(0)
    made += 1
verdict(zombies=made)
'''

DOUBLE_FORK = '''
import signal, time
for _ in range(20):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(s, signal.SIG_IGN)
            while True:
                try:
                    if os.fork() == 0:
                        time.sleep(3600)
                        os._exit(0)
                except OSError:
                    time.sleep(0.01)
        os._exit(0)
time.sleep(1)
verdict(escaped=True)
'''

RACING_STORM = '''
import threading, time
def storm():
    while True:
        try:
            if os.fork() == 0:
                time.sleep(3600)
                os._exit(0)
        except OSError:
            time.sleep(0.001)
for _ in range(2):
    threading.Thread(target=storm, daemon=True).start()
time.sleep(1)
verdict(racing=True)
'''

BLOCKED_THREADS = '''
import threading
read_end, _write_end = os.pipe()
os.mkfifo("/tmp/storm-fifo")
def pipe_read():
    os.read(read_end, 1)
def socket_recv():
    a, _b = socket.socketpair()
    a.recv(1)
def fifo_open():
    open("/tmp/storm-fifo").read()
blocked = 0
for n in range(3000):
    try:
        threading.Thread(target=(pipe_read, socket_recv, fifo_open)[n % 3], daemon=True).start()
    except RuntimeError:
        break
    blocked += 1
verdict(blocked=blocked)
'''


def storm_ends_recorded(out: Outcome) -> list[str]:
    """The storm's status is one of the recorded ones, its limits are on record, removal never failed."""
    hit = limits_hit(out)
    assert out.status in STORM_STATUSES, out.step.output
    assert "sandbox.remove_failed" not in out.kinds(), out.kinds()
    if out.status != "ok":
        assert hit, (out.status, out.kinds())
    return hit


def storm_outcome(out: Outcome, hit: list[str]) -> str:
    text = out.status + (f" ({', '.join(hit)})" if hit else "")
    return text + ("; kernel replaced" if restarted(out) else "") + "; container removed, next cell works"


@POLICIES
def test_thread_storm_left_sleeping(policy: str, tmp_path, record) -> None:
    """Thread storm: 5,000 sleeping threads left running when the cell returns"""
    out = run_attack(policy, THREAD_STORM, tmp_path)
    hit = storm_ends_recorded(out)
    if out.runtime == "runc":  # every thread is a host task in the pids cgroup
        assert out.status == "killed" and hit == ["limit.pids"] and restarted(out), (hit, out.step.output)
    record(out, storm_outcome(out, hit))


@POLICIES
def test_thread_storm_ignoring_sigint(policy: str, tmp_path, record) -> None:
    """Thread storm, then a main thread that ignores SIGINT: the kill must take thousands of threads"""
    out = run_attack(policy, THREAD_STORM_IGNORING_SIGINT, tmp_path)
    hit = storm_ends_recorded(out)
    # (a slow runtime may still be starting threads at the interrupt: then it stops there, variables kept)
    assert out.status in {"timeout", "killed", "oom"}, (hit, out.step.output)
    record(out, storm_outcome(out, hit))


@POLICIES
def test_children_ignoring_signals(policy: str, tmp_path, record) -> None:
    """Process storm: forked children that ignore SIGINT, SIGTERM and SIGHUP and sleep"""
    out = run_attack(policy, STUBBORN_CHILDREN, tmp_path)
    hit = storm_ends_recorded(out)
    if out.runtime == "runc":
        assert out.status == "killed" and "limit.pids" in hit and restarted(out), (hit, out.step.output)
    record(out, storm_outcome(out, hit))


@POLICIES
def test_zombies_never_reaped(policy: str, tmp_path, record) -> None:
    """Zombie storm: children that exit at once, a parent that never waits for them"""
    out = run_attack(policy, ZOMBIES, tmp_path)
    hit = storm_ends_recorded(out)
    if out.runtime == "runc":
        assert out.status == "killed" and "limit.pids" in hit and restarted(out), (hit, out.step.output)
    record(out, storm_outcome(out, hit))


@POLICIES
def test_double_fork_escapes_the_kernel(policy: str, tmp_path, record) -> None:
    """Double fork and setsid: orphans that leave the kernel's tree, ignore signals and keep forking"""
    out = run_attack(policy, DOUBLE_FORK, tmp_path)
    hit = storm_ends_recorded(out)
    record(out, storm_outcome(out, hit))


@POLICIES
def test_fork_storm_racing_the_kill(policy: str, tmp_path, record) -> None:
    """Fork storm still forking from two threads while the sandbox is being killed"""
    out = run_attack(policy, RACING_STORM, tmp_path)
    hit = storm_ends_recorded(out)
    if out.runtime == "runc":
        assert "limit.pids" in hit and restarted(out), (hit, out.step.output)
    record(out, storm_outcome(out, hit))


@POLICIES
def test_threads_blocked_in_syscalls(policy: str, tmp_path, record) -> None:
    """Threads blocked in syscalls (pipe read, socket recv, FIFO open) when the sandbox is removed"""
    out = run_attack(policy, BLOCKED_THREADS, tmp_path)
    hit = storm_ends_recorded(out)
    if out.runtime == "runc":
        assert out.status == "killed" and hit == ["limit.pids"] and restarted(out), (hit, out.step.output)
    record(out, storm_outcome(out, hit))
