"""Filesystem: the root and the documents are read-only, scratch space runs nothing, and the one
directory the host shares with the kernel (``/session``) is hostile ground the host never trusts.

The host-side checks matter most here: the kernel can write ``/session``, and the host writes the
kernel's connection file there on every restart, so a link planted there must never be followed.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from harness import Outcome, record, run_attack  # noqa: F401 - record is a fixture
from helpers import short_limits

from rlm_host.policy import load_policy
from rlm_host.sandbox import DockerSandbox

pytestmark = pytest.mark.docker
CATEGORY = "filesystem"
POLICIES = pytest.mark.parametrize("policy", ["standard", "strict"], ids=["runc", "runsc"])

WRITE = '''
def write(path, data=b"x"):
    def go():
        with open(path, "ab") as f:
            f.write(data)
    return attempt(go)
'''
DROP = '''
import shutil, subprocess
def run_dropped(path):
    """Copy /bin/echo to path, make it executable, run it: the exit code or the errno name."""
    shutil.copyfile("/bin/echo", path)
    os.chmod(path, 0o755)
    try:
        done = subprocess.run([path, "pwned"], capture_output=True, timeout=10)
    except OSError as exc:
        return errno.errorcode[exc.errno]
    return "ran" if b"pwned" in done.stdout else f"exit {done.returncode}"
def run_script(path):
    with open(path, "w") as f:
        f.write("#!/bin/sh\\necho pwned\\n")
    os.chmod(path, 0o755)
    try:
        done = subprocess.run([path], capture_output=True, timeout=10)
    except OSError as exc:
        return errno.errorcode[exc.errno]
    return "ran" if b"pwned" in done.stdout else f"exit {done.returncode}"
'''
# End the cell by killing the kernel once its output is out: the host must restart it.
KILL_KERNEL = "\nimport sys, time\nsys.stdout.flush()\ntime.sleep(0.3)\nos.kill(os.getpid(), 9)\n"


def cell_event(out: Outcome) -> dict:
    """The audit log's ``cell`` event of the attack."""
    digest = hashlib.sha256(out.step.code.encode()).hexdigest()
    return next(e for e in out.events if e["kind"] == "cell" and e["code_sha256"] == digest)


def host_file(path: Path, text: str) -> tuple[str, int, int]:
    """A root-owned 0640 file on the host (the target a planted link aims at); its (text, mode, uid)."""
    path.write_text(text)
    path.chmod(0o640)
    return fingerprint(path)


