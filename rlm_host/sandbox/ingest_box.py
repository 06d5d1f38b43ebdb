"""The ingestion sandbox: one container per ingestion parses the documents into UTF-8 text.

    <runtime_dir>/ingest-<id>/        0711, the host user's
        in/   -> /in (ro)             0755: jobs.json and the host's own copies of the documents
        out/  -> /out (rw)            0700, the sandbox uid's: NNNNN.json results, NNNNN.txt texts

The container is a session container (same image, hardening, runtime, no network, non-root,
read-only root) running ``python3 -m rlm_kernel.ingest`` instead of a kernel, with the policy's
``ingest`` limits: a fresh process per document under its memory and time limit, the container's
file size limit at ``ingest.max_text_mb``. Everything in ``out/`` is hostile, like an RPC frame:
results are read without following links, size-capped and strictly validated; a missing or
malformed result is no result. The container and the directory are always removed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from docker.types import Mount, Ulimit
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..events import Say
from .image import require_image
from ..policy import Policy
from ..settings import runtime_dir
from .container import ENVIRONMENT, MB, Container
from .docker_sandbox import sandbox_uid
from .session_dir import SessionDir, place_file

RESULT_BYTES = 64 * 1024    # a result is a few hundred bytes; a PDF's page list a few KB
PARENT_MB = 256             # the container holds the parent process and one child at a time
POLL_S = 0.25
PROGRESS_EVERY_S = 2.0
PROGRESS_FROM = 20          # batches of this many documents report as they go
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
Code = Literal["blank", "binary_nul", "binary_control", "bad_encoding", "bad_json", "bad_jsonl",
               "html_no_text", "pdf_unreadable", "pdf_encrypted", "pdf_no_text", "memory", "timeout",
               "text_too_big", "crashed", "unreadable"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Parsed(_Strict):
    """A document the sandbox turned into text (``converted``: in ``NNNNN.txt``; else as given)."""

    status: Literal["ok"]
    converted: bool
    encoding: Literal["", "utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1"]
    pages: list[Annotated[int, Field(ge=0)]] = Field(max_length=1_000_000)
    empty_pages: int = Field(ge=0)
    parsed: bool


class Refused(_Strict):
    """A document the sandbox could not turn into text, and why (the host words the message)."""

    status: Literal["rejected"]
    code: Code
    detail: str = Field(max_length=200)


Result = Parsed | Refused
_RESULT = TypeAdapter(Annotated[Result, Field(discriminator="status")])


@dataclass(frozen=True)
class Job:
    """One document to parse: the host's own copy of it and its kind (by extension)."""

    copy: Path
    kind: str


class IngestBox:
    """The ingestion directory and container of one ingestion."""

    def __init__(self, policy: Policy, image: str | None, progress: Say) -> None:
        self.policy, self.image, self.progress = policy, image or require_image(), progress
        self.session = SessionDir(f"ingest-{secrets.token_hex(6)}", sandbox_uid(policy))
        self.root = runtime_dir() / self.session.session_id

    def __enter__(self) -> IngestBox:
        runtime_dir().mkdir(mode=0o711, parents=True, exist_ok=True)
        self.root.mkdir(mode=0o711)
        (self.root / "in").mkdir(mode=0o755)
        (self.root / "out").mkdir(mode=0o700)
        if os.geteuid() == 0:
            os.chown(self.root / "out", self.session.uid, self.session.uid)
        return self

    def __exit__(self, *exc_info: object) -> None:
        shutil.rmtree(self.root, ignore_errors=True)  # rmtree never follows links

    def run(self, jobs: list[Job]) -> list[Result | None]:
        """Parse every job in the sandbox; one result per job, ``None`` where there is none usable."""
        self._write_jobs(jobs)
        container = Container(self.policy, self.image, self.session, self._overrides())
        limits = self.policy.ingest
        self.progress(f"parsing {len(jobs):,} document(s) in the ingestion sandbox ({self.policy.runtime}; "
                      f"each at most {limits.memory_mb} MB and {limits.timeout_s:g} s)")
        try:
            container.start()
            self._wait(container, len(jobs))
        finally:
            container.remove()
        return [self._result(index) for index in range(len(jobs))]

    def text(self, index: int) -> tuple[int, int] | None:
        """An open fd on document ``index``'s text and its size, or None (not there, not a file, too big)."""
        return open_capped(self.root / "out" / f"{index:05d}.txt", self.policy.ingest.max_text_mb * MB)

    def _write_jobs(self, jobs: list[Job]) -> None:
        entries = []
        for index, job in enumerate(jobs):
            name = f"{index:05d}.in"
            place_file(job.copy, self.root / "in" / name)
            entries.append({"file": f"/in/{name}", "kind": job.kind})
        path = self.root / "in" / "jobs.json"
        path.write_text(json.dumps(entries))
        path.chmod(0o644)

    def _overrides(self) -> dict:
        """What differs from a session container: command, mounts, limits, no kernel health check."""
        limits, nofile = self.policy.ingest, self.policy.limits.nofile
        memory = (limits.memory_mb + PARENT_MB) * MB
        return {
            "command": ["python3", "-m", "rlm_kernel.ingest", "/in/jobs.json", "/out", str(limits.memory_mb),
                        f"{limits.timeout_s:g}", str(limits.max_text_mb * MB)],
            "mem_limit": memory, "memswap_limit": memory, "nano_cpus": int(limits.cpus * 1e9),
            "ulimits": [Ulimit(name="nofile", soft=nofile, hard=nofile),
                        Ulimit(name="fsize", soft=limits.max_text_mb * MB, hard=limits.max_text_mb * MB),
                        Ulimit(name="core", soft=0, hard=0)],
            "environment": dict(ENVIRONMENT),
            "healthcheck": {"test": ["NONE"]},
            "mounts": [Mount("/in", str(self.root / "in"), type="bind", read_only=True),
                       Mount("/out", str(self.root / "out"), type="bind", read_only=False)],
        }

    def _wait(self, container: Container, count: int) -> None:
        """Until the container exits; killed past every document's time limit plus the start time."""
        limits = self.policy.ingest
        deadline = time.monotonic() + self.policy.limits.start_timeout_s + count * (limits.timeout_s + 2)
        shown, next_report = 0, time.monotonic() + PROGRESS_EVERY_S
        while (state := container.state()).running and time.monotonic() < deadline:
            time.sleep(POLL_S)
            if count >= PROGRESS_FROM and time.monotonic() >= next_report:
                shown = self._report(shown, count)
                next_report = time.monotonic() + PROGRESS_EVERY_S
        if state.running:
            container.kill()

    def _report(self, shown: int, count: int) -> int:
        done = sum(1 for entry in os.scandir(self.root / "out") if entry.name.endswith(".json"))
        if done != shown:
            self.progress(f"parsed {done:,} of {count:,} documents")
        return done

    def _result(self, index: int) -> Result | None:
        opened = open_capped(self.root / "out" / f"{index:05d}.json", RESULT_BYTES)
        if opened is None:
            return None
        fd, size = opened
        with os.fdopen(fd, "rb") as file:
            data = file.read(size)
        try:
            return _RESULT.validate_python(json.loads(data))
        except (ValueError, RecursionError, ValidationError):
            return None


def open_capped(path: Path, cap: int) -> tuple[int, int] | None:
    """An fd on a regular file at ``path`` (no link followed) of at most ``cap`` bytes, and its size."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > cap:
        os.close(fd)
        return None
    return fd, info.st_size

