#!/usr/bin/env python3
"""Render the event catalogue (rlm_host/events.py) as docs/audit.md's table of kinds.

    python scripts/event_catalogue.py          rewrite the table in docs/audit.md
    python scripts/event_catalogue.py --check  exit 1 if docs/audit.md's table is not current

tests/test_events.py runs the check, so the documentation of the file format cannot drift.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

from rlm_host.audit import TEXT_FIELDS
from rlm_host.events import CATALOGUE

DOC = Path(__file__).resolve().parent.parent / "docs" / "audit.md"
BEGIN = "<!-- event kinds: generated from rlm_host/events.py by scripts/event_catalogue.py; do not edit -->"
END = "<!-- end of event kinds -->"


def table() -> str:
    """One row per kind: its name, the module that writes it, its fields (text fields marked), when."""
    rows = ["| kind | from | fields (* text: kept by audit level) | when |", "| --- | --- | --- | --- |"]
    for kind, cls in CATALOGUE.items():
        names = [f.name + ("*" if f.name in TEXT_FIELDS else "") for f in dataclasses.fields(cls) if f.name != "info"]
        when = " ".join(line.strip() for line in (cls.__doc__ or "").strip().split("\n\n")[0].splitlines())
        rows.append(f"| `{kind}` | `{cls.producer}` | {', '.join(f'`{n}`' for n in names)} | {when} |")
    return "\n".join([BEGIN, *rows, END])


def current(text: str) -> str:
    """``text`` with the table between the markers replaced by the catalogue's."""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{DOC}: the markers of the event table are missing")
    return pattern.sub(lambda _m: table(), text)


def main(argv: list[str]) -> int:
    text = DOC.read_text(encoding="utf-8")
    if "--check" in argv:
        if current(text) != text:
            print(f"{DOC} is not current: run python scripts/event_catalogue.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(current(text), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
