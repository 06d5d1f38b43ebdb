"""Fail closed at every start: a container is judged as the engine made it, before it gets any code.

What must hold whatever the arguments were is CIS section 5 as ``rlm_host.sandbox.cis`` judges it (one place
knows what a hardened container looks like), plus what the security model adds: no network but
``none``, a non-root user, no host cgroup namespace. What depends on the container is judged against
the arguments actually sent (its mounts, user, limits) and the policy (runtime, security options), so an
engine that quietly drops or adds something is caught too.
"""

from __future__ import annotations

from collections.abc import Callable

from .cis import HostFacts, check_container

# The CIS recommendations every rlm-host container must pass outright (5.10 and 5.28 are also
# compared with the limits asked for below).
REQUIRED_CIS = ("5.3", "5.4", "5.5", "5.9", "5.10", "5.12", "5.14", "5.15", "5.16", "5.17", "5.19",
                "5.20", "5.21", "5.24", "5.25", "5.28", "5.29", "5.30", "5.31")
Check = Callable[[dict, dict], list[str]]


def differences(inspect: dict, args: dict, *, runtime: str, security_opt: list[str]) -> list[str]:
    """Every way the started container falls short of a hardened one made from ``args``; [] if none."""
    found = [f"CIS {f.id} {f.title}: {f.detail}" for f in check_container(inspect, HostFacts.detect())
             if f.id in REQUIRED_CIS and f.status != "pass"]
    found += _runtime(inspect, runtime) + _security_options(inspect, security_opt)
    return found + [text for check in CHECKS for text in check(inspect, args)]


def _host(inspect: dict) -> dict:
    return inspect.get("HostConfig") or {}


def _runtime(inspect: dict, runtime: str) -> list[str]:
    got = _host(inspect).get("Runtime")
    return [] if got == runtime else [f"runtime {got!r}, not {runtime!r}"]


def _security_options(inspect: dict, wanted: list[str]) -> list[str]:
    got = _host(inspect).get("SecurityOpt") or []
    missing = [o.split("=", 1)[0] if o.startswith("seccomp=") else o for o in wanted if o not in got]
    extra = [o[:40] for o in got if o not in wanted]
    return ([f"security options missing: {missing}"] if missing else []) + \
        ([f"security options not asked for: {extra}"] if extra else [])


def _network(inspect: dict, _args: dict) -> list[str]:
    settings, mode = inspect.get("NetworkSettings") or {}, _host(inspect).get("NetworkMode")
    networks = settings.get("Networks") or {}
    found = [] if mode == "none" else [f"NetworkMode {mode!r}"]
    if set(networks) != {"none"}:
        found.append(f"networks attached: {sorted(networks)}")
    addresses = [n.get("IPAddress") or n.get("GlobalIPv6Address") for n in networks.values()]
    if settings.get("IPAddress") or any(addresses):
        found.append("an IP address assigned")
    return found


def _user(inspect: dict, args: dict) -> list[str]:
    user = (inspect.get("Config") or {}).get("User") or ""
    if user.split(":")[0] in ("", "0", "root"):
        return [f"runs as root (user {user!r})"]
    return [] if user == args.get("user") else [f"user {user!r}, not {args.get('user')!r}"]


def _cgroup_namespace(inspect: dict, _args: dict) -> list[str]:
    mode = _host(inspect).get("CgroupnsMode")
    return [] if mode == "private" else [f"cgroup namespace {mode!r}, not private"]


def _mounts(inspect: dict, args: dict) -> list[str]:
    got = {(m.get("Type"), m.get("Source"), m.get("Destination"), bool(m.get("RW")))
           for m in inspect.get("Mounts") or []}
    wanted = {(m["Type"], m["Source"], m["Target"], not m.get("ReadOnly", False)) for m in args.get("mounts", [])}
    return [] if got == wanted else [f"mounts {sorted(got - wanted)} not asked for, {sorted(wanted - got)} missing"]


def _tmpfs(inspect: dict, args: dict) -> list[str]:
    got = _host(inspect).get("Tmpfs") or {}
    return [] if got == args.get("tmpfs", {}) else [f"tmpfs {got}, not {args.get('tmpfs', {})}"]


def _limits(inspect: dict, args: dict) -> list[str]:
    host = _host(inspect)
    pairs = (("Memory", "mem_limit"), ("MemorySwap", "memswap_limit"), ("PidsLimit", "pids_limit"),
             ("NanoCpus", "nano_cpus"))
    return [f"{key} {host.get(key)}, not {args.get(arg)}" for key, arg in pairs if host.get(key) != args.get(arg)]


CHECKS: tuple[Check, ...] = (_network, _user, _cgroup_namespace, _mounts, _tmpfs, _limits)
