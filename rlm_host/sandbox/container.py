"""One sandbox container's lifecycle: create, start, signal, inspect, remove.

Every hardening setting of DESIGN.md's security model is applied here, in one
function, from the policy; nothing a policy says can turn on a network.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from docker.errors import APIError, DockerException, NotFound
from docker.types import LogConfig, Mount, Ulimit

from .docker_engine import docker_client
from ..errors import KernelStartError, SandboxError
from ..policy import Policy
from ..settings import CONTENT_HASH_LABEL, OWNER_LABEL, POLICY_LABEL, SESSION_LABEL
from .start_check import differences
from rlm_kernel.contract import DOCS_DIR as CONTAINER_DOCS
from rlm_kernel.contract import OUTPUT_CAP_ENV

from .session_dir import CHANNEL_PORTS, CONNECTION_FILE, CONTAINER_IO, KERNEL_PREFIX, SessionDir

MB = 1024 * 1024
SECOND_NS = 10**9
# CIS Docker 5.26: the engine shows the kernel healthy while its shell socket exists. One tiny
# process every 30 s; rlm-host itself watches the container state and the kernel channel.
HEALTHCHECK = {"test": ["CMD", "/usr/bin/test", "-S", f"{CONTAINER_IO}/{KERNEL_PREFIX}-{CHANNEL_PORTS['shell_port']}"],
               "interval": 30 * SECOND_NS, "timeout": 5 * SECOND_NS, "retries": 3}
ENOSYS = 38
# Pauses before each forced removal: about 15 s in all before a container counts as unremovable.
REMOVE_BACKOFF_S = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
# The container's whole environment: nothing from the host is passed through.
ENVIRONMENT = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONPATH": "/opt/rlm",
    "PYTHONDONTWRITEBYTECODE": "1",
    "IPYTHONDIR": "/tmp/.ipython",
    "JUPYTER_RUNTIME_DIR": "/tmp/.jupyter",
    "MPLBACKEND": "Agg",
}


@dataclass(frozen=True)
class ContainerState:
    """What the engine says about a container."""

    running: bool
    oom_killed: bool
    exit_code: int | None


def docker_run_args(policy: Policy, image: str, session: SessionDir) -> dict:
    """Keyword arguments for ``containers.run``: the whole hardening in one place."""
    limits = policy.limits
    return {
        "image": image,
        "command": ["python3", "-m", "rlm_kernel", f"{CONTAINER_IO}/{CONNECTION_FILE}"],
        "detach": True,
        "init": True,  # tini reaps orphans and forwards SIGINT to the kernel
        "runtime": policy.runtime,
        "network_mode": "none",
        "user": f"{session.uid}:{session.uid}",
        "cap_drop": ["ALL"],
        "security_opt": security_options(policy),
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,noexec,nosuid,nodev,size={limits.tmpfs_mb}m,mode=1777"},
        "ipc_mode": "private",
        "cgroupns": "private",
        "shm_size": "16m",
        "mem_limit": limits.memory_mb * MB,
        "memswap_limit": limits.memory_mb * MB,
        "nano_cpus": int(limits.cpus * 1e9),
        "pids_limit": limits.pids,
        "ulimits": [
            Ulimit(name="nofile", soft=limits.nofile, hard=limits.nofile),
            Ulimit(name="fsize", soft=limits.fsize_mb * MB, hard=limits.fsize_mb * MB),
            Ulimit(name="core", soft=0, hard=0),
        ],
        "environment": {**ENVIRONMENT, OUTPUT_CAP_ENV: str(limits.output_cap_bytes)},
        # what reaches the container's own stdout is bounded on the host's disk too
        "log_config": LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
        "hostname": "sandbox",
        "healthcheck": HEALTHCHECK,
        "mounts": [
            Mount(CONTAINER_IO, str(session.io), type="bind", read_only=False),
            Mount(CONTAINER_DOCS, str(session.docs), type="bind", read_only=True),
        ],
        "labels": {SESSION_LABEL: session.session_id, POLICY_LABEL: policy.name,
                   OWNER_LABEL: str(os.getpid())},
        "name": f"rlm-host-{session.session_id}",
    }


def security_options(policy: Policy) -> list[str]:
    """no-new-privileges always, and the policy's seccomp profile as its runtime must get it."""
    security = ["no-new-privileges:true"]
    if policy.seccomp_profile:
        security.append(f"seccomp={seccomp_for(policy.runtime, policy.seccomp_profile)}")
    return security


