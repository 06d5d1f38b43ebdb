"""Secrets: nothing of the host's (environment, keys, credential files, other sessions) reaches the
kernel; what the kernel can learn about the host is recorded here for what it is.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from harness import record, run_attack  # noqa: F401 - record is a fixture
from helpers import short_limits

from rlm_host.policy import load_policy
from rlm_host.sandbox import DockerSandbox
from rlm_host.settings import runtime_dir, state_dir

pytestmark = pytest.mark.docker
CATEGORY = "secrets"
POLICIES = pytest.mark.parametrize("policy", ["standard", "strict"], ids=["runc", "runsc"])

READ = '''
def read(path, size=1 << 16):
    with open(path, "rb") as f:
        return f.read(size)
'''


@POLICIES
def test_host_environment(policy: str, tmp_path, record, canary_env: str,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Find the host's secrets (a canary variable, OPENAI_API_KEY) in the environment, /proc, any file"""
    api_key = "sk-rlmtest-" + os.urandom(12).hex()
    monkeypatch.setenv("OPENAI_API_KEY", api_key)
    # the cell looks for the values' prefixes, so the values themselves appear nowhere in its code
    code = READ + ("import glob\nmarks = [b'canary-', b'sk-rlmtest-']\n"
                   "hits = [k for k, v in os.environ.items() if any(m.decode() in k + v for m in marks)]\n"
                   "for path in glob.glob('/proc/[0-9]*/environ') + glob.glob('/proc/[0-9]*/cmdline'):\n"
                   "    if attempt(read, path) == 'ok' and any(m in read(path) for m in marks):\n"
                   "        hits.append(path)\n"
                   "for top in ['/session', '/docs', '/tmp', '/dev/shm', '/etc']:\n"
                   "    for dirpath, _, files in os.walk(top):\n"
                   "        for name in files:\n"
                   "            p = os.path.join(dirpath, name)\n"
                   "            if attempt(read, p) == 'ok' and any(m in read(p, 1 << 22) for m in marks):\n"
                   "                hits.append(p)\n"
                   "verdict(hits=hits, env=sorted(os.environ))")
    out = run_attack(policy, code, tmp_path)
    assert out.found["hits"] == [], out.step.output
    assert not {"OPENAI_API_KEY", "RLM_HOST_TEST_CANARY_SECRET"} & set(out.found["env"]), out.step.output
    log = Path(out.result.audit_log).read_text()
    assert canary_env not in log and api_key not in log
    record(out, "not found (environment, /proc/*/environ, files); the audit log holds neither")


@POLICIES
def test_rpc_peer_credentials(policy: str, tmp_path, record) -> None:
    """Ask the RPC socket who is on the other end (SO_PEERCRED on /session/rpc.sock)"""
    code = ("import struct\ns = socket.socket(socket.AF_UNIX)\ns.connect('/session/rpc.sock')\n"
            "pid, uid, gid = struct.unpack('3i', s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))\n"
            "verdict(peer=[pid, uid, gid], me=[os.getpid(), os.getuid(), os.getgid()])")
    out = run_attack(policy, code, tmp_path)
    peer, me = out.found["peer"], out.found["me"]
    if out.runtime == "runc":
        # no user namespace: the broker's host uid/gid show through; its pid is outside the
        # sandbox's pid namespace, so the kernel sees 0 and can neither name nor signal it
        assert peer == [0, os.getuid(), os.getgid()], out.step.output
        record(out, f"reveals the broker's host uid {peer[1]} and gid {peer[2]}; pid 0 (outside the namespace)")
    else:
        # gVisor does not know the host peer of a host socket: it answers with the caller's own ids
        assert peer == me, out.step.output
        record(out, f"nothing of the host: gVisor answers with the caller's own ids {me}")


@POLICIES
def test_other_session_sockets(policy: str, tmp_path, record) -> None:
    """Connect to a second live session's sockets: its abstract socket, its rpc.sock and kernel sockets"""
    other = DockerSandbox.start(short_limits(load_policy(policy)))
    try:
        name = f"rlm-victim-{other.session_id}"
        listening = other.execute(f"import socket\n_v = socket.socket(socket.AF_UNIX)\n_v.bind('\\0{name}')\n"
                                  "_v.listen()\nprint('listening')")
        assert listening.stdout == "listening\n", listening
        io = other.rpc_socket_path.parent
        paths = [str(other.rpc_socket_path), str(io / "kernel-1"), f"/session/../{other.session_id}/io/kernel-1"]
        code = ("def connect(p):\n    s = socket.socket(socket.AF_UNIX)\n    s.settimeout(3)\n"
                "    try:\n        s.connect(p)\n    finally:\n        s.close()\n"
                f"verdict(abstract=attempt(connect, '\\0{name}'), paths=[attempt(connect, p) for p in {paths!r}],\n"
                f"        listed={name!r} in open('/proc/net/unix').read())")
        out = run_attack(policy, code, tmp_path)
    finally:
        other.close()
    assert out.found == {"abstract": "ECONNREFUSED", "paths": ["ENOENT"] * 3, "listed": False}, out.step.output
    record(out, "abstract: ECONNREFUSED (own network namespace); socket paths: ENOENT")


