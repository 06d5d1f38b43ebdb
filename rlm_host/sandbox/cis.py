"""CIS Docker Benchmark v1.6.0, section 5 (container runtime), judged from ``docker inspect``.

This check is ours: written for rlm-host from the benchmark's recommendations, not CIS's own
tooling nor docker-bench-security. It covers every section-5 recommendation that a container's
inspect data can settle; 5.8 (only needed ports open) and 5.27 (latest image) cannot be judged
from it and are left out, and 5.22/5.23 are options of ``docker exec``, never of a container,
so they are reported ``na``. AppArmor (5.1) and SELinux (5.2) apply "if applicable": on a host
whose kernel has neither, no profile can be set and they are ``na`` with that reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:
    from ..policy import Policy

CisStatus = Literal["pass", "fail", "na"]
SENSITIVE_DIRS = ("/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr")  # and "/" itself
DEFAULT_CPU_SHARES = (0, 1024)


class Finding(NamedTuple):
    """One recommendation's verdict for one container."""

    id: str
    title: str
    status: CisStatus
    detail: str


@dataclass(frozen=True)
class HostFacts:
    """What inspect cannot tell: whether the host kernel enforces AppArmor or SELinux at all."""

    apparmor: bool
    selinux: bool

    @classmethod
    def detect(cls) -> HostFacts:
        return cls(apparmor=Path("/sys/module/apparmor").exists(), selinux=Path("/sys/fs/selinux").exists())


@dataclass(frozen=True)
class _View:
    """The parts of an inspect dict the checks read."""

    host: dict
    config: dict
    mounts: list[dict]
    facts: HostFacts
    app_armor: str

    @property
    def security_opt(self) -> list[str]:
        return self.host.get("SecurityOpt") or []

    @property
    def port_bindings(self) -> list[tuple[str, dict]]:
        return [(port, b) for port, binds in (self.host.get("PortBindings") or {}).items() for b in binds or []]


_Judgement = tuple[CisStatus, str]  # one rule's status and why (audit.Verdict is the log's)


def _apparmor(v: _View) -> _Judgement:
    if v.app_armor and v.app_armor != "unconfined":
        return "pass", f"profile {v.app_armor}"
    if not v.facts.apparmor:
        return "na", "the host kernel has no AppArmor (/sys/module/apparmor absent): no profile can apply"
    return "fail", "no AppArmor profile on a host that has AppArmor"


def _selinux(v: _View) -> _Judgement:
    labels = [o for o in v.security_opt if o.startswith("label")]
    if labels:
        return "pass", ", ".join(labels)
    if not v.facts.selinux:
        return "na", "the host kernel has no SELinux (/sys/fs/selinux absent): no label can apply"
    return "fail", "no SELinux label option on a host that has SELinux"


def _capabilities(v: _View) -> _Judgement:
    dropped, added = v.host.get("CapDrop") or [], v.host.get("CapAdd") or []
    if "ALL" in [c.upper() for c in dropped] and not added:
        return "pass", "CapDrop ALL, nothing added"
    return "fail", f"CapDrop {dropped}, CapAdd {added}"


def _privileged(v: _View) -> _Judgement:
    return ("fail", "Privileged true") if v.host.get("Privileged") else ("pass", "Privileged false")


def _sensitive_mounts(v: _View) -> _Judgement:
    bad = [m.get("Source", "") for m in v.mounts if _is_sensitive(m.get("Source", ""))]
    sources = ", ".join(m.get("Source", "?") for m in v.mounts) or "none"
    return ("fail", f"host paths mounted: {bad}") if bad else ("pass", f"mount sources: {sources}")


def _is_sensitive(source: str) -> bool:
    return source == "/" or any(source == d or source.startswith(d + "/") for d in SENSITIVE_DIRS)


def _sshd(v: _View) -> _Judgement:
    command = " ".join([*(v.config.get("Entrypoint") or []), *(v.config.get("Cmd") or [])])
    if "sshd" in command:
        return "fail", f"command runs sshd: {command}"
    return "pass", f"the container runs only `{command}` (judged from its command)"