def seccomp_for(runtime: str, profile: str) -> str:
    """The profile as the runtime must get it: for runsc, ENOSYS answers become SCMP_ACT_TRACE.

    runsc (registered with --oci-seccomp) applies the profile inside gVisor, but its 2022 build answers
    every SCMP_ACT_ERRNO with EPERM whatever ``errnoRet`` says. glibc falls back from clone3 to clone
    only on ENOSYS, so on EPERM no thread could start. SCMP_ACT_TRACE answers ENOSYS in both kernels
    when no tracer is attached, and none can be: ptrace is denied.
    """
    if runtime != "runsc":
        return profile
    data = json.loads(profile)
    data["syscalls"] = [_trace_if_enosys(rule) for rule in data.get("syscalls", [])]
    return json.dumps(data)


def _trace_if_enosys(rule: dict) -> dict:
    if rule.get("action") != "SCMP_ACT_ERRNO" or rule.get("errnoRet") != ENOSYS:
        return rule
    return {**{k: v for k, v in rule.items() if k != "errnoRet"}, "action": "SCMP_ACT_TRACE"}


class Container:
    """A started sandbox container, addressed by id."""

    def __init__(self, policy: Policy, image: str, session: SessionDir, overrides: dict | None = None) -> None:
        self._args = {**docker_run_args(policy, image, session), **(overrides or {})}
        self.policy = policy
        self.id: str | None = None
        self.image_id = ""
        self._pids_events: Path | None = None

    def start(self) -> None:
        try:
            container = docker_client().containers.run(**self._args)
        except APIError as exc:
            if "runtime" in str(exc).lower() and self.policy.runtime == "runsc":
                raise KernelStartError(
                    "the runsc (gVisor) runtime is not registered with Docker: "
                    "run `rlm-host doctor` for the daemon.json entry") from exc
            raise KernelStartError(f"container did not start: {exc.explanation or exc}") from exc
        except DockerException as exc:
            raise KernelStartError(f"container did not start: {exc}") from exc
        self.id = cid = str(container.id)
        self.image_id = container.attrs.get("Image", "")
        self._check_started(cid)
        self._pids_events = _cgroup_file(cid, "pids", "pids.events")  # looked up once, read per cell

    def _check_started(self, cid: str) -> None:
        """Fail closed: a container unlike the hardened one asked for is removed before it gets code."""
        try:
            attrs = docker_client().api.inspect_container(cid)
        except DockerException as exc:
            self.remove()
            raise SandboxError(f"cannot inspect the new sandbox container {cid[:12]}: {exc}") from exc
        found = differences(attrs, self._args, runtime=self.policy.runtime,
                            security_opt=security_options(self.policy))
        if found:
            self.remove()
            raise SandboxError(f"sandbox container {cid[:12]} did not start as asked and was removed: "
                               + "; ".join(found))

    def state(self) -> ContainerState:
        try:
            attrs = docker_client().api.inspect_container(self.id)["State"]
        except NotFound:
            return ContainerState(False, False, None)
        except DockerException as exc:
            raise SandboxError(f"cannot inspect sandbox container: {exc}") from exc
        return ContainerState(attrs["Running"], attrs["OOMKilled"], attrs["ExitCode"])

    def interrupt(self) -> None:
        """SIGINT to the kernel (tini forwards it)."""
        self._signal(signal.SIGINT)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def logs(self, tail: int = 20) -> str:
        try:
            return docker_client().api.logs(self.id, tail=tail).decode("utf-8", "replace")
        except DockerException:
            return ""

    def remove(self) -> None:
        """Remove the container, whatever its processes do; SandboxError only if every way failed."""
        # By name when the id is not known yet: an interrupt (Ctrl-C) between the engine creating the
        # container and run() returning would otherwise leave it running with no owner.
        remove_container(self.id or self._args["name"])

    def pids_limit_hit(self) -> bool:
        """Whether the container's process limit refused a fork (cgroup pids.events)."""
        if self._pids_events is None:
            return False
        try:
            text = self._pids_events.read_text()
        except OSError:
            return False
        return any(line.split()[1] != "0" for line in text.splitlines() if line.startswith("max"))

    def _signal(self, sig: int) -> None:
        try:
            docker_client().api.kill(self.id, signal=int(sig))
        except NotFound:
            pass
        except APIError as exc:
            if "is not running" not in str(exc):
                raise SandboxError(f"cannot signal sandbox container: {exc}") from exc


