"""What the host and the kernel agree on, stated once (stdlib only: the host imports it too).

Paths inside the container, the environment variable of the output cap, how documents are joined
into ``context``, and the manifest the host writes beside the staged documents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

IO_DIR = "/session"              # rw: the kernel's connection file and sockets
DOCS_DIR = "/docs"               # ro: the staged documents and their manifest
RPC_SOCKET = "rpc.sock"          # in IO_DIR: the one channel back to the host
SOCKET_PATH = f"{IO_DIR}/{RPC_SOCKET}"
OUTPUT_CAP_ENV = "RLM_OUTPUT_CAP"
SEPARATOR = "\n\n"               # between documents in ``context``
MANIFEST = "manifest.json"
MANIFEST_KEYS = ("name", "file", "size", "chars", "pages")


def manifest_entry(name: str, file: str, size: int, chars: int | None, pages: tuple[int, ...]) -> dict[str, Any]:
    """One staged document: its display name, file in DOCS_DIR, bytes, characters (None: not counted), page starts."""
    return {"name": name, "file": file, "size": size, "chars": chars, "pages": list(pages)}


def write_manifest(docs_dir: Path, entries: list[dict[str, Any]]) -> Path:
    """The manifest the kernel reads, world-readable (the kernel is another uid)."""
    path = docs_dir / MANIFEST
    path.write_text(json.dumps({"documents": entries}), encoding="utf-8")
    path.chmod(0o644)
    return path


def read_manifest(docs_dir: Path) -> list[dict[str, Any]]:
    """The entries of the manifest in ``docs_dir``, or none when nothing was staged."""
    path = docs_dir / MANIFEST
    if not path.is_file():
        return []
    return json.loads(path.read_text(encoding="utf-8"))["documents"]
