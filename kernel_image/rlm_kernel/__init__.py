"""rlm_kernel: the in-kernel runtime of rlm-host (stdlib only).

It runs inside the sandbox container, in the IPython kernel that executes
model-written code. It is real files, imported by the host's tests too.

Mount layout (set by the host, see ``rlm_host/sandbox``):
    /session   read-write, private to this session: ``kernel.json`` and the
               kernel's ipc sockets (``kernel-1`` .. ``kernel-5``)
    /docs      read-only: the documents and ``manifest.json``:
               {"documents": [{"name": str, "file": str, "size": int}, ...]}

Nothing here is a security boundary: the container is. These helpers only make
the sandbox pleasant and predictable for the code that runs in it.
"""

import sys
from typing import Any

from .documents import DOCS_DIR, Document, load_documents
from .output_limit import OutputLimiter, cap_from_env

__all__ = ["DOCS_DIR", "Document", "OutputLimiter", "install", "load", "load_documents"]


def install(shell: Any) -> None:
    """Set up a fresh kernel: the per-cell output limit, then ``context`` and ``documents``."""
    limiter = OutputLimiter(cap_from_env())
    for stream in (sys.stdout, sys.stderr):
        limiter.wrap(stream)
    shell.events.register("pre_run_cell", limiter.reset)
    load(shell)


def load(shell: Any) -> None:
    """(Re)read the documents the manifest lists into ``context`` and ``documents``."""
    text, documents = load_documents()
    shell.user_ns["context"] = text
    shell.user_ns["documents"] = documents
