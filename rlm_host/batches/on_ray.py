"""The same batch on a Ray cluster: each task a Ray task that runs ``rlm-host run`` on the node it lands on.

Ray schedules; we do not. Each node advertises how many sessions it can hold as the custom resource
``rlm_sandbox`` (``ray start --resources '{"rlm_sandbox": N}'``; ``rlm-host ray-node`` checks a node
and prints N), and each task asks for one slot plus its policy's memory. Before the first task the
driver checks every node that offers slots (Docker reachable, the runtimes the batch's policies need,
the kernel image, the same rlm-host version) and confines tasks to the nodes that pass, by Ray's
``ray.io/node-id`` label: a node that lacks something is named with what it lacks and never given a
task. A task that dies with its node is retried by Ray on another.

What crosses between driver and node is JSON text and document bytes, never an object a sandbox
made: a task's argument is its spec (query, paths, policy, model names: no key, each node reads its
own environment) and its return value is a JSON string. Documents and logs travel one of two ways
(``Transfer``): on a path every node mounts (``shared``: the run reads the documents where they are
and writes its log straight into ``DIR/audit/``, so a node that dies leaves its partial log there),
or through Ray's object store (``object-store``: the driver puts each document's bytes once, the node
writes them to a folder of its own, runs, and returns its log and seal, which the driver writes into
``DIR/audit/``). ``auto`` picks ``shared`` when every node sees ``DIR`` and every document with the
driver's size, else ``object-store``. Either way the driver verifies the log before the result counts.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .. import __version__, audit
from ..errors import ConfigError
from ..events import Say
from .admission import Admission, Need
from .runner import STOP_GRACE_S, Batch, Endpoint, Tally, run_task, spec_of
from .tasks import Task

SANDBOX_RESOURCE = "rlm_sandbox"
NODE_ID_LABEL = "ray.io/node-id"
Transfer = Literal["auto", "shared", "object-store"]
TRANSFERS: tuple[Transfer, ...] = ("auto", "shared", "object-store")
CHECK_TIMEOUT_S = 120.0
MAX_RETRIES = 3  # a task whose node dies runs again on another, up to this many times
MAX_LOG_BYTES = 256 * 2**20  # a log returned through the object store; a run's limits keep it far below
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray on this machine and every node: pip install 'rlm-host[ray]'") from None
    return ray


# -- on the node ----------------------------------------------------------------------------------


def check_here(runtimes: list[str], probe: str | None = None, documents: list[tuple[str, int]] | None = None,
               need: tuple[int, float] | None = None) -> dict[str, Any]:
    """What this machine lacks to run the batch's sessions, and what it sees of the driver's files."""
    from ..doctor import node_checks

    lacks = [f"{check.name}: {check.detail}" for check in node_checks(runtimes) if not check.ok]
    sees_out = False
    if probe is not None:
        path, token = probe.split("\n", 1)
        with contextlib.suppress(OSError, UnicodeDecodeError):
            sees_out = Path(path).read_text(encoding="ascii") == token
    seen = sum(_size(path) == size for path, size in documents or [])
    slots = Admission().slots(Need(*need)) if need else None
    return {"lacks": lacks, "sees_out": sees_out, "documents_seen": seen, "holds": slots,
            "host": socket.gethostname(), "version": __version__}


def _size(path: str) -> int:
    try:
        return Path(path).stat().st_size if Path(path).is_file() else sum(
            p.stat().st_size for p in sorted(Path(path).rglob("*")) if p.is_file())
    except OSError:
        return -1


def _node_check(runtimes: list[str], probe: str, documents: list[tuple[str, int]], need: tuple[int, float]) -> str:
    ray = _ray()
    found = check_here(runtimes, probe, documents, need)
    found["node"] = ray.get_runtime_context().get_node_id()
    return json.dumps(found)


def _run_on_node(spec: dict[str, Any], logs: str | None, documents: list[tuple[str, Any]], stopper: Any,
                 policy_text: str | None) -> str:
    """One task on this node: its result as JSON text (the fields, its log's name, and the log itself
    when it does not land on a shared path)."""
    ray = _ray()
    node = ray.get_runtime_context().get_node_id()
    spool = Path(tempfile.mkdtemp(prefix="rlm-host-ray-"))
    try:
        if documents:  # through the object store: written under names of ours, in the order given
            spec = {**spec, "context": _write_documents(spool / "documents", documents, ray)}
        if policy_text is not None:
            (spool / "policy.yaml").write_text(policy_text, encoding="utf-8")
            spec = {**spec, "policy": str(spool / "policy.yaml")}
        log_dir = Path(logs) if logs else spool / "audit"
        stopping = _Stopping(stopper, ray)
        if stopping() is not None:  # the batch stopped while this task waited for a slot
            return json.dumps({"fields": None, "node": node, "log": None})
        fields, log = run_task(spec, log_dir, stopping=stopping)
        out: dict[str, Any] = {"fields": fields, "node": node, "host": socket.gethostname(),
                               "log": str(log) if log else None}
        if log is not None and not logs:
            seal = audit.seal_path(log)
            out["log_name"] = log.name
            out["log_b64"] = base64.b64encode(audit.read_regular(log, MAX_LOG_BYTES)).decode("ascii")
            if seal.is_file():
                out["seal_b64"] = base64.b64encode(audit.read_regular(seal, MAX_LOG_BYTES, "a seal")).decode("ascii")
        return json.dumps(out)
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def _write_documents(folder: Path, documents: list[tuple[str, Any]], ray: Any) -> list[str]:
    """Each document's bytes into ``folder``, one subfolder per document so that names never collide."""
    paths = []
    for number, (name, ref) in enumerate(documents):
        files: list[tuple[str, bytes]] = ray.get(ref)
        root = folder / str(number)
        for relative, data in files:
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        paths.append(str(root / name))
    return paths


