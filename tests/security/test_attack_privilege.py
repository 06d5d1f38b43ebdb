"""Privilege: uid 1000 with no capabilities cannot become more, nor reach kernel surfaces that could make it so.

Each attack is a cell a model could write (``ctypes`` for raw syscalls, x86-64 numbers). Under ``standard``
our seccomp profile answers the denied calls with EPERM before the kernel sees them; under ``strict`` runsc
applies the same profile inside gVisor (``--oci-seccomp``), so most rows read the same; where gVisor's own
kernel answers first (a path it does not have, a device it does not implement) the row says so.
"""

from __future__ import annotations

import pytest
from harness import Outcome, record, run_attack  # noqa: F401 - record is a fixture
from helpers import short_limits

from rlm_host.policy import Policy, load_policy

pytestmark = pytest.mark.docker
CATEGORY = "privilege"
POLICIES = pytest.mark.parametrize("policy", ["standard", "strict"], ids=["runc", "runsc"])

# Helpers an attacker pastes into the cell: C strings, mount(2), and a single-threaded child
# (the kernel process has threads, and unshare(CLONE_NEWUSER) needs a single-threaded caller).
HELPERS = r'''
def buf(data):
    """A C buffer kept alive by the caller; its address for a syscall argument."""
    return ctypes.create_string_buffer(data)
def mount(source, target, fstype, flags, data=None):
    held = [buf(x) if x is not None else None for x in (source, target, fstype, data)]
    return syscall(165, *[ctypes.addressof(h) if h is not None else 0 for h in held[:3]], flags,
                   ctypes.addressof(held[3]) if held[3] is not None else 0)
def in_child(fn):
    """fn() in a forked, single-threaded child; its JSON-able result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(w, json.dumps(fn()).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data) if data else "child died"
def libc_call(name, *args):
    """A libc function by name: 'ok' or the errno name."""
    fn = getattr(libc, name)
    fn.restype = ctypes.c_int
    return "ok" if fn(*args) >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
def status(field):
    return next(l.split(":", 1)[1].strip() for l in open("/proc/self/status") if l.startswith(field + ":"))
'''

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
KERNEL_FILE_ERRORS = {"ENOENT", "EACCES", "EROFS"}  # absent, not ours, or mounted read-only


def attack(policy: str | Policy, code: str, tmp_path, **options) -> Outcome:
    """Run ``code`` (after the shared helpers) as an attack cell."""
    return run_attack(policy, HELPERS + code, tmp_path, **options)


def per_runtime(out: Outcome, runc: object, runsc: object) -> object:
    return {"runc": runc, "runsc": runsc}[out.runtime]


# -- identity and capabilities -------------------------------------------------------------


@POLICIES
def test_setuid_root(policy: str, tmp_path, record) -> None:
    """setuid(0), libc and raw syscall"""
    out = attack(policy, "verdict(libc=attempt(os.setuid, 0), raw=syscall(105, 0), uid=os.getuid(),"
                         " euid=os.geteuid())", tmp_path)
    assert out.found == {"libc": "EPERM", "raw": "EPERM", "uid": 1000, "euid": 1000}, out.step.output
    record(out, "refused: EPERM (no CAP_SETUID); uid stays 1000")


@POLICIES
def test_setgid_root(policy: str, tmp_path, record) -> None:
    """setgid(0) and setgroups([0])"""
    out = attack(policy, "verdict(setgid=attempt(os.setgid, 0), raw=syscall(106, 0),"
                         " setgroups=attempt(os.setgroups, [0]), gid=os.getgid(), root_group=0 in os.getgroups())",
                 tmp_path)
    assert out.found == {"setgid": "EPERM", "raw": "EPERM", "setgroups": "EPERM", "gid": 1000,
                         "root_group": False}, out.step.output
    record(out, "refused: EPERM (no CAP_SETGID); gid stays 1000")


