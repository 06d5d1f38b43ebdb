"""`batch --ray` on a real Ray cluster: a head and worker nodes, each its own `ray start`, on this machine.

The whole cluster, the drivers and the scripted model run inside a network namespace the fixture
creates with only `lo` in it (rlm_host.testing_ray), so Ray binds 127.0.0.1 only; each node reaches
the Docker Engine through its Unix socket and runs real sandboxes. One worker is started naming a
kernel image that does not exist: the batch must name it and give it no task. Every process the
fixture started is stopped by pid, and the namespace removed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlm_host import audit
from rlm_host.batches import results_of
from rlm_host.batches.admission import Admission, Need
from rlm_host.policy import load_policy
from rlm_host.sandbox.docker_engine import docker_client
from rlm_host.settings import OWNER_LABEL, SESSION_LABEL
from rlm_host.testing_ray import LoopbackRayCluster

pytestmark = pytest.mark.docker

TESTS = Path(__file__).resolve().parent
DOC = TESTS.parent / "examples" / "clauses.txt"
RLM_HOST = [sys.executable, "-m", "rlm_host"]


class Cluster:
    """The module's cluster: its node ids by name, and the fast and the slow scripted model."""

    def __init__(self, ray: LoopbackRayCluster, fast: str, slow: str) -> None:
        self.ray = ray
        self.fast = fast
        self.slow = slow
        self.ids = ray.node_ids()

    def batch(self, tasks: Path, out: Path, *extra: str, url: str | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self.ray.run([*RLM_HOST, "batch", str(tasks), "--out", str(out), "--base-url", url or self.fast,
                             "--model", "root", "--ray", self.ray.address, *extra], timeout=timeout)

    def driver(self, tasks: Path, out: Path) -> subprocess.Popen[str]:
        """A driver in the background on the slow model, for the faults."""
        return self.ray.start([*RLM_HOST, "batch", str(tasks), "--out", str(out), "--base-url", self.slow,
                               "--model", "root", "--ray", self.ray.address],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def _serve(ray: LoopbackRayCluster, latency: float) -> str:
    server = ray.start([sys.executable, "-m", "rlm_host.testing", "helpers:say_n", "--model", "root",
                        "--latency", str(latency)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                       env={"PYTHONPATH": str(TESTS)})
    assert server.stdout is not None
    return server.stdout.readline().strip()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with LoopbackRayCluster(tmp_path_factory.mktemp("ray")) as ray:
        ray.add_worker("w1", slots=2)
        ray.add_worker("w2", slots=2)
        ray.add_worker("no-image", slots=2, env={"RLM_HOST_IMAGE": "rlm-host-kernel:no-such-image"})
        yield Cluster(ray, _serve(ray, 0.0), _serve(ray, 1.5))
    left = docker_client().containers.list(all=True, filters={"label": SESSION_LABEL})
    try:
        assert not [c for c in left if not _alive(c.labels.get(OWNER_LABEL, ""))], "a sandbox outlived its run"
    finally:
        # The killed worker's runs died mid-start: their session directories are what a machine that
        # died leaves in its /tmp. This machine is not rebooted, so they go as `doctor --reap` removes
        # them, before the tests after these look for leftovers of their own.
        from rlm_host.doctor import reap_all

        reap_all()


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    return True


def write_tasks(path: Path, count: int, *, policies: tuple[str, ...] = ("standard",), bad: str | None = None) -> Path:
    lines = [json.dumps({"id": f"t{n}", "query": f"Say {n}", "context": [str(DOC)],
                         "policy": policies[n % len(policies)]}) for n in range(count)]
    if bad is not None:
        lines.insert(1, bad)
    path.write_text("\n".join(lines) + "\n")
    return path


def answered(out: Path) -> dict[str, dict]:
    """The result lines, each task's last, checked to be one per task and each log verified."""
    lines = [json.loads(raw) for raw in (out / "results.jsonl").read_text().splitlines()]
    results = results_of(out / "results.jsonl")
    assert len(lines) == len(results), f"a task has two result lines: {Counter(r['id'] for r in lines)}"
    for record in results.values():
        log = Path(record["audit_log"])
        assert (out / "audit").resolve() in log.parents
        assert audit.verify(log).status == "intact", record
    return results


def no_sandbox_of_ours(timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not docker_client().containers.list(all=True, filters={"label": SESSION_LABEL}):
            return True
        time.sleep(0.5)
    return False


def test_a_batch_spreads_over_the_nodes_that_pass_their_check(cluster: Cluster, tmp_path: Path) -> None:
    """20 tasks, both policies: every answer right, every log verified in DIR/audit, at least two worker
    nodes used, none on the node without the image (named with what it lacks) or the slotless head."""
    out = tmp_path / "out"
    done = cluster.batch(write_tasks(tmp_path / "tasks.jsonl", 20, policies=("standard", "strict")), out)
    assert done.returncode == 0, done.stderr[-3000:]
    results = answered(out)
    assert {rid: r["answer"] for rid, r in results.items()} == {f"t{n}": str(n) for n in range(20)}
    used = Counter(r["node"] for r in results.values())
    assert set(used) <= {cluster.ids["w1"], cluster.ids["w2"]} and len(used) == 2, used
    bad = cluster.ids["no-image"][:12]
    assert f"node {bad}" in done.stderr and "is given no task: it lacks kernel image" in done.stderr
    assert "no-such-image" in done.stderr and "documents and logs: on the shared path" in done.stderr
    assert no_sandbox_of_ours()


def test_a_driver_without_the_cluster_s_token_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    """Token authentication is on: a client with a wrong token cannot join, so it runs nothing; it ends
    with one line and a non-zero exit, and the cluster serves the right token's batch afterwards."""
    tasks = write_tasks(tmp_path / "tasks.jsonl", 1)
    refused = cluster.ray.run([*RLM_HOST, "batch", str(tasks), "--out", str(tmp_path / "refused"), "--base-url",
                               cluster.fast, "--model", "root", "--ray", cluster.ray.address], timeout=300,
                              env={"RAY_AUTH_TOKEN": "0" * 64})
    assert refused.returncode == 1, refused.stderr[-2000:]
    ours = [line for line in refused.stderr.splitlines() if line.startswith("rlm-host: error:")]
    assert len(ours) == 1 and "cannot join the Ray cluster at 127.0.0.1" in ours[0] and "token" in ours[0]
    assert not (tmp_path / "refused" / "results.jsonl").exists()
    done = cluster.batch(tasks, tmp_path / "out")
    assert done.returncode == 0 and answered(tmp_path / "out")["t0"]["answer"] == "0"


def test_a_bad_line_is_named_and_the_other_tasks_run(cluster: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = cluster.batch(write_tasks(tmp_path / "tasks.jsonl", 3, bad='{"id": "t9", "query": "Say 9"'), out)
    assert done.returncode == 1
    assert "line 2: not JSON" in done.stderr
    assert {rid: r["answer"] for rid, r in answered(out).items()} == {"t0": "0", "t1": "1", "t2": "2"}


def test_a_task_no_node_could_ever_hold_is_refused_not_left_waiting(cluster: Cluster, tmp_path: Path) -> None:
    """A policy whose run needs more memory than Ray gives any node: that task fails at once with the
    reason (Ray would keep it pending for ever), and the other task of the batch still runs."""
    import yaml

    from rlm_host.policy import policies_dir

    raw = yaml.safe_load((policies_dir() / "standard.yaml").read_text())
    raw["limits"]["memory_mb"] = 262144
    (tmp_path / "huge.yaml").write_text(yaml.safe_dump(raw))
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"id": "big", "query": "Say 1", "context": [str(DOC)], "policy": "huge.yaml"}) + "\n"
                     + json.dumps({"id": "t2", "query": "Say 2", "context": [str(DOC)]}) + "\n")
    done = cluster.batch(tasks, tmp_path / "out", timeout=300)
    assert done.returncode == 1
    results = results_of(tmp_path / "out" / "results.jsonl")
    assert results["big"]["status"] == "failed" and "not admitted" in results["big"]["error"]
    assert "Ray's memory resource" in results["big"]["error"] and results["t2"]["answer"] == "2"


def test_documents_and_logs_through_the_object_store(cluster: Cluster, tmp_path: Path) -> None:
    """The documents travel as bytes in Ray's object store and each log comes back to the driver, which
    writes it under DIR/audit and verifies it there before its result counts."""
    out = tmp_path / "out"
    done = cluster.batch(write_tasks(tmp_path / "tasks.jsonl", 4), out, "--ray-transfer", "object-store")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "through the object store" in done.stderr
    results = answered(out)
    assert {rid: r["answer"] for rid, r in results.items()} == {f"t{n}": str(n) for n in range(4)}
    for record in results.values():
        log = Path(record["audit_log"])
        assert audit.seal_path(log).is_file() and record["verified"] == "intact"
        assert DOC.name in log.read_text()  # the run saw the document under its own name


def _wait_for(predicate: object, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.3)
    raise AssertionError("timed out")


def _lines(out: Path) -> int:
    path = out / "results.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_ctrl_c_stops_every_node_s_runs_and_the_batch_resumes(cluster: Cluster, tmp_path: Path) -> None:
    tasks = write_tasks(tmp_path / "tasks.jsonl", 8)
    out = tmp_path / "out"
    driver = cluster.driver(tasks, out)
    _wait_for(lambda: (out / "audit").is_dir() and any((out / "audit").rglob("*.jsonl")))  # a run has begun
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stderr[-3000:]
    assert no_sandbox_of_ours(timeout=5), "a sandbox outlived the stopped batch"
    stopped = [log for log in (out / "audit").rglob("*.jsonl") if log not in
               {Path(r["audit_log"]) for r in results_of(out / "results.jsonl").values()}]
    assert stopped and all(audit.verify(log).status == "intact" for log in stopped)  # sealed as interrupted
    again = cluster.batch(tasks, out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {rid: r["answer"] for rid, r in answered(out).items()} == {f"t{n}": str(n) for n in range(8)}


def test_a_killed_driver_s_batch_resumes_from_its_folder(cluster: Cluster, tmp_path: Path) -> None:
    tasks = write_tasks(tmp_path / "tasks.jsonl", 8)
    out = tmp_path / "out"
    driver = cluster.driver(tasks, out)
    _wait_for(lambda: _lines(out) >= 2)
    driver.kill()
    driver.communicate(timeout=30)
    assert no_sandbox_of_ours(timeout=60), "the runs of a dead driver went on"
    again = cluster.batch(tasks, out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already done" in again.stderr
    assert {rid: r["answer"] for rid, r in answered(out).items()} == {f"t{n}": str(n) for n in range(8)}


def test_a_killed_worker_s_tasks_run_again_on_another_node(cluster: Cluster, tmp_path: Path) -> None:
    """A worker dies at once (SIGKILL to its whole process tree, runs included) while it runs tasks: Ray
    runs them again on the other worker, each task gets one result, and the dead node's partial log
    stays in DIR/audit, shown as unfinished on the batch's page. (Last in this file: w2 stays dead.)"""
    tasks = write_tasks(tmp_path / "tasks.jsonl", 10)
    out = tmp_path / "out"
    driver = cluster.driver(tasks, out)

    def w2_runs_a_sandbox() -> bool:
        tree = {str(pid) for pid in cluster.ray.descendants("w2")}
        return any(c.labels.get(OWNER_LABEL) in tree
                   for c in docker_client().containers.list(filters={"label": SESSION_LABEL}))

    _wait_for(w2_runs_a_sandbox)
    cluster.ray.kill("w2")
    _, stderr = driver.communicate(timeout=600)
    assert driver.returncode == 0, stderr[-3000:]
    results = answered(out)
    assert {rid: r["answer"] for rid, r in results.items()} == {f"t{n}": str(n) for n in range(10)}
    kept = {Path(r["audit_log"]) for r in results.values()}
    partial = [log for log in (out / "audit").rglob("*.jsonl") if log not in kept]
    assert partial and {audit.verify(log).status for log in partial} == {"unfinished"}
    assert no_sandbox_of_ours(), "the dead node's sandboxes were not removed"
    page = tmp_path / "index.html"
    subprocess.run([*RLM_HOST, "report", str(out), "-o", str(page)], capture_output=True, timeout=300)
    assert page.read_text().count("data-verification='unfinished'") == len(partial)


def test_ray_node_prints_the_sessions_this_machine_holds() -> None:
    """`rlm-host ray-node`: the checks, then the ray start line with the slots admission would allow."""
    done = subprocess.run([*RLM_HOST, "ray-node", "--policy", "strict"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    slots = Admission().slots(Need.of(load_policy("strict")))
    start, resources = done.stdout.strip().splitlines()[-1].split("--resources=")
    assert start == "ray start --address=HEAD:6379 " and json.loads(resources.strip("'")) == {"rlm_sandbox": slots}
    assert "runtime runsc" in done.stdout and "kernel image" in done.stdout


def test_a_returned_log_is_written_only_under_a_name_of_the_task_s_folder(tmp_path: Path) -> None:
    """Through the object store the driver writes the log a node returned: a name that could leave the
    task's folder, or that exists already, is refused; a plain one lands there with its seal."""
    import base64

    from rlm_host.batches.on_ray import RayBatch

    runner = RayBatch(tmp_path / "out", None, transfer="object-store")
    runner._shared = False
    logs = tmp_path / "out" / "audit" / "t-1"
    body = {"log_b64": base64.b64encode(b"{}\n").decode(), "seal_b64": base64.b64encode(b"{}").decode()}
    for name in ("../../escape.jsonl", "/etc/x.jsonl", ".hidden.jsonl", "run.seal", "a b.jsonl", ""):
        assert runner._log_of({"log_name": name, **body}, logs) is None
    assert not list(tmp_path.rglob("escape.jsonl"))
    log = runner._log_of({"log_name": "20261203-run.jsonl", **body}, logs)
    assert log == logs / "20261203-run.jsonl" and log.read_bytes() == b"{}\n" and audit.seal_path(log).is_file()
    assert runner._log_of({"log_name": "20261203-run.jsonl", **body}, logs) is None  # never overwritten
    assert runner._log_of({"log_name": "other.jsonl", "log_b64": "not base64!"}, logs) is None