class _Stopping:
    """A poll of the driver's stop flag, at most once a second; a driver gone counts as SIGTERM."""

    def __init__(self, stopper: Any, ray: Any) -> None:
        self.stopper = stopper
        self.ray = ray
        self.asked = 0.0
        self.answer: int | None = None

    def __call__(self) -> int | None:
        if time.monotonic() - self.asked >= 1.0:
            self.asked = time.monotonic()
            try:
                self.answer = self.ray.get(self.stopper.signal.remote(), timeout=10)
            except Exception:  # the driver and its actor are gone: stop, seal, remove the sandboxes
                self.answer = int(signal.SIGTERM)
        return self.answer


def _reap_here() -> int:
    from ..sandbox import reap

    return len(reap())


class _Stopper:
    """The batch's stop flag, held by a small actor on the driver's node that every task polls (the
    driver sets it on Ctrl-C; the actor is gone when the driver is)."""

    def __init__(self) -> None:
        self._signal: int | None = None

    def stop(self, sig: int) -> None:
        self._signal = sig

    def signal(self) -> int | None:
        return self._signal


# -- on the driver --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A node that offers sandbox slots, and what its check found."""

    node_id: str
    slots: float
    lacks: tuple[str, ...]
    host: str = "?"
    sees_out: bool = False
    documents_seen: int = 0
    holds: int | None = None
    memory_mb: int = 0  # Ray's memory resource on the node: a task asking for more could never start there


