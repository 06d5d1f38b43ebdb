"""Batches: many audited RLM runs from one tasks file, on this machine or a Ray cluster (docs/batch.md).

``batch(tasks_file, out)`` reads the tasks (JSONL or CSV), reports every bad line with its number,
and runs the rest, as many at once as the host can hold (``admission.py``), each one an ``rlm-host
run`` with its own sandbox and audit log (``runner.py``). The results go to ``out/results.jsonl`` as
each task ends; running it again goes on where it stopped. With ``ray=ADDRESS`` (``"auto"``: the
cluster this machine belongs to) the same tasks are Ray tasks on the cluster's nodes (``on_ray.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..events import Say
from .admission import Admission
from .runner import Batch, Endpoint, Tally, results_of
from .tasks import Problem, Task, read_tasks

__all__ = ["Admission", "BatchOutcome", "Endpoint", "Problem", "Tally", "Task", "batch", "read_tasks",
           "results_of"]


@dataclass(frozen=True)
class BatchOutcome:
    """What a batch did: its tally, the lines that were no task, and where the results are."""

    tally: Tally
    problems: list[Problem]
    results: Path

    @property
    def complete(self) -> bool:
        """Every line was a task and every task has an answer."""
        return not self.problems and self.tally.failed == 0 and self.tally.queued == 0


def batch(tasks_file: str | Path, out: str | Path, *, concurrency: int | None = None, policy: str = "standard",
          base_url: str | None = None, model: str | None = None, sub_model: str | None = None,
          retry_failed: bool = False, say: Say | None = None, tally: Tally | None = None,
          ray: str | None = None, transfer: str = "auto") -> BatchOutcome:
    """Run every task of ``tasks_file`` not already done in ``out``; ``policy`` is the default for lines
    that name none, and ``base_url``/``model``/``sub_model`` for lines that name no model. ``say`` hears
    a line per bad line and per finished task; ``tally``, if given, is kept up to date as tasks run.
    ``ray`` runs them on that Ray cluster instead, ``transfer`` saying how documents and logs travel
    (``auto``, ``shared`` or ``object-store``)."""
    say = say or (lambda _line: None)
    found = read_tasks(Path(tasks_file), default_policy=policy)
    for problem in found.problems:
        say(f"line {problem.line}: {problem.reason}; skipped")
    endpoint = Endpoint(base_url, model, sub_model)
    runner: Batch
    if ray is not None:
        from .on_ray import TRANSFERS, RayBatch

        if transfer not in TRANSFERS:
            raise ConfigError(f"unknown transfer {transfer!r}; use one of {', '.join(TRANSFERS)}")
        runner = RayBatch(Path(out), ray, endpoint, transfer=transfer, retry_failed=retry_failed,  # type: ignore[arg-type]
                          say=say, tally=tally)
    else:
        runner = Batch(Path(out), Admission(concurrency=concurrency), endpoint, retry_failed=retry_failed,
                       say=say, tally=tally)
    tally = runner.run(found.tasks)
    return BatchOutcome(tally, found.problems, runner.results)
