"""Real audit logs of the shapes an operator reviews, written by real runs through the sandbox.

Each function runs rlm-host for real (a real container, a real kernel, the scripted model over HTTP)
and returns the path of the log it wrote into ``folder``. Test modules wrap them in module- or
session-scoped fixtures; they take seconds each, so share them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rlm_host import Models
from rlm_host.errors import LMError
from rlm_host.rlm.lm import LMClient
from rlm_host.rlm.loop import RLM
from rlm_host.testing import ScriptedLM

ROOT = Path(__file__).resolve().parent.parent
CLAUSES = ROOT / "examples" / "clauses.txt"
QUERY = "What is the termination fee?"
THREE_TURNS = ["```python\nhits = search(r'termination fee')\nprint(hits[0])\n```",
               "```python\nreply = llm_query('What is the fee?', peek(hits[0].start, hits[0].end + 150))\n"
               "print(reply)\n```",
               "```python\nanswer(reply, citations=[hits[0]])\n```"]


def _newest(folder: Path) -> Path:
    return max(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime_ns)


def three_turns(folder: Path, *, sub_reply: str = "EUR 48,500", query: str = QUERY) -> Path:
    """search, a sub-call, an answer with a citation: the demo's shape."""
    with ScriptedLM() as lm:
        lm.script("root", THREE_TURNS)
        lm.rule("sub", lambda messages: sub_reply)
        result = RLM(Models("root", sub_model="sub", lm=LMClient(base_url=lm.base_url)),
                     audit_dir=folder).complete(query, [CLAUSES])
    return Path(result.audit_log)


def twenty_iterations(folder: Path) -> Path:
    """A run that never answers: 20 iterations of code, then the last-resort answer."""
    cells = [f"```python\nchunk_{i} = context[{i * 100}:{i * 100 + 100}]\nprint(len(chunk_{i}), {i})\n```"
             for i in range(20)]
    with ScriptedLM() as lm:
        lm.script("root", cells)
        lm.rule("root", lambda messages: "The fee is EUR 48,500 (best effort).")
        result = RLM(Models("root", lm=LMClient(base_url=lm.base_url)), audit_dir=folder,
                     max_iterations=20).complete(QUERY, [CLAUSES])
    return Path(result.audit_log)


def forty_documents(folder: Path) -> Path:
    """A run over 40 documents (40 ingestion events before the first iteration)."""
    docs = folder / "docs"
    docs.mkdir()
    for i in range(40):
        (docs / f"note-{i:02d}.txt").write_text(f"Note {i}: the termination fee is EUR {1000 + i}.\n")
    replies = ["```python\nprint(len(documents))\nhits = search(r'fee')\nprint(hits[0])\n```",
               "```python\nanswer('EUR 1000', citations=[hits[0]])\n```"]
    with ScriptedLM() as lm:
        lm.script("root", replies)
        result = RLM(Models("root", lm=LMClient(base_url=lm.base_url)), audit_dir=folder).complete(QUERY, [docs])
    return Path(result.audit_log)


def failed_run(folder: Path) -> Path:
    """A run whose model endpoint refuses the key after two turns: the run fails with an LM error."""
    with ScriptedLM() as lm:
        lm.script("root", THREE_TURNS)
        lm.rule("sub", lambda messages: "EUR 48,500")
        lm.fail(401, 10, model="root", after=2)
        try:
            RLM(Models("root", sub_model="sub", lm=LMClient(base_url=lm.base_url)),
                audit_dir=folder).complete(QUERY, [CLAUSES])
        except LMError:
            return _newest(folder)
    raise AssertionError("the scripted 401 did not fail the run")


def exec_log(folder: Path) -> Path:
    """The log `rlm-host exec` writes for one cell over a document."""
    env = {**os.environ, "RLM_HOST_AUDIT_DIR": str(folder)}
    code = "print(len(context))\n"
    subprocess.run([sys.executable, "-m", "rlm_host", "exec", "-", "--context", str(CLAUSES)], input=code,
                   text=True, env=env, check=True, capture_output=True, timeout=300)
    return _newest(folder)
