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

import re
import sys
from typing import Any

from .documents import DOCS_DIR, Document, describe, load_documents
from .helpers import Helpers, Hit, SubcallError
from .output_limit import OutputLimiter, cap_from_env
from .protect import PROTECTED, RestoreGuard, RebindGuard
from .rpc import RPCClient
from .streams import capture_fd, protect_sessions

__all__ = ["DOCS_DIR", "PROTECTED", "Document", "Hit", "OutputLimiter", "SubcallError", "install",
           "load", "load_documents"]

_rpc = RPCClient()


def install(shell: Any) -> None:
    """Set up a fresh kernel: output that always arrives, its limit, rebinding guards, documents, helpers."""
    limiter = OutputLimiter(cap_from_env())
    for stream in (sys.stdout, sys.stderr):
        limiter.wrap(stream)
    for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
        capture_fd(fd, stream.write)
    kernel = getattr(shell, "kernel", None)
    protect_sessions([getattr(kernel, "session", None), getattr(sys.stdout, "session", None),
                      getattr(sys.stderr, "session", None), getattr(shell.displayhook, "session", None),
                      getattr(shell.display_pub, "session", None)])
    shell.events.register("pre_run_cell", limiter.reset)
    shell.ast_transformers.append(RebindGuard())
    shell.user_ns.setdefault("re", re)  # a convenience, not protected: small models count with it and forget the import
    load(shell)


def load(shell: Any) -> str:
    """(Re)read the documents into ``context`` and bind the helpers; return the description."""
    text, documents = load_documents()
    names = {"context": text, "documents": documents}
    names.update(Helpers(text, documents, _rpc, shell.user_ns).functions())
    shell.user_ns.update(names)
    for callback in list(shell.events.callbacks["post_run_cell"]):
        if isinstance(callback, RestoreGuard):
            shell.events.unregister("post_run_cell", callback)
    shell.events.register("post_run_cell", RestoreGuard(shell.user_ns, names))
    return describe(text, documents)