@POLICIES
def test_setresuid_root(policy: str, tmp_path, record) -> None:
    """setresuid(0, 0, 0) and setresgid(0, 0, 0), raw syscalls"""
    out = attack(policy, "verdict(setresuid=syscall(117, 0, 0, 0), setresgid=syscall(119, 0, 0, 0),"
                         " ids=list(os.getresuid()) + list(os.getresgid()))", tmp_path)
    assert out.found == {"setresuid": "EPERM", "setresgid": "EPERM", "ids": [1000] * 6}, out.step.output
    record(out, "refused: EPERM; real, effective and saved ids stay 1000")


CAPSET = r'''
header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
SYS_ADMIN = 1 << 21
wanted = (ctypes.c_uint32 * 6)(SYS_ADMIN, SYS_ADMIN, SYS_ADMIN, 0, 0, 0)  # effective, permitted, inheritable
capset = syscall(126, ctypes.addressof(header), ctypes.addressof(wanted))
ambient = libc_call("prctl", 47, 2, 21, 0, 0)  # PR_CAP_AMBIENT_RAISE CAP_SYS_ADMIN
verdict(capset=capset, ambient=ambient, cap_eff=status("CapEff"), cap_prm=status("CapPrm"),
        cap_bnd=status("CapBnd"))
'''


@POLICIES
def test_capset_raise_sys_admin(policy: str, tmp_path, record) -> None:
    """capset: raise CAP_SYS_ADMIN (and PR_CAP_AMBIENT_RAISE it)"""
    out = attack(policy, CAPSET, tmp_path)
    zero = "0000000000000000"
    ambient = per_runtime(out, "EPERM", "EINVAL")
    assert out.found == {"capset": "EPERM", "ambient": ambient, "cap_eff": zero, "cap_prm": zero,
                         "cap_bnd": zero}, out.step.output
    record(out, f"refused: EPERM (ambient raise: {ambient}); effective, permitted and bounding sets stay empty")


@POLICIES
def test_clear_no_new_privs(policy: str, tmp_path, record) -> None:
    """prctl: clear no_new_privs (so a setuid exec would raise privileges)"""
    # PR_SET_NO_NEW_PRIVS 0, then PR_GET_NO_NEW_PRIVS
    out = attack(policy, "verdict(clear=libc_call('prctl', 38, 0, 0, 0, 0), nnp=libc.prctl(39, 0, 0, 0, 0))",
                 tmp_path)
    assert out.found == {"clear": "EINVAL", "nnp": 1}, out.step.output
    record(out, "refused: EINVAL (the flag cannot be cleared); still set")


# -- namespaces ------------------------------------------------------------------------------


def unshare_in_child(flag: int, then: str) -> str:
    """A cell: unshare(flag) in a single-threaded child, then ``then`` there."""
    return (f"def go():\n    return [syscall(272, {flag}), {then}]\n"
            f"res = in_child(go)\n"
            f"verdict(unshare=res[0], after=res[1], in_kernel=syscall(272, {flag}))")


@POLICIES
def test_unshare_user_namespace(policy: str, tmp_path, record) -> None:
    """unshare(CLONE_NEWUSER) in a single-threaded child, then map uid 0 and setuid(0)"""
    then = ("[attempt(lambda: os.write(os.open('/proc/self/uid_map', os.O_WRONLY), b'0 1000 1')),"
            " attempt(os.setuid, 0), os.getuid(), status('CapEff')]")
    out = attack(policy, unshare_in_child(CLONE_NEWUSER, then), tmp_path)
    assert out.found["unshare"] == out.found["in_kernel"] == "EPERM", out.step.output
    uid_map, setuid, uid, caps = out.found["after"]
    assert uid_map != "ok" and setuid == "EPERM", out.step.output  # no namespace to map uid 0 in
    assert (uid, caps) == (1000, "0000000000000000"), out.step.output
    record(out, f"refused: EPERM (seccomp); uid_map write {uid_map}, uid stays 1000, no capabilities")


