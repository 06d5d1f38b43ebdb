"""Where benchmark results land and how their tables look: one shape for every script in bench/.

Each script writes ``<name>.json`` (everything measured, for re-analysis), ``<name>.md`` (the
summary BENCHMARKS.md quotes) and, where a curve says more than a table, ``<name>.png`` into
``bench/results/`` (``--out`` elsewhere).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """A table for the terminal: first column left-aligned, figures right-aligned."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=False)))

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, rows)])


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    """The same table in Markdown, figures right-aligned."""
    lines = ["| " + " | ".join(headers) + " |", "|---|" + "|".join(["---:"] * (len(headers) - 1)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def write_results(out: Path, name: str, report: dict[str, Any], markdown: str,
                  plot: Callable[[dict[str, Any], Path], None] | None = None) -> list[Path]:
    """Write ``name``.json, .md and (with ``plot``) .png into ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.json", out / f"{name}.md"]
    paths[0].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(markdown, encoding="utf-8")
    if plot is not None:
        paths.append(out / f"{name}.png")
        plot(report, paths[-1])
    return paths
