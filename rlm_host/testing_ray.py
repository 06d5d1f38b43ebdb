"""A real multi-node Ray cluster on one machine, on 127.0.0.1 only: for tests and benchmarks of ``batch --ray``.

Outside a network namespace Ray reports a node at the machine's other addresses and listens there;
inside one that has only ``lo`` it uses 127.0.0.1 for everything. So every node (``ray start
--block``, one process tree each), the driver and the scripted model run in a namespace this class
creates, and on exit every process in it is stopped by pid (never ``ray stop``, which stops every
Ray process of the machine by name) and the namespace removed. The Docker Engine is reached through
its Unix socket, which works from any network namespace; sandboxes keep ``--network none``.

    with LoopbackRayCluster(tmp_path) as cluster:
        cluster.add_worker("w1", slots=2)
        lm = cluster.start(["python", "-m", "rlm_host.testing", "rules:say_n"])
        cluster.run(["rlm-host", "batch", ..., "--ray", cluster.address])

Needs root (``ip netns``) and Ray (``rlm-host[ray]``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .settings import environment_with

# Nodes that stop answering are declared dead after about 3 s instead of Ray's default 30 s.
FAST_FAILURE = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3",
                "RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_timeout_ms": "1000"}


class LoopbackRayCluster:
    """A head (offering no sandbox slots) and the workers ``add_worker`` starts, in their own namespace."""

    def __init__(self, workdir: Path, *, port: int = 26379, object_store_mb: int = 200) -> None:
        self.workdir = workdir
        self.name = f"rlm-ray-{os.getpid()}-{port}"
        self.port = port
        self.object_store = str(object_store_mb * 2**20)
        self.ray = str(Path(sys.executable).with_name("ray"))
        self.token = secrets.token_hex(32)  # Ray's token authentication, on as docs/scale-out.md says to
        self.env = environment_with(RAY_TMPDIR=str(workdir / "ray"), RAY_USAGE_STATS_ENABLED="0",
                                    RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token, **FAST_FAILURE)
        # Only the network namespace: ``ip netns exec`` would also give each process a mount namespace of
        # its own, and a run's session tmpfs, mounted there, would be invisible to dockerd's bind mount.
        self.enter = ["nsenter", f"--net=/run/netns/{self.name}", "--"]
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self._started: list[subprocess.Popen[Any]] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> LoopbackRayCluster:
        (self.workdir / "ray").mkdir(parents=True, exist_ok=True)
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        try:
            subprocess.run([*self.enter, "ip", "link", "set", "lo", "up"], check=True,
                           capture_output=True)
            self._node("head", ["--head", f"--port={self.port}", "--include-dashboard=false"], {})
            self.wait_for(1)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        """Stop every process in the namespace by pid (TERM, then KILL), then remove the namespace."""
        for sig, wait in ((signal.SIGTERM, 8.0), (signal.SIGKILL, 5.0)):
            pids = self.pids()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.2)
        for proc in [*self.nodes.values(), *self._started]:
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)

    def pids(self) -> list[int]:
        listed = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False)
        return [int(p) for p in listed.stdout.split()]

    def add_worker(self, name: str, *, slots: int = 2, env: dict[str, str] | None = None,
                   wait: bool = True) -> None:
        """A worker node offering ``slots`` of the ``rlm_sandbox`` resource, labelled ``rlm-test=<name>``."""
        self._node(name, [f"--address={self.address}", f"--resources={json.dumps({'rlm_sandbox': slots})}"],
                   env or {})
        if wait:
            self.wait_for(len(self.nodes))

    def _node(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        self.nodes[name] = subprocess.Popen(
            [*self.enter, self.ray, "start", "--block", "--num-cpus=1",
             f"--object-store-memory={self.object_store}", "--disable-usage-stats", f"--labels=rlm-test={name}",
             *args], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**self.env, **env})
        log.close()

    def node_ids(self) -> dict[str, str]:
        """Each live node's name (its ``rlm-test`` label) to its Ray node id."""
        return {n["Labels"].get("rlm-test", "?"): n["NodeID"] for n in self.describe() if n["Alive"]}

    def describe(self) -> list[dict[str, Any]]:
        script = (f"import json, logging, ray; ray.init(address={self.address!r}, logging_level=logging.ERROR, "
                  "log_to_driver=False); print(json.dumps(ray.nodes()))")
        done = self.run([sys.executable, "-c", script], timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"cannot list the cluster's nodes: {done.stderr[-2000:]}")
        return list(json.loads(done.stdout.strip().splitlines()[-1]))

    def wait_for(self, count: int, timeout: float = 90.0) -> None:
        """Until ``count`` nodes are alive."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError, ValueError, IndexError):
                if len(self.node_ids()) >= count:
                    return
            time.sleep(1)
        raise RuntimeError(f"{count} Ray node(s) did not come up in {timeout:.0f} s; see {self.workdir}/*.log")

    def kill(self, name: str) -> None:
        """A node dies at once: SIGKILL to its ``ray start`` and everything under it (raylet, workers, runs)."""
        root = self.nodes[name].pid
        tree = _descendants(root) | {root}
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def descendants(self, name: str) -> set[int]:
        return _descendants(self.nodes[name].pid)

    def start(self, cmd: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
        """A process of the test's inside the namespace (stopped on exit with the rest)."""
        proc = subprocess.Popen([*self.enter, *cmd], env={**self.env, **popen.pop("env", {})},
                                **popen)
        self._started.append(proc)
        return proc

    def run(self, cmd: Sequence[str], *, timeout: float = 600, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **kwargs.pop("env", {})}
        return subprocess.run([*self.enter, *cmd], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, env=env, check=False, **kwargs)


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found