@POLICIES
def test_unshare_net_namespace(policy: str, tmp_path, record) -> None:
    """unshare(CLONE_NEWNET) in a single-threaded child"""
    then = "sorted(name for _, name in socket.if_nameindex())"
    out = attack(policy, unshare_in_child(CLONE_NEWNET, then), tmp_path)
    assert out.found == {"unshare": "EPERM", "in_kernel": "EPERM", "after": ["lo"]}, out.step.output
    record(out, "refused: EPERM (seccomp); still only lo")


@POLICIES
def test_unshare_mount_namespace(policy: str, tmp_path, record) -> None:
    """unshare(CLONE_NEWNS) in a single-threaded child, then mount a tmpfs"""
    then = "mount(b'none', b'/tmp', b'tmpfs', 0)"
    out = attack(policy, unshare_in_child(CLONE_NEWNS, then), tmp_path)
    assert out.found == {"unshare": "EPERM", "in_kernel": "EPERM", "after": "EPERM"}, out.step.output
    record(out, "refused: EPERM (seccomp); the mount after it too")


CLONE_NEWUSER_CHILD = r'''
import signal, struct
CLONE_NEWUSER = 0x10000000
def spawn(nr, *args):
    """clone or clone3 asking for a new user namespace; in the new process (if any), exit at once."""
    ret = libc.syscall(nr, *args)
    if ret == 0:
        os._exit(0)
    if ret > 0:
        os.waitpid(ret, 0)
        return "ok"
    return errno.errorcode[ctypes.get_errno()]
clone_args = buf(struct.pack("<11Q", CLONE_NEWUSER, 0, 0, 0, signal.SIGCHLD, 0, 0, 0, 0, 0, 0))
verdict(clone=in_child(lambda: spawn(56, ctypes.c_long(CLONE_NEWUSER | signal.SIGCHLD), ctypes.c_long(0),
                                     ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0))),
        clone3=in_child(lambda: spawn(435, ctypes.c_void_p(ctypes.addressof(clone_args)), ctypes.c_long(88))))
'''


@POLICIES
def test_clone_new_user_namespace(policy: str, tmp_path, record) -> None:
    """clone and clone3 with CLONE_NEWUSER (clone3's flags are out of seccomp's sight)"""
    out = attack(policy, CLONE_NEWUSER_CHILD, tmp_path)
    assert out.found == {"clone": "EPERM", "clone3": "ENOSYS"}, out.step.output
    record(out, "refused: clone EPERM (seccomp filters its flags); "
                "clone3 ENOSYS (seccomp; glibc falls back to clone)")


SETNS = r'''
found = {}
for ns in ["user", "mnt", "net", "pid", "ipc", "uts", "cgroup"]:
    try:
        fd = os.open(f"/proc/1/ns/{ns}", os.O_RDONLY)
    except OSError as exc:
        found[ns] = "open " + errno.errorcode[exc.errno]
        continue
    found[ns] = syscall(308, fd, 0)
    os.close(fd)
verdict(**found)
'''


@POLICIES
def test_setns_into_pid1_namespaces(policy: str, tmp_path, record) -> None:
    """setns into each of /proc/1/ns/*"""
    out = attack(policy, SETNS, tmp_path)
    entered = sorted(ns for ns, result in out.found.items() if result == "EPERM")
    assert set(out.found.values()) <= {"EPERM", "open ENOENT"}, out.step.output
    assert entered == per_runtime(out, sorted(out.found), ["net", "pid", "user"]), out.step.output
    record(out, per_runtime(out, "refused: EPERM (seccomp) for all 7",
                            "refused: EPERM (seccomp) for net, pid, user; gVisor has no other ns files"))


# -- mounts, roots ---------------------------------------------------------------------------


