"""A batch's tasks: one per line of a JSONL file, or per row of a CSV file with the same columns.

A task is ``id``, ``query`` and ``context`` (a list of paths; in CSV, paths separated by ``;``), with
optional ``policy``, ``model``, ``sub_model`` and ``max_iterations``. A bad line never stops the
others: it becomes a ``Problem`` with its line number and the reason, and the rest still run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..policy import Policy, load_policy

MAX_TASKS_BYTES = 64 * 1024 * 1024  # a tasks file is a list of questions and paths, not documents
MAX_ID_CHARS = 200
COLUMNS = ("id", "query", "context", "policy", "model", "sub_model", "max_iterations")


@dataclass(frozen=True)
class Task:
    """One question over its documents, under its policy (resolved when the file is read)."""

    id: str
    query: str
    context: tuple[Path, ...]
    policy: Policy
    policy_ref: str = "standard"  # the name or file it was loaded from, as `rlm-host run --policy` takes it
    model: str | None = None
    sub_model: str | None = None
    max_iterations: int | None = None
    line: int = 0

    @property
    def slug(self) -> str:
        """A directory name for the task's audit logs: its id's safe characters and a hash of the whole id."""
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", self.id)[:40].lstrip(".") or "task"
        return f"{safe}-{hashlib.sha256(self.id.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class Problem:
    """A line that is no task: where, and why."""

    line: int
    reason: str


@dataclass
class TaskList:
    tasks: list[Task] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def read_tasks(path: Path, *, default_policy: str = "standard", base: Path | None = None) -> TaskList:
    """The tasks of ``path`` (``.csv`` by its suffix, JSONL otherwise); relative context paths are
    read from ``base`` (default: the tasks file's folder)."""
    if not path.is_file():
        raise ConfigError(f"the tasks file {str(path)!r} is not there or not a regular file; "
                          "give a .jsonl or .csv file")
    if path.stat().st_size > MAX_TASKS_BYTES:
        raise ConfigError(f"the tasks file {str(path)!r} is over {MAX_TASKS_BYTES // 2**20} MiB; split it")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the tasks file {str(path)!r}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the tasks file {str(path)!r} is not UTF-8 text (byte {exc.start})") from None
    rows = _csv_rows(text) if path.suffix.lower() == ".csv" else _jsonl_rows(text)
    found = TaskList()
    seen: set[str] = set()
    policies: dict[str, Policy] = {}
    for line, row in rows:
        if isinstance(row, str):
            found.problems.append(Problem(line, row))
            continue
        try:
            task = _task(row, line, base or path.parent, default_policy, policies)
        except ValueError as exc:
            found.problems.append(Problem(line, str(exc)))
            continue
        if task.id in seen:
            found.problems.append(Problem(line, f"task id {task.id!r} is used by an earlier line; ids must be unique"))
            continue
        seen.add(task.id)
        found.tasks.append(task)
    return found


def _jsonl_rows(text: str) -> list[tuple[int, dict[str, Any] | str]]:
    rows: list[tuple[int, dict[str, Any] | str]] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except (json.JSONDecodeError, RecursionError) as exc:
            rows.append((number, f"not JSON ({getattr(exc, 'msg', 'nested too deeply')})"))
            continue
        rows.append((number, value if isinstance(value, dict) else "not a JSON object"))
    return rows


def _csv_rows(text: str) -> list[tuple[int, dict[str, Any] | str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    unknown = [name for name in reader.fieldnames or [] if name not in COLUMNS]
    if not reader.fieldnames or "id" not in reader.fieldnames:
        return [(1, f"the first row must name the columns ({', '.join(COLUMNS)})")]
    if unknown:
        return [(1, f"unknown column {unknown[0]!r}; the columns are {', '.join(COLUMNS)}")]
    rows: list[tuple[int, dict[str, Any] | str]] = []
    try:
        for row in reader:
            line = reader.line_num
            if None in row:
                rows.append((line, "more fields than columns"))
                continue
            values: dict[str, Any] = {k: v for k, v in row.items() if v not in (None, "")}
            if "context" in values:
                values["context"] = [p.strip() for p in str(values["context"]).split(";") if p.strip()]
            if "max_iterations" in values:
                values["max_iterations"] = _int(values["max_iterations"])
            rows.append((line, values))
    except csv.Error as exc:
        rows.append((reader.line_num, f"not CSV ({exc})"))
    return rows


def _int(value: str) -> int | str:
    try:
        return int(value)
    except ValueError:
        return value


def _task(row: dict[str, Any], line: int, base: Path, default_policy: str, policies: dict[str, Policy]) -> Task:
    unknown = sorted(set(row) - set(COLUMNS))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; a task has {', '.join(COLUMNS)}")
    task_id = row.get("id")
    if not isinstance(task_id, str) or not task_id.strip() or len(task_id) > MAX_ID_CHARS:
        raise ValueError(f"'id' must be a non-empty string of at most {MAX_ID_CHARS} characters")
    query = row.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"task {task_id!r}: 'query' must be a non-empty string")
    paths = _context(row.get("context"), task_id, base)
    _check_options(row, task_id)
    ref, policy = _policy(row.get("policy", default_policy), task_id, base, policies)
    return Task(task_id, query, paths, policy, ref, row.get("model"), row.get("sub_model"),
                row.get("max_iterations"), line)


def _context(context: object, task_id: str, base: Path) -> tuple[Path, ...]:
    if isinstance(context, str):
        context = [context]
    if not isinstance(context, list) or not context or not all(isinstance(p, str) and p for p in context):
        raise ValueError(f"task {task_id!r}: 'context' must be a list of one or more paths")
    paths = tuple(p if p.is_absolute() else base / p for p in (Path(c).expanduser() for c in context))
    for p in paths:
        if not p.exists():
            raise ValueError(f"task {task_id!r}: context {str(p)!r} not found")
    return paths


def _check_options(row: dict[str, Any], task_id: str) -> None:
    for name in ("model", "sub_model"):
        if row.get(name) is not None and (not isinstance(row[name], str) or not row[name].strip()):
            raise ValueError(f"task {task_id!r}: {name!r} must be a model name")
    iterations = row.get("max_iterations")
    if iterations is not None and (isinstance(iterations, bool) or not isinstance(iterations, int)
                                   or not 1 <= iterations <= 1000):
        raise ValueError(f"task {task_id!r}: 'max_iterations' must be a whole number from 1 to 1000")


def _policy(name: object, task_id: str, base: Path, policies: dict[str, Policy]) -> tuple[str, Policy]:
    """The policy a line names (a shipped name, or a file relative to ``base``), loaded once per batch."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"task {task_id!r}: 'policy' must be a policy name or file")
    ref = name if "/" not in name and not name.endswith((".yaml", ".yml")) else str(base / name)
    if ref not in policies:
        try:
            policies[ref] = load_policy(ref)
        except ConfigError as exc:
            raise ValueError(f"task {task_id!r}: {exc}") from None
    return ref, policies[ref]
