"""Fixtures: real Docker, real kernels, both runtimes; every container removed.

Docker tests never skip: without a Docker Engine and the kernel image they fail
with the reason, as CI must.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import RUNTIMES, Record, short_limits
from hypothesis import HealthCheck, settings

from rlm_host.sandbox.docker_engine import docker_client
from rlm_host.sandbox.image import require_image
from rlm_host.policy import Policy, load_policy
from rlm_host.sandbox import DockerSandbox
from rlm_host.settings import OWNER_LABEL

# Fuzz tests take their example counts from the profile: thousands in the suite, far more with --fuzz.
settings.register_profile("suite", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=50_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz", action="store_true",
                     help="fuzz the RPC decoder and the policy loader with 50,000 cases each (suite: 2,000)")
    parser.addoption("--security-results", metavar="PATH",
                     help="write the security evidence (attacks, checks, faults, load) as JSON "
                          "for scripts/security_report.py, which renders SECURITY.md")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("fuzz"):
        settings.load_profile("fuzz")
    # A suite started in the background by a non-interactive shell (`cmd &`, as CI scripts do) inherits
    # SIGINT ignored, and so would every rlm-host it starts: the tests of what Ctrl-C does need it back.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


ITEM_ROWS = pytest.StashKey[list]()       # the rows one test recorded
ITEM_PASSED = pytest.StashKey[bool]()     # False once any phase of that test failed


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> Record:
    """``evidence(section, **columns)`` adds a row to SECURITY.md's generated tables.

    The row gets the test's outcome (passed or failed) when the test ends, so a failed
    attack shows as failed in the table instead of vanishing from it.
    """
    rows = request.node.stash.setdefault(ITEM_ROWS, [])

    def record(section: str, **columns: object) -> None:
        rows.append({"section": section, "test": request.node.nodeid, "passed": None,
                     **{k: v if isinstance(v, (int, float, bool)) or v is None else str(v)
                        for k, v in columns.items()}})
    return record


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """The test's rows travel on its teardown report, with its outcome: the same with or without -n."""
    report = yield
    if report.when == "call" or report.failed:
        item.stash[ITEM_PASSED] = item.stash.get(ITEM_PASSED, True) and report.passed
    rows = item.stash.get(ITEM_ROWS, [])
    if report.when == "teardown" and rows:
        passed = item.stash.get(ITEM_PASSED, None) if report.passed else False
        report.user_properties.append(("evidence", [{**row, "passed": passed} for row in rows]))
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect rows where the session ends (the controller, under pytest-xdist)."""
    for name, rows in report.user_properties:
        if name == "evidence" and report.when == "teardown":
            _session_rows.extend(rows)


_session_rows: list[dict] = []  # every row of the run (on the controller, under pytest-xdist)


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("security_results")
    if not path or not _session_rows or hasattr(session.config, "workerinput"):
        return  # a pytest-xdist worker: its rows went to the controller on its reports
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
                    "docker": _docker_version()},
        "rows": _session_rows}, indent=1))


def _docker_version() -> str:
    try:
        return docker_client().version().get("Version", "?")
    except Exception:  # the evidence file is still written when the engine is gone
        return "unreachable"


def _labelled() -> set[str]:
    """Containers this test process started (rlm-host labels each with its owner pid)."""
    label = f"{OWNER_LABEL}={os.getpid()}"
    return {c.id for c in docker_client().containers.list(all=True, filters={"label": label})}


@pytest.fixture(scope="session")
def docker_ready() -> str:
    """The kernel image tag; fails (never skips) when Docker or the image is missing."""
    docker_client()
    return require_image()


@pytest.fixture(scope="session", autouse=True)
def no_leftover_containers(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the suite, no container started by it is left (checked by label)."""
    if not any(item.get_closest_marker("docker") for item in request.session.items):
        yield
        return
    before = _labelled()
    yield
    left = _labelled() - before
    if left:
        for cid in left:
            docker_client().api.remove_container(cid, force=True)
        pytest.fail(f"{len(left)} sandbox container(s) left behind: {sorted(c[:12] for c in left)}")


@pytest.fixture(params=list(RUNTIMES), ids=list(RUNTIMES.values()))
def policy(request: pytest.FixtureRequest, docker_ready: str) -> Policy:
    """Each shipped policy (runc and runsc) with test limits."""
    return short_limits(load_policy(request.param))


@pytest.fixture(scope="module", params=list(RUNTIMES), ids=list(RUNTIMES.values()))
def shared_sandbox(request: pytest.FixtureRequest, docker_ready: str) -> Iterator[DockerSandbox]:
    """One sandbox per runtime for a module's read-only checks."""
    sandbox = DockerSandbox.start(short_limits(load_policy(request.param)))
    try:
        yield sandbox
    finally:
        sandbox.close()


@pytest.fixture
def canary_env(monkeypatch: pytest.MonkeyPatch) -> str:
    value = "canary-" + os.urandom(8).hex()
    monkeypatch.setenv("RLM_HOST_TEST_CANARY_SECRET", value)
    return value


# Audit logs of the suite's runs go to a throw-away directory, not the user's state.
os.environ.setdefault("RLM_HOST_AUDIT_DIR", tempfile.mkdtemp(prefix="rlm-host-test-audit-"))


@pytest.fixture
def private_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A runtime directory of this test's own: "nothing is left behind" then sees only this test's leftovers.

    Other rlm-host processes on the machine (another checkout's tests, a user's run) share the default
    /tmp/rlm-host-<uid>; the path stays short because the kernel's ipc sockets live under it.
    """
    path = Path(tempfile.gettempdir()) / f"rlm-host-t{os.getpid()}-{time.monotonic_ns() % 10**9}"
    monkeypatch.setenv("RLM_HOST_RUNTIME_DIR", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)