@POLICIES
def test_mount_tmpfs(policy: str, tmp_path, record) -> None:
    """mount a tmpfs (over /tmp, and on a fresh directory)"""
    out = attack(policy, "os.makedirs('/tmp/m', exist_ok=True)\n"
                         "verdict(over_tmp=mount(b'none', b'/tmp', b'tmpfs', 0),"
                         " fresh=mount(b'none', b'/tmp/m', b'tmpfs', 0, b'size=1m'), listed=os.listdir('/tmp/m'))",
                 tmp_path)
    assert out.found == {"over_tmp": "EPERM", "fresh": "EPERM", "listed": []}, out.step.output
    record(out, "refused: EPERM (seccomp)")


REMOUNT = r'''
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 0x20, 0x1000, 0x4000
verdict(bind_remount=mount(b"/", b"/", None, MS_REMOUNT | MS_BIND),
        remount=mount(b"none", b"/", None, MS_REMOUNT),
        rbind=mount(b"/", b"/tmp", None, MS_BIND | MS_REC),
        write_usr=attempt(open, "/usr/pwned", "w"))
'''


@POLICIES
def test_remount_root_read_write(policy: str, tmp_path, record) -> None:
    """mount: bind remount of / read-write (and a recursive bind of / onto /tmp)"""
    out = attack(policy, REMOUNT, tmp_path)
    write_usr = per_runtime(out, "EROFS", "EACCES")  # gVisor checks the owner before the read-only mount
    assert out.found == {"bind_remount": "EPERM", "remount": "EPERM", "rbind": "EPERM",
                         "write_usr": write_usr}, out.step.output
    record(out, f"refused: EPERM (seccomp); / stays read-only (a write: {write_usr})")


@POLICIES
def test_chroot(policy: str, tmp_path, record) -> None:
    """chroot into /tmp"""
    out = attack(policy, "verdict(libc=attempt(os.chroot, '/tmp'), raw=syscall(161, ctypes.addressof(buf(b'/tmp'))))",
                 tmp_path)
    assert out.found == {"libc": "EPERM", "raw": "EPERM"}, out.step.output
    record(out, "refused: EPERM")


@POLICIES
def test_pivot_root(policy: str, tmp_path, record) -> None:
    """pivot_root to /tmp"""
    out = attack(policy, "os.makedirs('/tmp/old', exist_ok=True)\n"
                         "verdict(pivot=syscall(155, ctypes.addressof(buf(b'/tmp')),"
                         " ctypes.addressof(buf(b'/tmp/old'))))", tmp_path)
    assert out.found == {"pivot": "EPERM"}, out.step.output
    record(out, "refused: EPERM (seccomp)")


# -- other processes -----------------------------------------------------------------------------


PTRACE_ATTACH = r'''
import subprocess
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
child = subprocess.Popen(["python3", "-c", "import time; time.sleep(30)"])
try:
    iov = (ctypes.c_char * 64)()
    local = (ctypes.c_void_p * 2)(ctypes.addressof(iov), 64)
    remote = (ctypes.c_void_p * 2)(0x400000, 64)
    verdict(parent=open(f"/proc/{os.getppid()}/cmdline").read().split("\0")[0],
            attach_parent=syscall(101, PTRACE_ATTACH, os.getppid(), 0, 0),
            attach_child=syscall(101, PTRACE_ATTACH, child.pid, 0, 0),
            vm_read=syscall(310, os.getppid(), ctypes.addressof(local), 1, ctypes.addressof(remote), 1, 0))
finally:
    child.kill()
    child.wait()
'''


@POLICIES
def test_ptrace_attach(policy: str, tmp_path, record) -> None:
    """ptrace(PTRACE_ATTACH) to the kernel's parent (pid 1) and to its own child; process_vm_readv"""
    out = attack(policy, PTRACE_ATTACH, tmp_path)
    assert out.found == {"parent": "/sbin/docker-init", "attach_parent": "EPERM", "attach_child": "EPERM",
                         "vm_read": "EPERM"}, out.step.output
    record(out, "refused: EPERM (seccomp), for pid 1 and for its own child alike")