def fingerprint(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return path.read_text(), stat.S_IMODE(st.st_mode), st.st_uid


@POLICIES
def test_write_root_filesystem(policy: str, tmp_path, record) -> None:
    """Write to the root filesystem (/usr, /etc/passwd, /etc/cron.d, a new /opt directory)"""
    code = WRITE + ("verdict(usr=write('/usr/lib/python3/dist-packages/evil.py'), passwd=write('/etc/passwd'),\n"
                    "        cron=write('/etc/cron.d/evil'), mkdir=attempt(os.mkdir, '/opt/evil'))")
    out = run_attack(policy, code, tmp_path)
    # root's files refuse uid 1000 first (EACCES); where ownership would allow it, the mount refuses (EROFS)
    expected = {"runc": {"usr": "EROFS", "passwd": "EACCES", "cron": "EROFS", "mkdir": "EROFS"},
                "runsc": {"usr": "EACCES", "passwd": "EACCES", "cron": "EACCES", "mkdir": "EROFS"}}
    assert out.found == expected[out.runtime], out.step.output
    record(out, "refused: " + ", ".join(f"{k} {v}" for k, v in out.found.items()) + " (read-only root)")


@POLICIES
def test_write_document_mount(policy: str, tmp_path, record) -> None:
    """Tamper with the documents on /docs (append, create, delete, rename, chmod)"""
    doc = tmp_path / "contract.txt"
    doc.write_text("the original terms\n")
    code = WRITE + ("verdict(append=write('/docs/00000.doc'), manifest=write('/docs/manifest.json'),\n"
                    "        create=write('/docs/new.doc'), unlink=attempt(os.unlink, '/docs/00000.doc'),\n"
                    "        rename=attempt(os.rename, '/docs/00000.doc', '/docs/x'),\n"
                    "        chmod=attempt(os.chmod, '/docs/00000.doc', 0o777),\n"
                    "        text=open('/docs/00000.doc').read())")
    out = run_attack(policy, code, tmp_path, documents=[doc])
    refused = {k: v for k, v in out.found.items() if k != "text"}
    # runc checks ownership (root's files, uid 1000) or the read-only mount; both refuse
    assert set(refused.values()) <= {"EROFS", "EPERM", "EACCES"}, out.step.output
    assert out.found["text"] == "the original terms\n" == doc.read_text(), out.step.output
    record(out, "refused: " + ", ".join(sorted(set(refused.values()))) + "; the document unchanged")


@POLICIES
def test_exec_dropped_binary_in_tmp(policy: str, tmp_path, record) -> None:
    """Run a binary dropped in /tmp and /dev/shm (noexec tmpfs)"""
    code = DROP + "verdict(tmp=run_dropped('/tmp/evil'), shm=run_dropped('/dev/shm/evil'), " \
                  "script=run_script('/tmp/evil.sh'))"
    out = run_attack(policy, code, tmp_path)
    assert out.found == {"tmp": "EACCES", "shm": "EACCES", "script": "EACCES"}, out.step.output
    record(out, "refused: EACCES (noexec)")


@POLICIES
def test_exec_dropped_binary_in_session(policy: str, tmp_path, record) -> None:
    """Run a binary and a #! script dropped in the writable session directory /session"""
    code = DROP + ("mount = [l for l in open('/proc/self/mountinfo') if ' /session ' in l][0]\n"
                   "verdict(elf=run_dropped('/session/evil'), script=run_script('/session/evil.sh'),\n"
                   "        noexec='noexec' in mount)")
    out = run_attack(policy, code, tmp_path)
    if out.runtime == "runc":
        assert out.found == {"elf": "EACCES", "script": "EACCES", "noexec": True}, out.step.output
        record(out, "refused: EACCES (host-mounted noexec tmpfs)")
    else:
        # gVisor maps the file from the host's noexec tmpfs: the ELF dies on SIGSEGV, printing nothing;
        # it does not see the host's noexec, so a #! script runs through /bin/sh, as `sh file` would anyway
        assert out.found == {"elf": "exit -11", "script": "ran", "noexec": False}, out.step.output
        record(out, "ELF killed by SIGSEGV (host noexec); a #! script runs via /bin/sh (known gap, = `sh file`)")


@POLICIES
def test_fill_session_directory(policy: str, tmp_path, record) -> None:
    """Fill the host's disk through /session (one big file, then many files), then crash the kernel"""
    code = WRITE + ("big = write('/session/fill', b'x' * (4 << 20))\n"
                    "def many():\n"
                    "    for i in range(10000):\n"
                    "        open(f'/session/f{i}', 'w').close()\n"
                    "size = os.path.getsize('/session/fill')\n"
                    "verdict(big=big, size=size, many=attempt(many))" + KILL_KERNEL)
    out = run_attack(policy, code, tmp_path)
    assert out.status == "killed" and cell_event(out)["restarted"], out.step.output
    # the VERDICT line was printed before the kernel died
    assert out.found["big"] == out.found["many"] == "ENOSPC", out.step.output
    assert out.found["size"] <= 1 << 20, out.step.output
    record(out, f"ENOSPC after {out.found['size'] >> 10} KiB (1 MiB tmpfs); the restart cleared it")


@POLICIES
def test_symlinks_planted_for_the_host(policy: str, tmp_path, record) -> None:
    """Plant links in /session where the host writes on a restart (kernel.json, the ipc sockets), then crash"""
    victim = tmp_path / "host-secret.conf"
    before = host_file(victim, "host-only settings\n")
    code = (f"os.unlink('/session/kernel.json')\nos.symlink({str(victim)!r}, '/session/kernel.json')\n"
            "os.unlink('/session/kernel-1'); os.symlink('../docs/manifest.json', '/session/kernel-1')\n"
            "os.unlink('/session/kernel-2'); os.mkdir('/session/kernel-2')\n"
            "open('/session/kernel-2/x', 'w').close()\n"
            "os.unlink('/session/kernel-3'); os.symlink('/etc', '/session/kernel-3')\n"
            "print('planted', sorted(os.listdir('/session')), flush=True)" + KILL_KERNEL)
    out = run_attack(policy, code, tmp_path)
    event = cell_event(out)
    assert out.status == event["status"] == "killed" and event["restarted"], out.step.output
    assert "planted" in out.step.output, out.step.output
    assert fingerprint(victim) == before, "the host followed a planted link"
    record(out, "links removed unfollowed on restart; host file intact; session restarted")


@POLICIES
def test_symlink_at_rpc_socket(policy: str, tmp_path, record) -> None:
    """Replace /session/rpc.sock by a link to a host file (the host unlinks that path at the end)"""
    victim = tmp_path / "host-secret.conf"
    before = host_file(victim, "host-only settings\n")
    code = ("print(llm_query('ping', 'x'))  # connect first: the client keeps its connection\n"
            "os.rename('/session/rpc.sock', '/session/rpc.real')\n"
            f"os.symlink({str(victim)!r}, '/session/rpc.sock')\n"
            "verdict(link=os.readlink('/session/rpc.sock'), peer=attempt(socket.socket(socket.AF_UNIX).connect, "
            "'/session/rpc.sock'))")
    out = run_attack(policy, code, tmp_path)
    assert out.status == "ok" and out.found["link"] == str(victim), out.step.output
    assert out.found["peer"] == "ENOENT", out.step.output  # inside, the link points nowhere
    assert fingerprint(victim) == before, "the host followed a planted link"
    record(out, "the host only unlinks the path; host file intact")


@POLICIES
def test_dotdot_out_of_session(policy: str, tmp_path, record) -> None:
    """Climb out of /session and /docs with `..` (to the host's runtime dir, the test's files)"""
    code = (f"import glob\nhost = {str(tmp_path)!r}\n"
            "verdict(up=os.path.realpath('/session/../../..'), same=os.listdir('/session/..') == os.listdir('/'),\n"
            "        runtime=attempt(os.listdir, '/session/../tmp/rlm-host-0'),\n"
            "        docs_up=attempt(os.listdir, '/docs/../../' + host),\n"
            "        tmp=attempt(os.stat, host), glob=glob.glob('/session/../*/*/io/kernel.json'))")
    out = run_attack(policy, code, tmp_path)
    assert out.found == {"up": "/", "same": True, "runtime": "ENOENT", "docs_up": "ENOENT", "tmp": "ENOENT",
                         "glob": []}, out.step.output
    record(out, "`..` ends at the container's own /; host paths: ENOENT")


@POLICIES
def test_read_other_session_directory(policy: str, tmp_path, record) -> None:
    """Read a second live session's documents and connection file by every path at hand"""
    secret = "other-tenant-" + os.urandom(6).hex()
    doc = tmp_path / "other.txt"
    doc.write_text(f"confidential: {secret}\n")
    other = DockerSandbox.start(short_limits(load_policy(policy)), [doc])
    try:
        root = other.rpc_socket_path.parent.parent
        paths = [str(root / "docs" / "00000.doc"), str(root / "io" / "kernel.json"),
                 f"/session/../{other.session_id}/docs/00000.doc", f"/docs/../../{root}/docs/00000.doc",
                 f"/proc/1/root{root}/docs/00000.doc"]
        code = (f"import glob\npaths = {paths!r}\n"
                "def read(p):\n    with open(p) as f:\n        return f.read()\n"
                "seen = []\n"
                "for top in ['/session', '/docs', '/tmp', '/dev/shm', '/proc/1/root/session']:\n"
                "    for dirpath, _, files in os.walk(top):\n"
                "        for name in files:\n"
                "            seen.append(attempt(read, os.path.join(dirpath, name)) == 'ok' and\n"
                f"                        {secret!r} in read(os.path.join(dirpath, name)))\n"
                "verdict(paths=[attempt(read, p) for p in paths], found=any(seen))")
        out = run_attack(policy, code, tmp_path)
        assert other.execute("print(context.strip())").stdout.strip() == f"confidential: {secret}"
    finally:
        other.close()
    assert out.found["found"] is False, out.step.output
    *host_paths, via_init = out.found["paths"]
    assert host_paths == ["ENOENT"] * (len(paths) - 1) and via_init in {"ENOENT", "EACCES"}, out.step.output
    record(out, f"host paths: ENOENT; /proc/1/root: {via_init}; the other session's text is nowhere readable")


@POLICIES
def test_docker_socket(policy: str, tmp_path, record) -> None:
    """Find and connect to the Docker or containerd socket (any Unix socket but the session's own)"""
    code = ("import stat\n"
            "candidates = ['/var/run/docker.sock', '/run/docker.sock', '/run/containerd/containerd.sock',\n"
            "              '/var/run/docker/containerd/containerd.sock']\n"
            "def connect(p):\n    socket.socket(socket.AF_UNIX).connect(p)\n"
            "sockets = []\n"
            "for top in ['/run', '/var', '/tmp', '/dev', '/session', '/docs', '/home', '/root', '/mnt', '/srv',\n"
            "            '/opt', '/etc']:  # all but /usr (the image's code), /proc and /sys\n"
            "    for dirpath, dirs, files in os.walk(top):\n"
            "        for name in files:\n"
            "            p = os.path.join(dirpath, name)\n"
            "            if attempt(os.lstat, p) == 'ok' and stat.S_ISSOCK(os.lstat(p).st_mode):\n"
            "                sockets.append(p)\n"
            "verdict(known=[attempt(connect, p) for p in candidates], sockets=sorted(sockets))")
    out = run_attack(policy, code, tmp_path)
    own = ["/session/kernel-1", "/session/kernel-2", "/session/kernel-3", "/session/kernel-4",
           "/session/kernel-5", "/session/rpc.sock"]
    assert out.found == {"known": ["ENOENT"] * 4, "sockets": own}, out.step.output
    record(out, "no such socket (ENOENT); the only sockets are the session's own")


@POLICIES
def test_device_nodes(policy: str, tmp_path, record) -> None:
    """Create a block device node for the host disk, or open a raw device"""
    code = ("import stat\n"
            "verdict(mknod=attempt(os.mknod, '/dev/shm/disk', stat.S_IFBLK | 0o600, os.makedev(254, 0)),\n"
            "        node=attempt(open, '/dev/shm/disk', 'rb'),\n"
            "        mem=attempt(open, '/dev/mem', 'rb'), vda=attempt(open, '/dev/vda', 'rb'),\n"
            "        devices=sorted(os.listdir('/dev')))")
    out = run_attack(policy, code, tmp_path)
    assert out.found["mem"] == out.found["vda"] == "ENOENT", out.step.output
    assert not {"mem", "kmem", "kmsg", "vda", "sda", "kvm", "fuse"} & set(out.found["devices"]) or \
        out.runtime == "runsc", out.step.output  # gVisor lists its own (emulated) /dev/fuse
    # gVisor asks for no CAP_MKNOD: there the seccomp profile's file-type filter on mknod refuses the node
    assert out.found["mknod"] == "EPERM" and out.found["node"] == "ENOENT", out.step.output
    why = "no CAP_MKNOD" if out.runtime == "runc" else "seccomp: no device nodes"
    record(out, f"mknod: EPERM ({why}); no raw devices (ENOENT)")