@POLICIES
def test_host_proc(policy: str, tmp_path, record) -> None:
    """Read or write the host kernel through /proc (kcore, kallsyms, core_pattern, sysrq, modprobe)"""
    code = READ + ("def write(path):\n    with open(path, 'w') as f:\n        f.write('|/tmp/evil')\n"
                   "syms = attempt(read, '/proc/kallsyms') == 'ok' and read('/proc/kallsyms', 4096).split(b'\\n')\n"
                   "verdict(kcore=attempt(read, '/proc/kcore'),\n"
                   "        kallsyms_addresses=sorted({l.split()[0].decode() for l in syms if l})[:2] if syms else "
                   "None,\n"
                   "        core_pattern=attempt(write, '/proc/sys/kernel/core_pattern'),\n"
                   "        sysrq=attempt(write, '/proc/sysrq-trigger'),\n"
                   "        modprobe=attempt(write, '/proc/sys/kernel/modprobe'),\n"
                   "        init=open('/proc/1/cmdline').read().split('\\0')[0])")
    out = run_attack(policy, code, tmp_path)
    found = out.found
    assert found["kcore"] == "ENOENT", out.step.output
    assert found["kallsyms_addresses"] in (None, ["0000000000000000"]), out.step.output
    assert found["init"] in {"/sbin/docker-init", "/usr/sbin/docker-init", "/dev/init"} or "init" in found["init"], \
        out.step.output  # pid 1 is the container's tini, not the host's init
    writes = {k: found[k] for k in ("core_pattern", "sysrq", "modprobe")}
    assert set(writes.values()) <= {"EROFS", "EACCES", "ENOENT"}, out.step.output
    record(out, "kcore: ENOENT; kallsyms " + ("addresses zeroed" if found["kallsyms_addresses"] else "absent")
           + "; writes: " + ", ".join(f"{k} {v}" for k, v in writes.items()) + "; pid 1 is the container's")


@POLICIES
def test_host_kernel_log(policy: str, tmp_path, record) -> None:
    """Read the host kernel's log (syslog(2), /dev/kmsg, /proc/kmsg)"""
    code = READ + ("buf = ctypes.create_string_buffer(4096)\n"
                   "verdict(syslog=syscall(103, 3, ctypes.addressof(buf), 4096),\n"
                   "        kmsg=attempt(read, '/dev/kmsg'), proc_kmsg=attempt(read, '/proc/kmsg'))")
    out = run_attack(policy, code, tmp_path)
    assert out.found["syslog"] == "EPERM", out.step.output
    assert {out.found["kmsg"], out.found["proc_kmsg"]} <= {"ENOENT", "EACCES", "EPERM"}, out.step.output
    record(out, f"syslog(2): EPERM (seccomp); /dev/kmsg: {out.found['kmsg']}; /proc/kmsg: {out.found['proc_kmsg']}")


@POLICIES
def test_mountinfo_host_paths(policy: str, tmp_path, record) -> None:
    """Learn host paths and identifiers (/proc/self/mountinfo, /proc/self/cgroup, /proc/version) and reach them"""
    code = READ + ("import re\ninfo = open('/proc/self/mountinfo').read()\n"
                   "paths = sorted(set(re.findall(r'(/var/lib/docker/[\\w/.-]+|/tmp/rlm-host-[\\w/.-]+)', info)))\n"
                   "cgroup = open('/proc/self/cgroup').read()\n"
                   "verdict(paths=paths, reachable=[p for p in paths if os.path.exists(p)],\n"
                   "        container_id=bool(re.search(r'[0-9a-f]{64}', cgroup)),\n"
                   "        kernel=open('/proc/version').read().split()[2])")
    out = run_attack(policy, code, tmp_path)
    found = out.found
    assert found["reachable"] == [], out.step.output
    if out.runtime == "runc":
        assert any(p.startswith("/var/lib/docker/overlay2/") for p in found["paths"]), out.step.output
        assert any(p.startswith(str(runtime_dir())) for p in found["paths"]), out.step.output
        assert not found["container_id"], out.step.output  # a private cgroup namespace: /proc/self/cgroup is "/"
        assert found["kernel"] == os.uname().release, out.step.output
        record(out, "leaks (not reachable): overlay2 layer paths, the docs dir's host path with the session id, "
                    "the host kernel's version; not the container id (private cgroup namespace)")
    else:
        assert found["paths"] == [] and found["kernel"] != os.uname().release, out.step.output
        record(out, "nothing of the host: gVisor's own mount table and kernel version")


@POLICIES
def test_host_credential_files(policy: str, tmp_path, record) -> None:
    """Read credential files: /etc/shadow, root's home, the host's audit key and Docker config"""
    targets = ["/etc/shadow", "/etc/gshadow", "/root/.ssh/id_rsa", str(state_dir() / "audit.key"),
               str(tmp_path / "audit"), "/etc/docker/daemon.json", "/etc/ssh/ssh_host_ed25519_key"]
    code = READ + f"verdict(**{{p: attempt(read, p) for p in {targets!r}}})"
    out = run_attack(policy, code, tmp_path)
    assert set(out.found) == set(targets) and set(out.found.values()) <= {"EACCES", "ENOENT"}, out.step.output
    assert out.found["/etc/shadow"] == "EACCES", out.step.output  # the image's own, root-only
    refused = sorted({v for v in out.found.values()})
    record(out, "refused: " + "/".join(refused) + " (the image's own shadow; no host file is mounted)")