PTRACE_TRACEME = r'''
import signal
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    os.write(w, syscall(101, 0, 0, 0, 0).encode())  # PTRACE_TRACEME
    os.close(w)
    os.execv("/usr/bin/python3", ["python3", "-c", "import os, sys; sys.exit(os.getuid() % 256)"])
os.close(w)
traceme = os.read(r, 64).decode()
os.close(r)
_, state = os.waitpid(pid, os.WUNTRACED)
if os.WIFSTOPPED(state):  # the exec stopped for a tracer: the attack is on
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
verdict(traceme=traceme, stopped=os.WIFSTOPPED(state),
        exit_uid=os.WEXITSTATUS(state) if os.WIFEXITED(state) else None)
'''


@POLICIES
def test_ptrace_traceme_then_exec(policy: str, tmp_path, record) -> None:
    """ptrace(PTRACE_TRACEME), then exec a program (the setuid-exec trick)"""
    out = attack(policy, PTRACE_TRACEME, tmp_path)
    assert out.found == {"traceme": "EPERM", "stopped": False, "exit_uid": 1000 % 256}, out.step.output
    record(out, "refused: EPERM (seccomp); the exec runs untraced as uid 1000")


# -- kernel attack surfaces ---------------------------------------------------------------------------


KEY_SPEC_SESSION_KEYRING = -3
KEYCTL = f"""
verdict(join=syscall(250, 1, ctypes.addressof(buf(b"pwn"))),  # KEYCTL_JOIN_SESSION_KEYRING
        get=syscall(250, 0, {KEY_SPEC_SESSION_KEYRING}, 1))  # KEYCTL_GET_KEYRING_ID, create
"""
ADD_KEY = f"""
verdict(add_key=syscall(248, ctypes.addressof(buf(b"user")), ctypes.addressof(buf(b"desc")),
                        ctypes.addressof(buf(b"payload")), 7, {KEY_SPEC_SESSION_KEYRING}))
"""


@POLICIES
def test_keyctl(policy: str, tmp_path, record) -> None:
    """keyctl: join a new session keyring and look it up"""
    out = attack(policy, KEYCTL, tmp_path)
    assert out.found == {"join": "EPERM", "get": "EPERM"}, out.step.output
    record(out, "refused: EPERM (seccomp)")


@POLICIES
def test_add_key(policy: str, tmp_path, record) -> None:
    """add_key: a user key in the session keyring"""
    out = attack(policy, ADD_KEY, tmp_path)
    assert out.found == {"add_key": "EPERM"}, out.step.output
    record(out, "refused: EPERM (seccomp)")


BPF = r'''
import struct
insns = buf(struct.pack("<BBhi", 0xb7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0))  # r0 = 0; exit
license = buf(b"GPL")
attr = buf(struct.pack("<IIQQ", 1, 2, ctypes.addressof(insns), ctypes.addressof(license)).ljust(128, b"\0"))
map_attr = buf(struct.pack("<IIII", 2, 4, 8, 1).ljust(128, b"\0"))  # an array map
verdict(prog_load=syscall(321, 5, ctypes.addressof(attr), 128),  # BPF_PROG_LOAD, socket filter
        map_create=syscall(321, 0, ctypes.addressof(map_attr), 128))
'''


@POLICIES
def test_bpf(policy: str, tmp_path, record) -> None:
    """bpf: load a socket-filter program and create a map"""
    out = attack(policy, BPF, tmp_path)
    assert out.found == {"prog_load": "EPERM", "map_create": "EPERM"}, out.step.output
    record(out, "refused: EPERM (seccomp)")


