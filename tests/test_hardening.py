"""The hardening is in force, seen from inside the container and from docker inspect."""

from __future__ import annotations

import json

import pytest
from helpers import short_limits

from rlm_host.sandbox.docker_engine import docker_client
from rlm_host.policy import Policy, load_policy
from rlm_host.sandbox import DockerSandbox

pytestmark = pytest.mark.docker

PROBE = r"""
import ctypes, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
def attempt(fn):
    try:
        fn()
        return "allowed"
    except OSError as exc:
        return type(exc).__name__
def exec_tmp():
    with open("/tmp/run.sh", "w") as f:
        f.write("#!/bin/sh\necho pwned\n")
    os.chmod("/tmp/run.sh", 0o755)
    os.execv("/tmp/run.sh", ["/tmp/run.sh"])
print(json.dumps({
    "interfaces": sorted(name for _, name in socket.if_nameindex()),
    "uid": os.getuid(), "gid": os.getgid(), "euid": os.geteuid(),
    "cap_eff": status["CapEff"].strip(), "no_new_privs": libc.prctl(39, 0, 0, 0, 0),  # PR_GET_NO_NEW_PRIVS
    "seccomp": status.get("Seccomp", "").strip(),
    "write_root": attempt(lambda: open("/usr/pwned", "w")),
    "write_etc": attempt(lambda: open("/etc/passwd", "a")),
    "write_docs": attempt(lambda: open("/docs/pwned", "w")),
    "exec_tmp": attempt(exec_tmp),
    "mkfifo": attempt(lambda: os.mkfifo("/tmp/fifo")),
    "mknod_chr": attempt(lambda: os.mknod("/tmp/null", 0o020600, os.makedev(1, 3))),  # S_IFCHR
    "docker_socket": [p for p in ("/var/run/docker.sock", "/run/docker.sock") if os.path.exists(p)],
    "env": dict(os.environ),
    "tcp_out": attempt(lambda: socket.create_connection(("1.1.1.1", 53), timeout=2)),
    "devices": sorted(os.listdir("/dev")),
}))
"""


def probe(sandbox: DockerSandbox) -> dict:
    result = sandbox.execute(PROBE)
    assert result.status == "ok", result
    return json.loads(result.stdout)


def test_inside_view(policy: Policy, canary_env: str) -> None:
    """No interface but lo, non-root, no capabilities, no-new-privs, read-only root, noexec tmp."""
    with DockerSandbox.start(policy) as sandbox:
        seen = probe(sandbox)
        assert sandbox.execute("print(2 + 2)").stdout == "4\n"
    assert seen["interfaces"] == ["lo"]
    assert seen["uid"] == seen["euid"] == seen["gid"] == policy.user
    assert int(seen["cap_eff"], 16) == 0
    assert seen["no_new_privs"] == 1
    if policy.runtime == "runc":
        assert seen["seccomp"] == "2"  # filtering mode
    assert seen["write_root"] != "allowed" and seen["write_etc"] != "allowed"
    assert seen["write_docs"] != "allowed"
    assert seen["exec_tmp"] == "PermissionError"
    assert seen["mkfifo"] == "allowed"  # seccomp filters mknod(at) by file type: FIFOs stay possible
    assert seen["mknod_chr"] == "PermissionError"  # device nodes do not (gVisor asks for no CAP_MKNOD)
    assert seen["tcp_out"] != "allowed"
    assert seen["docker_socket"] == []
    assert canary_env not in json.dumps(seen["env"])
    assert set(seen["env"]) <= {"PATH", "HOME", "LANG", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE",
                                "PYTHONUNBUFFERED", "IPYTHONDIR", "JUPYTER_RUNTIME_DIR", "MPLBACKEND",
                                "RLM_OUTPUT_CAP", "HOSTNAME", "TERM", "PAGER", "CLICOLOR",
                                "GIT_PAGER", "JPY_PARENT_PID", "FORCE_COLOR", "COLUMNS",
                                "PYDEVD_USE_FRAME_EVAL"}
    assert not {"kvm", "mem", "kmsg", "sda", "vda"} & set(seen["devices"])


def test_inspect_view(policy: Policy, canary_env: str) -> None:
    """docker inspect shows every setting of the security model."""
    with DockerSandbox.start(policy) as sandbox:
        attrs = docker_client().api.inspect_container(sandbox.container_id)
    host, config = attrs["HostConfig"], attrs["Config"]
    assert host["NetworkMode"] == "none"
    assert host["Runtime"] == policy.runtime
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert not host["Privileged"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert any(opt.startswith("seccomp=") and "io_uring_setup" in opt for opt in host["SecurityOpt"])
    assert host["ReadonlyRootfs"]
    assert host["IpcMode"] == "private"
    assert host["PidMode"] == "" and host["UsernsMode"] == "" and host["CgroupnsMode"] == "private"
    assert host["Memory"] == host["MemorySwap"] == policy.limits.memory_mb * 1024 * 1024
    assert host["PidsLimit"] == policy.limits.pids
    assert host["NanoCpus"] == int(policy.limits.cpus * 1e9)
    assert {u["Name"] for u in host["Ulimits"]} >= {"nofile", "fsize"}
    assert "noexec" in host["Tmpfs"]["/tmp"] and "nosuid" in host["Tmpfs"]["/tmp"]
    assert not host["Devices"]
    assert host["Binds"] in (None, [])
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert set(mounts) == {"/session", "/docs"}
    assert mounts["/session"]["RW"] and not mounts["/docs"]["RW"]
    assert config["User"] == f"{policy.user}:{policy.user}"
    assert not any(canary_env in env for env in config["Env"])
    assert config["Labels"]["rlm-host.session"] == sandbox.session_id


SYSCALLS = {  # x86-64 numbers
    "io_uring_setup": (425, "0, 0"), "userfaultfd": (323, "0"), "keyctl": (250, "0, 0"),
    "add_key": (248, "0, 0, 0, 0, 0"), "request_key": (249, "0, 0, 0, 0"), "bpf": (321, "0, 0, 0"),
    "perf_event_open": (298, "0, 0, 0, 0, 0"), "unshare": (272, "0x10000000"),
    "setns": (308, "0, 0"), "mount": (165, "0, 0, 0, 0, 0"), "ptrace": (101, "16, 1, 0, 0"),
}


def test_seccomp_denies_with_eperm(docker_ready: str) -> None:
    """Each syscall on our deny list fails with EPERM under standard (runc + our profile)."""
    calls = "\n".join(f"out[{name!r}] = probe({nr}, {args})" for name, (nr, args) in SYSCALLS.items())
    code = (
        "import ctypes, json\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def probe(nr, *args):\n"
        "    ret = libc.syscall(nr, *args)\n"
        "    return [ret, ctypes.get_errno()]\n"
        f"out = {{}}\n{calls}\nprint(json.dumps(out))\n"
    )
    with DockerSandbox.start(short_limits(load_policy("standard"))) as sandbox:
        result = sandbox.execute(code)
        assert result.status == "ok", result
        assert json.loads(result.stdout) == {name: [-1, 1] for name in SYSCALLS}
        assert sandbox.execute("print('still works')").stdout == "still works\n"
