"""Bounded server logs: each local-model server's output goes through a relay that caps its file.

A server is started with its stdout on a pipe to ``python -m rlm_host.rlm.log_cap PATH CAP``: the relay
appends to ``PATH`` and, when the next write would pass ``CAP`` bytes, moves it to ``PATH.1``
(replacing the older one) and starts ``PATH`` afresh, so one server never holds more than two caps
of disk, and the newest output (what an error message quotes) is always in ``PATH``. The relay is a
process of its own so a detached server (`local-lm serve`) keeps it after the CLI exits; it ends
when the server closes the pipe. Each new server start also keeps only the newest ``KEEP`` logs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

CAP_BYTES = 1 << 20  # per file; a server holds at most PATH and PATH.1
KEEP = 8  # server logs kept in the folder (each with its .1)
CHUNK = 1 << 16


def prune(folder: Path, keep: int = KEEP) -> list[Path]:
    """Delete all but the newest ``keep`` server logs (``*.log`` and their ``.log.1``); return the deleted."""
    try:
        logs = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    except OSError:
        return []
    gone = []
    for log in logs[keep:]:
        for path in (log, log.with_name(log.name + ".1")):
            try:
                path.unlink()
                gone.append(path)
            except FileNotFoundError:
                pass
    return gone


def start_relay(path: Path, *, cap: int = CAP_BYTES, detach: bool = False) -> subprocess.Popen:
    """The relay process; give its ``stdin`` to the server as stdout, then close it here."""
    return subprocess.Popen([sys.executable, "-m", "rlm_host.rlm.log_cap", str(path), str(cap)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=detach)


def relay(source: int, path: Path, cap: int) -> int:
    """Copy ``source`` to ``path`` until end of file, rotating at ``cap`` bytes; the bytes copied."""
    out = path.open("ab")
    total = 0
    try:
        while chunk := os.read(source, CHUNK):
            if out.tell() and out.tell() + len(chunk) > cap:
                out = _rotate(out, path)
            out.write(chunk[-cap:])
            out.flush()
            total += len(chunk)
    finally:
        out.close()
    return total


def _rotate(out, path: Path):  # a binary file in, a binary file out
    out.close()
    os.replace(path, path.with_name(path.name + ".1"))
    return path.open("ab")


def main(argv: list[str]) -> int:
    """``python -m rlm_host.rlm.log_cap PATH CAP``: Ctrl-C and a hang-up are the server's to handle, not ours."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    relay(sys.stdin.fileno(), Path(argv[0]), int(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