PERF = r'''
import struct
attr = buf(struct.pack("<IIQ", 0, 128, 0).ljust(128, b"\0"))  # PERF_TYPE_HARDWARE, cycles
verdict(self_any_cpu=syscall(298, ctypes.addressof(attr), 0, -1, -1, 0),
        pid1_any_cpu=syscall(298, ctypes.addressof(attr), 1, -1, -1, 0))
'''


@POLICIES
def test_perf_event_open(policy: str, tmp_path, record) -> None:
    """perf_event_open: a cycle counter on itself and on pid 1"""
    out = attack(policy, PERF, tmp_path)
    assert out.found == {"self_any_cpu": "EPERM", "pid1_any_cpu": "EPERM"}, out.step.output
    record(out, "refused: EPERM (seccomp)")


@POLICIES
def test_io_uring_setup(policy: str, tmp_path, record) -> None:
    """io_uring_setup: an 8-entry ring"""
    out = attack(policy, "params = buf(120)\nverdict(ring=syscall(425, 8, ctypes.addressof(params)))", tmp_path)
    assert out.found == {"ring": "EPERM"}, out.step.output
    record(out, "refused: EPERM (seccomp)")


@POLICIES
def test_userfaultfd(policy: str, tmp_path, record) -> None:
    """userfaultfd: the syscall and /dev/userfaultfd"""
    out = attack(policy, "verdict(syscall=syscall(323, os.O_CLOEXEC | os.O_NONBLOCK),"
                         " device=attempt(os.open, '/dev/userfaultfd', os.O_RDWR))", tmp_path)
    assert out.found == {"syscall": "EPERM", "device": "ENOENT"}, out.step.output
    record(out, "refused: EPERM (seccomp); no /dev/userfaultfd")


MODULES = r'''
image = buf(b"\x7fELF\x02\x01\x01" + b"\0" * 57)
fd = os.open("/usr/bin/python3", os.O_RDONLY)
try:
    verdict(init_module=syscall(175, ctypes.addressof(image), 64, ctypes.addressof(buf(b""))),
            finit_module=syscall(313, fd, ctypes.addressof(buf(b"")), 0),
            delete_module=syscall(176, ctypes.addressof(buf(b"overlay")), 0))
finally:
    os.close(fd)
'''


@POLICIES
def test_kernel_module_loading(policy: str, tmp_path, record) -> None:
    """init_module, finit_module (and delete_module)"""
    out = attack(policy, MODULES, tmp_path)
    assert out.found == {"init_module": "EPERM", "finit_module": "EPERM", "delete_module": "EPERM"}, \
        out.step.output
    record(out, "refused: EPERM (seccomp)")


@POLICIES
def test_kexec_load(policy: str, tmp_path, record) -> None:
    """kexec_load and kexec_file_load: boot another kernel"""
    out = attack(policy, "fd = os.open('/usr/bin/python3', os.O_RDONLY)\n"
                         "verdict(kexec_load=syscall(246, 0, 0, 0, 0),"
                         " kexec_file_load=syscall(320, fd, fd, 1, ctypes.addressof(buf(b'')), 0))", tmp_path)
    assert out.found == {"kexec_load": "EPERM", "kexec_file_load": "EPERM"}, out.step.output
    record(out, "refused: EPERM (seccomp)")


@POLICIES
def test_personality_no_aslr(policy: str, tmp_path, record) -> None:
    """personality(ADDR_NO_RANDOMIZE): turn off address randomisation for what it runs next"""
    out = attack(policy, "verdict(set=libc_call('personality', ctypes.c_ulong(0x0040000)))", tmp_path)
    assert out.found == {"set": "EPERM"}, out.step.output
    record(out, "refused: EPERM (seccomp allows only the default personalities)")


# -- kernel files and devices ---------------------------------------------------------------------------


