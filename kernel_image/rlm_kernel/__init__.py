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

from .documents import DOCS_DIR, Document, load_documents

__all__ = ["DOCS_DIR", "Document", "install", "load_documents"]


def install(namespace: dict) -> None:
    """Put ``context`` and ``documents`` into the kernel's user namespace."""
    text, documents = load_documents()
    namespace["context"] = text
    namespace["documents"] = documents