def _on(node_id: str) -> Any:
    """Ray's strategy for "on this node and no other" (a check, a sweep)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id, soft=False)


def _documents(tasks: list[Task]) -> list[tuple[str, int]]:
    unique = sorted({str(p) for task in tasks for p in task.context})
    return [(path, _size(path)) for path in unique]


def _runtimes(tasks: list[Task]) -> list[str]:
    return sorted({task.policy.runtime for task in tasks})


class RayBatch(Batch):
    """A batch whose tasks Ray places on the cluster's nodes (``address``: ``ray.init``'s)."""

    def __init__(self, out: Path, address: str | None, endpoint: Endpoint | None = None, *,
                 transfer: Transfer = "auto", retry_failed: bool = False, say: Say | None = None,
                 tally: Tally | None = None) -> None:
        super().__init__(out, Admission(), endpoint or Endpoint(), retry_failed=retry_failed, say=say, tally=tally)
        self.address = address
        self.transfer = transfer
        self.nodes: list[Node] = []
        self._stopper: Any = None
        self._shared = True
        self._selector: dict[str, str] = {}
        self._document_refs: dict[str, Any] = {}
        self._alive_at = 0.0
        self._alive = True

    def run(self, tasks: list[Task]) -> Tally:
        ray = _ray()
        try:
            ray.init(address=self.address, namespace="rlm-host", log_to_driver=False, logging_level=logging.WARNING,
                     configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"cannot join the Ray cluster at {self.address}: {first}; check the address and that "
                              "the head runs, and give this machine the cluster's token (RAY_AUTH_MODE=token with "
                              "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)") from None
        try:
            fit = self._check_nodes(ray, tasks)
            self._selector = {NODE_ID_LABEL: f"in({','.join(n.node_id for n in fit)})"}  # no spaces: Ray keeps them
            # On the driver's own node: a worker node that dies must not take the flag with it (its loss
            # reads as "the driver is gone" on every node), and the driver's node dying ends the driver too.
            here = ray.get_runtime_context().get_node_id()
            self._stopper = ray.remote(num_cpus=0)(_Stopper).options(scheduling_strategy=_on(here)).remote()
            return super().run(tasks)
        finally:
            if self._stopper is not None and self.stop.is_set():
                self._stopper.stop.remote(int(self.stop_signal))
            with contextlib.suppress(Exception):
                self._sweep(ray)
            ray.shutdown()

    def _sweep(self, ray: Any) -> None:
        """Remove, on each node still up, sandboxes whose run died with its node's processes (``doctor --reap``)."""
        alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
        reap = ray.remote(num_cpus=0, max_retries=0)(_reap_here)
        refs = [reap.options(scheduling_strategy=_on(n.node_id)).remote()
                for n in self.nodes if not n.lacks and n.node_id in alive]
        removed = sum(ray.get(refs, timeout=CHECK_TIMEOUT_S))
        if removed:
            self.say(f"removed {removed} sandbox(es) left by runs that died with their node")

    def _workers(self, todo: list[Task]) -> int:
        return max(1, min(len(todo), int(sum(n.slots for n in self.nodes if not n.lacks))))

    def _check_nodes(self, ray: Any, tasks: list[Task]) -> list[Node]:
        offering = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(SANDBOX_RESOURCE, 0) > 0]
        if not offering:
            raise ConfigError(f"no node of the Ray cluster offers the resource {SANDBOX_RESOURCE!r}: start each "
                              f"node with ray start --resources '{{\"{SANDBOX_RESOURCE}\": N}}' "
                              "(rlm-host ray-node prints N)")
        probe = self.out / f".ray-probe-{secrets.token_hex(8)}"
        token = secrets.token_hex(16)
        self.out.mkdir(parents=True, exist_ok=True)
        probe.write_text(token, encoding="ascii")
        documents = _documents(tasks) if self.transfer != "object-store" else []
        largest = max((Need.of(t.policy) for t in tasks), key=lambda n: (n.memory_mb, n.cpus), default=Need(0, 0.0))
        check = ray.remote(num_cpus=0, max_retries=0)(_node_check)
        try:
            refs = {n["NodeID"]: check.options(scheduling_strategy=_on(n["NodeID"]))
                    .remote(_runtimes(tasks), f"{probe}\n{token}", documents, (largest.memory_mb, largest.cpus))
                    for n in offering}
            found = {}
            for node_id, ref in refs.items():
                try:
                    found[node_id] = json.loads(ray.get(ref, timeout=CHECK_TIMEOUT_S))
                except Exception as exc:
                    found[node_id] = {"lacks": [f"its check did not come back ({type(exc).__name__})"]}
        finally:
            probe.unlink(missing_ok=True)
        self.nodes = [Node(n["NodeID"], n["Resources"][SANDBOX_RESOURCE], tuple(self._lacks(found[n["NodeID"]])),
                           str(found[n["NodeID"]].get("host", "?")), found[n["NodeID"]].get("sees_out") is True,
                           int(found[n["NodeID"]].get("documents_seen") or 0), found[n["NodeID"]].get("holds"),
                           int(n["Resources"].get("memory", 0)) // 2**20)
                      for n in offering]
        fit = [n for n in self.nodes if not n.lacks]
        for node in self.nodes:
            if node.lacks:
                self.say(f"node {node.node_id[:12]} ({node.host}) is given no task: it lacks {'; '.join(node.lacks)}")
            else:
                self.say(f"node {node.node_id[:12]} ({node.host}): {node.slots:g} sandbox slots")
                if node.holds is not None and node.slots > node.holds:
                    self.say(f"node {node.node_id[:12]} offers {node.slots:g} slots but its memory holds "
                             f"{node.holds} runs of this batch's largest policy; lower its {SANDBOX_RESOURCE}")
        if not fit:
            raise ConfigError("no node of the Ray cluster can run the batch's sessions (see the lines above); "
                              "fix the nodes (rlm-host ray-node on each) and run the batch again")
        self._shared = self._pick_transfer(fit, len(documents))
        self.say(f"documents and logs: {'on the shared path' if self._shared else 'through the object store'}")
        return fit

    def _lacks(self, found: dict[str, Any]) -> list[str]:
        lacks = [str(item) for item in found.get("lacks") or []]
        if "version" in found and found["version"] != __version__:
            lacks.append(f"rlm-host {__version__} (it has {found['version']})")
        return lacks

    def _pick_transfer(self, fit: list[Node], documents: int) -> bool:
        sees_all = all(n.sees_out and n.documents_seen == documents for n in fit)
        if self.transfer == "shared" and not sees_all:
            blind = [n.node_id[:12] for n in fit if not (n.sees_out and n.documents_seen == documents)]
            raise ConfigError(f"--ray-transfer shared, but node(s) {', '.join(blind)} do not see {self.out} and "
                              "every document at the driver's paths: mount them at the same paths on every node, "
                              "or use --ray-transfer object-store")
        return self.transfer == "shared" or (self.transfer == "auto" and sees_all)

    def _one(self, task: Task) -> None:
        if self.stop.is_set():
            return
        with self._lock:
            self.tally.running += 1
        try:
            ended = self._run(task)
        finally:
            with self._lock:
                self.tally.running -= 1
        if ended is not None:
            self._record(task, *ended)

    def _run(self, task: Task) -> tuple[dict[str, Any], Path | None] | None:
        ray = _ray()
        need = Need.of(task.policy)
        room = max((n.memory_mb for n in self.nodes if not n.lacks), default=0)
        if need.memory_mb > room:  # Ray would keep it waiting for a node that can never come
            return {"status": "failed", "error": f"not admitted: a run of this policy may hold {need.memory_mb:,} MiB, "
                                                 f"more than Ray's memory resource on any node ({room:,} MiB)"}, None
        logs = self.out / "audit" / task.slug
        policy_text = None
        if "/" in task.policy_ref:  # a policy file (tasks.py made it a path) travels as its text: no node needs it
            policy_text = Path(task.policy_ref).read_text(encoding="utf-8")
        documents = [] if self._shared else [self._put(ray, path) for path in task.context]
        remote = ray.remote(_run_on_node).options(
            num_cpus=0, memory=need.memory_mb * 2**20, resources={SANDBOX_RESOURCE: 1},
            label_selector=self._selector, max_retries=MAX_RETRIES, retry_exceptions=False)
        ref = remote.remote(spec_of(task, self.endpoint), str(logs) if self._shared else None, documents,
                            self._stopper, policy_text)
        try:
            text = self._get(ray, ref)
        except Exception as exc:
            if self.stop.is_set():
                return None
            return {"status": "failed", "error": f"the Ray task failed: {type(exc).__name__}: "
                                                 f"{str(exc).splitlines()[0][:300] if str(exc) else ''}"}, None
        return self._landed(task, text, logs)

    def _get(self, ray: Any, ref: Any) -> str:
        """The task's JSON text; on stop, the stop flag is set and the task given its grace to seal."""
        deadline = None
        while True:
            ready, _ = ray.wait([ref], timeout=0.5)
            if ready:
                return str(ray.get(ref))
            if not self._any_fit_alive(ray):
                ray.cancel(ref, force=True)
                raise RuntimeError("every node that passed the batch's check is gone; run the batch again once "
                                   "nodes are back")
            if self.stop.is_set() and deadline is None:
                self._stopper.stop.remote(int(self.stop_signal))
                deadline = time.monotonic() + STOP_GRACE_S + 15
            elif deadline is not None and time.monotonic() > deadline:
                ray.cancel(ref, force=True)
                raise TimeoutError("the task did not stop in time")

    def _any_fit_alive(self, ray: Any) -> bool:
        """Whether a node that passed the check is still up (asked of Ray at most every 10 s)."""
        with self._lock:
            if time.monotonic() - self._alive_at >= 10.0:
                self._alive_at = time.monotonic()
                with contextlib.suppress(Exception):
                    alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
                    self._alive = any(n.node_id in alive for n in self.nodes if not n.lacks)
            return self._alive

    def _landed(self, task: Task, text: str, logs: Path) -> tuple[dict[str, Any], Path | None] | None:
        """A node's JSON answer as a result's fields and the log's path under ``DIR/audit/`` (written
        there from the returned bytes when it came through the object store)."""
        try:
            out = json.loads(text)
        except (ValueError, RecursionError):
            out = None
        if not isinstance(out, dict):
            return {"status": "failed", "error": "the node returned no result"}, None
        fields = out.get("fields")
        log = self._log_of(out, logs)
        if fields is None:
            self._stopped(task, log)
            return None
        if not isinstance(fields, dict):
            return {"status": "failed", "error": "the node returned no result"}, None
        return {**fields, "node": str(out.get("node")), "host": str(out.get("host"))}, log

    def _log_of(self, out: dict[str, Any], logs: Path) -> Path | None:
        if self._shared:
            path = Path(str(out.get("log"))) if out.get("log") else None
            return path if path is not None and path.parent == logs and path.is_file() else None
        name = out.get("log_name")
        if not isinstance(name, str) or not SAFE_NAME.match(name) or not name.endswith(".jsonl"):
            return None
        log = logs / name
        try:
            logs.mkdir(parents=True, exist_ok=True)
            for path, key in ((log, "log_b64"), (audit.seal_path(log), "seal_b64")):
                if isinstance(out.get(key), str):
                    data = base64.b64decode(out[key], validate=True)
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                    with os.fdopen(fd, "wb") as file:
                        file.write(data)
                        os.fsync(file.fileno())
        except (OSError, ValueError) as exc:  # a name taken already, bad base64: the result has no log
            self.say(f"cannot keep the log a node returned as {log}: {exc}")
            return None
        return log

    def _put(self, ray: Any, path: Path) -> tuple[str, Any]:
        """A document (a file, or a folder's files) in the object store, once per batch."""
        key = str(path)
        if key not in self._document_refs:
            files = [(path.name, path.read_bytes())] if path.is_file() else [
                (str(Path(path.name) / p.relative_to(path)), p.read_bytes())
                for p in sorted(path.rglob("*")) if p.is_file() and not p.is_symlink()]
            self._document_refs[key] = ray.put(files)
        return path.name, self._document_refs[key]