KERNEL_FILES = r'''
def write(path, data):
    def go():
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    return attempt(go)
def read(path):
    def go():
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            os.read(fd, 4096)
        finally:
            os.close(fd)
    return attempt(go)
def mknod_open(name, major, minor):
    """The fallback when a device is missing: make the node in /tmp and open it."""
    import stat
    made = attempt(os.mknod, f"/tmp/{name}", 0o600 | stat.S_IFCHR, os.makedev(major, minor))
    return [made, read(f"/tmp/{name}") if made == "ok" else None]
'''


@POLICIES
def test_sysrq_trigger(policy: str, tmp_path, record) -> None:
    """write /proc/sysrq-trigger (crash or reboot the machine)"""
    out = attack(policy, KERNEL_FILES + "verdict(sysrq=write('/proc/sysrq-trigger', b'c'))", tmp_path)
    # ENOENT here (this host kernel has no magic SysRq); with one, Docker mounts it read-only: EACCES/EROFS.
    assert out.found["sysrq"] in KERNEL_FILE_ERRORS, out.step.output
    record(out, f"refused: {out.found['sysrq']}")


@POLICIES
def test_kmsg(policy: str, tmp_path, record) -> None:
    """read and write /dev/kmsg (and /proc/kmsg; mknod a kmsg node in /tmp)"""
    out = attack(policy, KERNEL_FILES + "verdict(read=read('/dev/kmsg'), write=write('/dev/kmsg', b'<0>pwned\\n'),"
                                        " proc=read('/proc/kmsg'), node=mknod_open('kmsg', 1, 11))", tmp_path)
    assert out.found["read"] == out.found["write"] == "ENOENT", out.step.output
    assert out.found["proc"] == per_runtime(out, "EACCES", "ENOENT"), out.step.output
    assert out.found["node"] == ["EPERM", None], out.step.output
    record(out, per_runtime(out, "no device: ENOENT; /proc/kmsg EACCES; mknod EPERM",
                            "no device: ENOENT; /proc/kmsg ENOENT; mknod EPERM (seccomp: no device nodes)"))


@POLICIES
def test_dev_mem(policy: str, tmp_path, record) -> None:
    """open /dev/mem, /dev/kmem, /dev/port (and mknod a mem node in /tmp)"""
    out = attack(policy, KERNEL_FILES + "verdict(mem=read('/dev/mem'), kmem=read('/dev/kmem'),"
                                        " port=read('/dev/port'), node=mknod_open('mem', 1, 1))", tmp_path)
    assert out.found["mem"] == out.found["kmem"] == out.found["port"] == "ENOENT", out.step.output
    assert out.found["node"] == ["EPERM", None], out.step.output
    record(out, per_runtime(out, "no device: ENOENT; mknod EPERM (no CAP_MKNOD)",
                            "no device: ENOENT; mknod EPERM (seccomp: no device nodes)"))


MKNOD_NULL = r'''
import stat
path = buf(b"/tmp/null2")
verdict(libc=attempt(os.mknod, "/tmp/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3)),
        raw_mknodat=syscall(259, -100, ctypes.addressof(path), 0o666 | stat.S_IFCHR, os.makedev(1, 3)),
        exists=os.path.exists("/tmp/null") or os.path.exists("/tmp/null2"),
        fifo=attempt(os.mkfifo, "/tmp/fifo"), is_fifo=stat.S_ISFIFO(os.stat("/tmp/fifo").st_mode))
'''


@POLICIES
def test_mknod_char_device(policy: str, tmp_path, record) -> None:
    """mknod of a character device in /tmp (a /dev/null node)"""
    out = attack(policy, MKNOD_NULL, tmp_path)
    # gVisor asks for no CAP_MKNOD and ignores /tmp's nodev: only the seccomp profile's file-type filter
    # on mknod/mknodat (policies/make_seccomp.py) refuses the node there
    assert out.found == {"libc": "EPERM", "raw_mknodat": "EPERM", "exists": False, "fifo": "ok",
                         "is_fifo": True}, out.step.output
    record(out, per_runtime(out, "refused: EPERM (no CAP_MKNOD; seccomp); a FIFO still works",
                            "refused: EPERM (seccomp allows only regular files, FIFOs, sockets); "
                            "a FIFO still works"))


