"""The long-context benchmark in miniature: its task generator, and one run end to end with the real model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import accuracy  # bench/accuracy.py
import tasks  # bench/tasks.py


def test_tasks_are_deterministic_and_scored_exactly() -> None:
    """The same seed gives the same task; the needle is there once; the count is the true count."""
    first, again, other = tasks.niah("8K", 3), tasks.niah("8K", 3), tasks.niah("8K", 4)
    assert first == again and first.text != other.text and first.expected != other.expected
    needle = f"The secret access key for project {first.question.split()[-1].rstrip('?')} is {first.expected}."
    assert first.text.count(first.expected) == 1 and f"\n{needle}\n" in first.text
    assert len(first.text) == pytest.approx(8 * 1024 * 4, abs=200)
    assert first.score(f"The key is {first.expected}.") and not first.score(first.expected[:-1])
    count = tasks.counting("32K", 1)
    status = count.question.split("status ")[1].split("?")[0]
    assert count.expected == str(count.text.count(f"| status {status} |"))
    assert count.score(f"There are {int(count.expected):,} orders.") and not count.score(str(int(count.expected) + 1))
    assert tasks.counting("1M", 1).text.startswith(count.text)


@pytest.mark.docker
@pytest.mark.timeout(900)
def test_accuracy_bench_runs_end_to_end(tmp_path: Path, docker_ready: str) -> None:
    """A small S-NIAH and counting task through both methods with the 0.5B; rows, table and plot are written."""
    lines: list[str] = []
    argv = ["--sizes", "1500", "--count-sizes", "1500", "--tasks", "1", "--out", str(tmp_path)]
    assert accuracy.main(argv, progress=lines.append) == 0
    report = json.loads((tmp_path / "accuracy.json").read_text())
    rows = report["rows"]
    assert [(r["kind"], r["method"]) for r in rows] == [("niah", "rlm"), ("niah", "direct"),
                                                        ("count", "rlm"), ("count", "direct")]
    assert not [r for r in rows if r["stopped"].startswith("error")], rows
    assert all(r["tokens"] > 0 and r["calls"] >= 1 and r["wall_s"] > 0 for r in rows)
    assert all(r["seen_all"] for r in rows if r["method"] == "direct")  # 1,500 tokens fit the window
    assert report["partial"] and len(lines) == 4 + 1
    assert "| S-NIAH | 1500 |" in (tmp_path / "accuracy.md").read_text()
    assert (tmp_path / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.docker
def test_batch_bench_runs_end_to_end(tmp_path: Path, docker_ready: str) -> None:
    """bench/batch.py with 2 tasks: sequential, one batch configuration and one on a Ray cluster of one worker
    node, every task answered, results written."""
    import batch  # bench/batch.py

    assert batch.main(["--tasks", "2", "--concurrency", "2", "--latency", "0.05", "--ray-nodes", "1",
                       "--ray-slots", "2", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "batch.json").read_text())
    assert [r["config"] for r in report["rows"]] == ["sequential", "batch c2", "ray 1 node"]
    assert all(r["failed"] == 0 and r["wall_s"] > 0 and r["tasks_per_min"] > 0 for r in report["rows"])
    page = (tmp_path / "batch.md").read_text()
    assert "| batch c2 |" in page and "| ray 1 node |" in page
    assert report["rows"][2]["nodes_used"] == 1 and report["rows"][2]["vs_local"] > 0