def _privileged_ports(v: _View) -> _Judgement:
    low = [b.get("HostPort") for _, b in v.port_bindings if b.get("HostPort", "").isdigit()
           and int(b["HostPort"]) < 1024]
    if low:
        return "fail", f"host ports below 1024 mapped: {low}"
    return "pass", f"{len(v.port_bindings)} port(s) published"


def _host_network(v: _View) -> _Judgement:
    mode = v.host.get("NetworkMode", "")
    return ("fail", "NetworkMode host") if mode == "host" else ("pass", f"NetworkMode {mode}")


def _memory(v: _View) -> _Judgement:
    memory = v.host.get("Memory") or 0
    return ("pass", f"Memory {memory // (1 << 20)} MiB") if memory > 0 else ("fail", "no memory limit")


def _cpu(v: _View) -> _Judgement:
    shares, nano, quota = v.host.get("CpuShares") or 0, v.host.get("NanoCpus") or 0, v.host.get("CpuQuota") or 0
    if nano > 0 or quota > 0:
        return "pass", f"hard CPU cap NanoCpus={nano} CpuQuota={quota} (CpuShares {shares or 'default'})"
    if shares not in DEFAULT_CPU_SHARES:
        return "pass", f"CpuShares {shares}"
    return "fail", "no CPU shares, quota or NanoCpus set"


def _read_only_root(v: _View) -> _Judgement:
    return ("pass", "ReadonlyRootfs true") if v.host.get("ReadonlyRootfs") else ("fail", "root filesystem writable")


def _bind_interface(v: _View) -> _Judgement:
    wildcard = [port for port, b in v.port_bindings if b.get("HostIp", "") in ("", "0.0.0.0", "::")]
    if wildcard:
        return "fail", f"ports bound to all host interfaces: {wildcard}"
    return "pass", f"{len(v.port_bindings)} port(s) published, none on a wildcard address"


def _restart_policy(v: _View) -> _Judgement:
    policy = v.host.get("RestartPolicy") or {}
    name, retries = policy.get("Name") or "no", policy.get("MaximumRetryCount", 0)
    if name in {"always", "unless-stopped"} or (name == "on-failure" and not 0 < retries <= 5):
        return "fail", f"RestartPolicy {name}:{retries}"
    return "pass", f"RestartPolicy {name}" + (f":{retries}" if name == "on-failure" else "")


def _namespace(key: str) -> Callable[[_View], _Judgement]:
    def check(v: _View) -> _Judgement:
        mode = v.host.get(key) or ""
        return ("fail", f"{key} host") if mode == "host" else ("pass", f"{key} {mode or 'private (default)'}")
    return check


def _devices(v: _View) -> _Judgement:
    devices = v.host.get("Devices") or []
    return ("fail", f"host devices: {[d.get('PathOnHost') for d in devices]}") if devices else ("pass", "no devices")


def _ulimits(v: _View) -> _Judgement:
    limits = v.host.get("Ulimits") or []
    if not limits:
        return "fail", "no ulimits set (the daemon's defaults apply)"
    return "pass", ", ".join(f"{u['Name']}={u['Hard']}" for u in limits)


def _propagation(v: _View) -> _Judgement:
    shared = [m.get("Destination") for m in v.mounts if m.get("Propagation") in ("shared", "rshared")]
    if shared:
        return "fail", f"shared propagation on {shared}"
    return "pass", ", ".join(f"{m.get('Destination')}={m.get('Propagation') or 'default'}" for m in v.mounts)


def _seccomp(v: _View) -> _Judgement:
    if any(o.replace(":", "=") == "seccomp=unconfined" for o in v.security_opt):
        return "fail", "seccomp=unconfined"
    custom = any(o.startswith("seccomp") for o in v.security_opt)
    detail = "a custom profile" if custom else "Docker's default profile"
    if v.host.get("Runtime") == "runsc":
        detail += " (runsc applies it inside the sandbox only with --oci-seccomp)"
    return "pass", detail


def _exec_option(v: _View) -> _Judgement:
    return "na", ("an option of `docker exec`, not of a container; rlm-host runs no docker exec "
                  "(its healthcheck runs as the container's user)")


def _cgroup(v: _View) -> _Judgement:
    parent = v.host.get("CgroupParent") or ""
    return ("fail", f"CgroupParent {parent}") if parent else ("pass", "default cgroup parent")