PROC_SYS = r'''
targets = {"core_pattern": b"|/tmp/x", "modprobe": b"/tmp/x", "hostname": b"pwned", "panic": b"1",
           "randomize_va_space": b"0", "unprivileged_bpf_disabled": b"0", "sysrq": b"1"}
found = {name: write(f"/proc/sys/kernel/{name}", data) for name, data in targets.items()}
found["vm.drop_caches"] = write("/proc/sys/vm/drop_caches", b"3")
verdict(**found)
'''


@POLICIES
def test_proc_sys_kernel(policy: str, tmp_path, record) -> None:
    """write /proc/sys/kernel/* (core_pattern, modprobe, hostname, randomize_va_space, ...)"""
    out = attack(policy, KERNEL_FILES + PROC_SYS, tmp_path)
    assert set(out.found.values()) <= KERNEL_FILE_ERRORS, out.step.output
    assert out.found["core_pattern"] == per_runtime(out, "EACCES", "ENOENT"), out.step.output
    answers = " or ".join(sorted(set(out.found.values())))
    record(out, f"none written: {answers} (core_pattern {out.found['core_pattern']})")


CGROUP = r'''
mounts = [line.split()[1] for line in open("/proc/self/mounts") if line.split()[2] in ("cgroup", "cgroup2")]
agent = {m: write(m + "/release_agent", b"/tmp/x.sh") for m in mounts}
notify = {m: write(m + "/notify_on_release", b"1") for m in mounts}
os.makedirs("/tmp/cg", exist_ok=True)
verdict(mounts=len(mounts), agent=sorted(set(agent.values())), notify=sorted(set(notify.values())),
        mount_v1=mount(b"cgroup", b"/tmp/cg", b"cgroup", 0, b"rdma"),
        mount_v2=mount(b"cgroup2", b"/tmp/cg", b"cgroup2", 0))
'''


@POLICIES
def test_cgroup_release_agent(policy: str, tmp_path, record) -> None:
    """cgroup release_agent escape: write release_agent and notify_on_release, mount a cgroup fs"""
    out = attack(policy, KERNEL_FILES + CGROUP, tmp_path)
    found = out.found
    assert set(found["agent"]) | set(found["notify"]) <= KERNEL_FILE_ERRORS, out.step.output
    assert found["mount_v1"] == found["mount_v2"] == "EPERM", out.step.output
    if out.runtime == "runsc":
        assert found["mounts"] == 0, out.step.output
        record(out, "no cgroup fs mounted; mounting one: EPERM (seccomp)")
    else:
        assert found["mounts"] > 0, out.step.output
        record(out, f"release_agent {'/'.join(found['agent']) or 'absent'}, notify_on_release "
                    f"{'/'.join(found['notify']) or 'absent'} (read-only mount); mounting one: EPERM (seccomp)")


SETUID_HUNT = r'''
import stat
found, searched = [], 0
for root, dirs, files in os.walk("/"):
    if root == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    for name in files:
        path = os.path.join(root, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        searched += 1
        if stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            found.append(path)
        elif stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            try:
                os.getxattr(path, "security.capability", follow_symlinks=False)
                found.append(path + " (file capabilities)")
            except OSError:
                pass
verdict(found=found, searched=searched)
'''


@POLICIES
def test_setuid_binary_hunt(policy: str, tmp_path, record) -> None:
    """Hunt for setuid/setgid files and files with capabilities to exec"""
    slow_walk = short_limits(load_policy(policy)).with_limits(cell_timeout_s=60)  # the whole image, on a busy host
    out = attack(slow_walk, SETUID_HUNT, tmp_path)
    assert out.found["found"] == [] and out.found["searched"] > 5000, out.step.output
    record(out, "none: no setuid, setgid or file-capability binary in the image")