def remove_container(target: str) -> None:
    """Remove a container by id or name however its processes resist; raise only when it outlives all.

    The engine's forced removal gives up on a container whose processes it cannot see die in time
    (seen under runsc: "PID ... is zombie and can not be killed" while a thread storm is torn down).
    So each failed try is followed by killing everything in the container's cgroup, and tried again
    after a growing pause.
    """
    failure = ""
    for pause in REMOVE_BACKOFF_S:
        time.sleep(pause)
        failure = _force_remove(target)
        if not failure:
            return
        _kill_cgroup(target)
    raise SandboxError(f"sandbox container {target[:12]} could not be removed ({failure}); "
                       "run `rlm-host doctor --reap` to remove it once the engine lets it go")


def _force_remove(target: str) -> str:
    """One forced removal: '' once the container is gone, else what the engine said."""
    try:
        docker_client().api.remove_container(target, force=True)
    except NotFound:
        return ""
    except APIError as exc:
        return str(exc.explanation or exc)[:300]
    except DockerException as exc:
        return str(exc)[:300]
    return ""


def _kill_cgroup(target: str) -> None:
    """SIGKILL every process of the container: its cgroup's, frozen first so none forks meanwhile."""
    try:
        attrs = docker_client().api.inspect_container(target)
    except DockerException:
        return  # gone, or the engine is away: the next removal attempt says which
    container_id, init_pid = attrs["Id"], attrs["State"].get("Pid") or 0
    freezer = _cgroup_file(container_id, "freezer", "freezer.state")
    _write(freezer, "FROZEN")
    for pid in {init_pid, *_cgroup_pids(container_id)} - {0, 1, os.getpid()}:
        _sigkill(pid)
    _write(freezer, "THAWED")


def _cgroup_pids(container_id: str) -> list[int]:
    """The host pids in the container's cgroup (runc: its processes; runsc: sandbox, gofer, stubs)."""
    procs = _cgroup_file(container_id, "pids", "cgroup.procs")
    try:
        return [int(line) for line in procs.read_text().split()] if procs else []
    except (OSError, ValueError):
        return []


def _sigkill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _write(path: Path | None, text: str) -> None:
    if path is None:
        return
    with contextlib.suppress(OSError):
        path.write_text(text)


@functools.lru_cache(maxsize=16)
def image_content_hash(image_id: str) -> str | None:
    """The content-hash label of an image (for the audit log)."""
    try:
        labels = docker_client().api.inspect_image(image_id)["Config"].get("Labels") or {}
    except DockerException:
        return None
    return labels.get(CONTENT_HASH_LABEL)


def _cgroup_file(container_id: str, controller: str, name: str) -> Path | None:
    candidates = [
        Path(f"/sys/fs/cgroup/{controller}/docker/{container_id}/{name}"),
        Path(f"/sys/fs/cgroup/{controller}/system.slice/docker-{container_id}.scope/{name}"),
        Path(f"/sys/fs/cgroup/docker/{container_id}/{name}"),
        Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/{name}"),
    ]
    return next((p for p in candidates if p.exists()), None)


def reap(*, include_live: bool = False) -> list[str]:
    """Remove rlm-host containers whose owner process is gone (or all); return their ids."""
    removed = []
    for container in docker_client().containers.list(all=True, filters={"label": SESSION_LABEL}):
        if not include_live and _owner_alive(container.labels.get(OWNER_LABEL, "")):
            continue
        remove_container(container.id)
        removed.append(container.id)
    return removed


def _owner_alive(pid: str) -> bool:
    """Whether the host process that started a container still runs (on this host)."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