def _no_new_privileges(v: _View) -> _Judgement:
    if any(o.replace("=", ":") in ("no-new-privileges", "no-new-privileges:true") for o in v.security_opt):
        return "pass", "no-new-privileges:true"
    return "fail", "no-new-privileges not set"


def _healthcheck(v: _View) -> _Judgement:
    test = (v.config.get("Healthcheck") or {}).get("Test") or []
    if test and test[0] != "NONE":
        return "pass", " ".join(test)
    return "fail", "no HEALTHCHECK"


def _pids(v: _View) -> _Judgement:
    limit = v.host.get("PidsLimit") or 0
    return ("pass", f"PidsLimit {limit}") if limit > 0 else ("fail", "no pids limit")


def _default_bridge(v: _View) -> _Judgement:
    mode = v.host.get("NetworkMode", "")
    if mode in ("default", "bridge"):
        return "fail", f"NetworkMode {mode} (docker0)"
    return "pass", f"NetworkMode {mode}"


def _docker_socket(v: _View) -> _Judgement:
    sockets = [m.get("Source") for m in v.mounts if str(m.get("Source", "")).endswith("docker.sock")]
    return ("fail", f"Docker socket mounted: {sockets}") if sockets else ("pass", "no Docker socket mounted")


RECOMMENDATIONS: tuple[tuple[str, str, Callable[[_View], _Judgement]], ...] = (
    ("5.1", "AppArmor profile enabled, if applicable", _apparmor),
    ("5.2", "SELinux security options set, if applicable", _selinux),
    ("5.3", "Linux kernel capabilities restricted", _capabilities),
    ("5.4", "privileged containers not used", _privileged),
    ("5.5", "sensitive host system directories not mounted", _sensitive_mounts),
    ("5.6", "sshd not run within containers", _sshd),
    ("5.7", "privileged ports not mapped", _privileged_ports),
    ("5.9", "host's network namespace not shared", _host_network),
    ("5.10", "memory usage limited", _memory),
    ("5.11", "CPU priority set appropriately", _cpu),
    ("5.12", "root filesystem mounted read only", _read_only_root),
    ("5.13", "incoming traffic bound to a specific host interface", _bind_interface),
    ("5.14", "'on-failure' restart policy at most 5 (never 'always')", _restart_policy),
    ("5.15", "host's process namespace not shared", _namespace("PidMode")),
    ("5.16", "host's IPC namespace not shared", _namespace("IpcMode")),
    ("5.17", "host devices not directly exposed", _devices),
    ("5.18", "default ulimit overwritten at runtime", _ulimits),
    ("5.19", "mount propagation not shared", _propagation),
    ("5.20", "host's UTS namespace not shared", _namespace("UTSMode")),
    ("5.21", "default seccomp profile not disabled", _seccomp),
    ("5.22", "docker exec not used with --privileged", _exec_option),
    ("5.23", "docker exec not used with --user=root", _exec_option),
    ("5.24", "cgroup usage confirmed", _cgroup),
    ("5.25", "container restricted from acquiring additional privileges", _no_new_privileges),
    ("5.26", "container health checked at runtime", _healthcheck),
    ("5.28", "PIDs cgroup limit used", _pids),
    ("5.29", "Docker's default bridge docker0 not used", _default_bridge),
    ("5.30", "host's user namespaces not shared", _namespace("UsernsMode")),
    ("5.31", "Docker socket not mounted inside the container", _docker_socket),
)


def check_container(inspect: dict, host: HostFacts | None = None) -> list[Finding]:
    """Judge one container's inspect data against every recommendation above, in order."""
    mounts = sorted(inspect.get("Mounts") or [], key=lambda m: str(m.get("Destination")))
    view = _View(inspect.get("HostConfig") or {}, inspect.get("Config") or {}, mounts,
                 host or HostFacts.detect(), inspect.get("AppArmorProfile") or "")
    return [Finding(rid, title, *check(view)) for rid, title, check in RECOMMENDATIONS]


def inspect_policy_sandbox(policy: Policy) -> dict:
    """Start one sandbox under ``policy``, return its container's inspect data, remove it."""
    from .docker_engine import docker_client
    from . import DockerSandbox

    with DockerSandbox.start(policy) as sandbox:
        return docker_client().api.inspect_container(sandbox.container_id)
