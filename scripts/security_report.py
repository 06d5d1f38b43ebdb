"""Render the generated tables of SECURITY.md from a test run's evidence file.

    python scripts/security_report.py build/security-results.json SECURITY.md

The evidence file is written by ``pytest --security-results PATH`` (tests/conftest.py): one row per
recorded fact, each with the outcome of the test that recorded it. Each section of SECURITY.md
between ``<!-- BEGIN generated:NAME -->`` and ``<!-- END generated:NAME -->`` is replaced by the
table of that section's rows; sections the run did not touch (a partial run) are left as they were.
Exits 1 when a recorded test failed, so `make security` fails too.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

from rlm_host.policy import load_policy

RUNTIMES = ["runc", "runsc"]
HOST = "host"  # an attack that never reaches a container (a log rendered on a terminal, a link refused)
# What happens when each limit of a policy is hit (docs/sandbox.md has the mechanics). The values
# come from the shipped policy files, so this table cannot drift from them.
AT_LIMIT = {
    "memory_mb": "the kernel is OOM-killed: status `oom`; a fresh kernel, documents reloaded",
    "cpus": "CPU time is throttled (CFS quota); nothing fails",
    "pids": "fork/clone fail; under runc the cgroup's pids.events shows it: `killed`, fresh kernel "
            "(gVisor's tasks are not host pids: a thread bomb runs to the cell limit)",
    "nofile": ("`open` fails with EMFILE in the cell: `error`, same kernel; if after the cell 16 more cannot be "
               "opened (threads left holding them), `limit.nofile` and a fresh kernel"),
    "fsize_mb": "the write fails with EFBIG in the cell: `error`, same kernel",
    "tmpfs_mb": "the write to /tmp fails with ENOSPC in the cell: `error`, same kernel",
    "cell_timeout_s": "SIGINT to the kernel: `timeout`, variables kept",
    "interrupt_grace_s": "the cell ignored SIGINT this long: container killed, `timeout` with a fresh kernel",
    "session_lifetime_s": "a running cell is killed (`killed`); the session is closed",
    "output_cap_bytes": "the rest of the cell's output is counted and dropped: `truncated`",
    "start_timeout_s": "KernelStartError with the container's log; the container is removed",
    "max_calls": "the sub-call is refused in the cell (RPCError budget_exhausted); `subcall.denied` audited",
    "max_prompt_chars": "the sub-call is refused in the cell (budget_exhausted); audited",
    "max_total_tokens": "further sub-calls are refused (budget_exhausted); audited",
    "max_cost_usd": "further sub-calls are refused (budget_exhausted); audited",
    "max_concurrency": "a batch runs this many calls at a time; never an error",
    "max_depth": "`rlm_query` past it answers with a plain `llm_query`; `subcall.depth_fallback` audited",
    "max_frame_bytes": "the frame is refused (frame_too_large), the connection closed; `rpc.frame_rejected` audited",
}
# The ingestion sandbox's limits, per document (docs/documents.md).
AT_INGEST = {
    "memory_mb": "the parser of that document gets MemoryError or is killed: the file is skipped with one line "
                 "(alone: one-line error); the other documents go on",
    "cpus": "the ingestion container's CPU share; parsing is throttled, nothing fails",
    "timeout_s": "the parser of that document is killed: skipped with one line (alone: one-line error)",
    "max_text_mb": "a file, or the text it becomes, over it is skipped with one line before it fills a disk",
}
CATEGORIES = ["network", "privilege", "filesystem", "secrets", "rpc", "exhaustion",
              "host parsing", "record integrity", "reviewer's screen"]
HIDDEN = {"section", "test", "passed"}


def mark(passed: bool | None) -> str:
    return {True: "", False: " **✘ FAILED**", None: " (not run to the end)"}[passed]


def cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def attacks_table(rows: list[dict]) -> str:
    by_attack: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
    for row in rows:
        by_attack[(row["category"], row["attack"])][row["runtime"]] = row
    order = {name: i for i, name in enumerate(CATEGORIES)}
    columns = RUNTIMES + ([HOST] if any(row["runtime"] == HOST for row in rows) else [])
    lines = ["| # | category | attack | " + " | ".join(columns) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in columns) + " |"]
    keys = sorted(by_attack, key=lambda k: (order.get(k[0], len(order)), k[0]))  # stable within a category
    for number, key in enumerate(keys, 1):
        seen = by_attack[key]
        outcomes = [_outcome(seen, runtime) for runtime in columns]
        lines.append(f"| {number} | {key[0]} | {cell(key[1])} | " + " | ".join(outcomes) + " |")
    failed = sum(1 for row in rows if row["passed"] is not True)
    lines.append("")
    lines.append(f"{len(keys)} attacks, {len(rows)} runs, {len(rows) - failed} ended as intended"
                 + (f", **{failed} did not**" if failed else "") + ".")
    return "\n".join(lines)


def _outcome(seen: dict[str, dict], runtime: str) -> str:
    """One cell of the attack table; a host-side attack has no runtime, a sandboxed one no host cell."""
    if runtime in seen:
        return cell(seen[runtime]["outcome"]) + mark(seen[runtime]["passed"])
    on_host = HOST in seen
    return "—" if on_host != (runtime == HOST) else "not run"


def plain_table(rows: list[dict]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in HIDDEN and k not in columns]
    lines = ["| " + " | ".join(columns) + " | test |", "|" + " --- |" * (len(columns) + 1)]
    for row in rows:
        verdict = {True: "passed", False: "**FAILED**", None: "not run to the end"}[row["passed"]]
        lines.append("| " + " | ".join(cell(row.get(c, "")) for c in columns) + f" | {verdict} |")
    return "\n".join(lines)


def limits_table() -> str:
    policies = [load_policy("standard"), load_policy("strict")]
    lines = ["| limit | " + " | ".join(f"{p.name} ({p.runtime})" for p in policies) + " | when it is hit |",
             "| --- | --- | --- | --- |"]
    for group, at_limit in (("limits", AT_LIMIT), ("subcalls", AT_LIMIT), ("ingest", AT_INGEST)):
        for key, what in at_limit.items():
            values = [getattr(getattr(p, group), key, None) for p in policies]
            if key in type(getattr(policies[0], group)).model_fields:
                shown = ["none" if v is None else f"{v:g}" if isinstance(v, float) else str(v) for v in values]
                lines.append(f"| `{group}.{key}` | " + " | ".join(shown) + f" | {what} |")
    return "\n".join(lines)


def replace(document: str, name: str, text: str) -> str:
    pattern = re.compile(rf"(<!-- BEGIN generated:{name} -->\n).*?(<!-- END generated:{name} -->)", re.S)
    if not pattern.search(document):
        raise SystemExit(f"security_report: SECURITY.md has no generated:{name} section; add its markers")
    return pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(2), document)


def render(results: dict, document: str) -> str:
    sections: dict[str, list[dict]] = defaultdict(list)
    for row in results["rows"]:
        sections[row["section"]].append(row)
    machine = results["machine"]
    stamp = (f"_Generated by `make security` on {results['date']}: {machine['cores']} cores, Linux "
             f"{machine['kernel']}, Docker {machine['docker']}, Python {machine['python']}._")
    for name, rows in sections.items():
        table = attacks_table(rows) if name == "attacks" else plain_table(rows)
        document = replace(document, name, stamp + "\n\n" + table)
    return replace(document, "limits", "_Generated from the shipped policy files by `make security`._\n\n"
                   + limits_table())


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: security_report.py RESULTS.json SECURITY.md", file=sys.stderr)
        return 2
    results_path, doc_path = map(Path, argv)
    if not results_path.exists():
        print(f"security_report: {results_path} not found; run `make security` (pytest --security-results)",
              file=sys.stderr)
        return 2
    results = json.loads(results_path.read_text())
    doc_path.write_text(render(results, doc_path.read_text()))
    failed = [r["test"] for r in results["rows"] if r["passed"] is False]
    print(f"security_report: {len(results['rows'])} facts from {results['date']} written to {doc_path}"
          + (f"; {len(failed)} from failed tests" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
