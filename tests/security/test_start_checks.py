"""Fail closed at every start: a container weaker than the one asked for never gets any code.

Each test starts a real container through ``Container`` with its arguments weakened in one harmless
way (nothing here gives a container a network), as a misconfigured engine or a wrong override
would, and checks that ``Container.start`` raises a SandboxError naming what differed, that the
container is gone, and that a normal container starts afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from helpers import RUNTIMES, short_limits

from rlm_host.sandbox.docker_engine import docker_client
from rlm_host.errors import SandboxError
from rlm_host.policy import Policy, load_policy
from rlm_host.sandbox import DockerSandbox
from rlm_host.sandbox import container as container_module
from rlm_host.sandbox.container import Container, docker_run_args, security_options
from rlm_host.sandbox.docker_sandbox import sandbox_uid
from rlm_host.sandbox.session_dir import SessionDir, new_session_id
from rlm_host.sandbox.start_check import differences
from rlm_host.settings import SESSION_LABEL

pytestmark = pytest.mark.docker
CATEGORY = "privilege"
POLICIES = pytest.mark.parametrize("policy", list(RUNTIMES), ids=list(RUNTIMES.values()))


def no_new_privileges_dropped(policy: Policy) -> dict:
    return {"security_opt": [o for o in security_options(policy) if not o.startswith("no-new-privileges")]}


# title in SECURITY.md's table, the weakening, a word the error must contain
WEAKENINGS = [
    ("Start check: no-new-privileges missing", no_new_privileges_dropped, "5.25"),
    ("Start check: the seccomp profile missing", lambda p: {"security_opt": ["no-new-privileges:true"]},
     "seccomp"),
    ("Start check: seccomp unconfined", lambda p: {"security_opt": ["no-new-privileges:true", "seccomp=unconfined"]},
     "5.21"),
    ("Start check: a writable root filesystem", lambda p: {"read_only": False}, "5.12"),
    ("Start check: an extra capability (CAP_CHOWN)", lambda p: {"cap_add": ["CHOWN"]}, "5.3"),
    ("Start check: capabilities not all dropped", lambda p: {"cap_drop": ["NET_RAW"]}, "5.3"),
    ("Start check: running as root", lambda p: {"user": "0:0"}, "root"),
    ("Start check: the host's UTS namespace", lambda p: {"uts_mode": "host", "hostname": None}, "5.20"),
    ("Start check: the host's cgroup namespace", lambda p: {"cgroupns": "host"}, "cgroup namespace"),
    ("Start check: a host device", lambda p: {"devices": ["/dev/null:/dev/extra-null:r"]}, "5.17"),
    ("Start check: no memory limit", lambda p: {"mem_limit": 0, "memswap_limit": 0}, "5.10"),
    ("Start check: no pids limit", lambda p: {"pids_limit": -1}, "5.28"),
    ("Start check: another runtime than the policy's",
     lambda p: {"runtime": "runsc" if p.runtime == "runc" else "runc"}, "runtime"),
]


@pytest.fixture
def session(docker_ready: str, request: pytest.FixtureRequest) -> Iterator[SessionDir]:
    """A real session directory for a bare Container (no kernel is waited for)."""
    policy = short_limits(load_policy(request.node.callspec.params["policy"]))
    directory = SessionDir(new_session_id(), sandbox_uid(policy))
    directory.create()
    try:
        yield directory
    finally:
        directory.remove()


def containers_of(session: SessionDir) -> list:
    label = f"{SESSION_LABEL}={session.session_id}"
    return docker_client().containers.list(all=True, filters={"label": label})


def start_normal(policy: Policy, image: str, session: SessionDir) -> None:
    """A container as docker_run_args makes it starts, passes the check, and is removed."""
    container = Container(policy, image, session)
    try:
        container.start()
    finally:
        container.remove()


@POLICIES
@pytest.mark.parametrize("title,weaken,named", WEAKENINGS, ids=[w[0].split(": ")[1] for w in WEAKENINGS])
def test_weakened_container_is_refused(policy: str, title: str, weaken, named: str, session: SessionDir,
                                       docker_ready: str, evidence) -> None:
    """A container started weaker than the hardening is removed at once and the start fails with why."""
    loaded = short_limits(load_policy(policy))
    container = Container(loaded, docker_ready, session, overrides=weaken(loaded))
    with pytest.raises(SandboxError, match="did not start as asked") as refused:
        container.start()
    assert named in str(refused.value) and "\n" not in str(refused.value), refused.value
    assert containers_of(session) == [], "the refused container was left behind"
    start_normal(loaded, docker_ready, session)
    evidence("attacks", category=CATEGORY, attack=title, runtime=loaded.runtime,
             outcome=f"refused at start, container removed: {str(refused.value).split(': ', 1)[1][:90]}")


@POLICIES
def test_hardened_container_passes(policy: str, session: SessionDir, docker_ready: str) -> None:
    """The container docker_run_args asks for passes every start check, and its inspect view shows none."""
    loaded = short_limits(load_policy(policy))
    container = Container(loaded, docker_ready, session)
    try:
        container.start()
        inspect = docker_client().api.inspect_container(container.id)
        args = docker_run_args(loaded, docker_ready, session)
        assert differences(inspect, args, runtime=loaded.runtime, security_opt=security_options(loaded)) == []
    finally:
        container.remove()
    assert containers_of(session) == []


@POLICIES
def test_refusal_is_recorded_and_the_next_session_works(policy: str, session: SessionDir, docker_ready: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A session whose container fails the check records sandbox.start_refused; a new one then runs."""
    loaded = short_limits(load_policy(policy))
    harden = container_module.docker_run_args
    monkeypatch.setattr(container_module, "docker_run_args", lambda *a: {**harden(*a), "read_only": False})
    events: list[tuple[str, dict]] = []
    with pytest.raises(SandboxError, match=re.escape("5.12")):
        DockerSandbox.start(loaded, on_event=lambda kind, fields: events.append((kind, fields)))
    assert [k for k, _ in events].count("sandbox.start_refused") == 1, events
    monkeypatch.undo()
    with DockerSandbox.start(loaded) as sandbox:
        assert sandbox.execute("print(6 * 7)").stdout == "42\n"
