"""One audited cell in a fresh sandbox: what ``rlm-host exec`` does, as a library function.

It ingests the inputs, records ``exec.start``, runs the code, records the ``cell``, and seals the log
(``exec_done``, or how it failed). It lives beside ``documents.py`` rather than in ``sandbox/``
because it uses ingestion, which itself runs in a sandbox: sandbox/ stays below both.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from . import events
from .events import Say
from .audit import AuditLog, audited, seal_reason
from .documents import ingest
from .policy import Policy
from .results import ExecutionResult
from .sandbox import Document, DockerSandbox
from .settings import __version__


def run_cell(policy: Policy, code: str, inputs: list[Path], *, progress: Say | None = None,
             skipped: Callable[[Path, str], None] | None = None,
             audit_dir: Path | None = None) -> tuple[ExecutionResult, Path]:
    """Run ``code`` over ``inputs`` in a fresh sandbox under ``policy``: its result and its log's path.

    An exception carries ``audit_log`` and, when the cell had already run, ``cell_result``.
    """
    with tempfile.TemporaryDirectory(prefix="rlm-host-exec-") as scratch:
        ingested = ingest(inputs, Path(scratch), policy=policy, progress=progress)
        for path, why in ingested.skipped:
            (skipped or (lambda _p, _w: None))(path, why)
        log = AuditLog(uuid.uuid4().hex[:12], policy.audit_level, directory=audit_dir,
                       checkpoints=policy.checkpoints)
        _start(policy, ingested.documents).to(log)
        with audited(log, log, events.ExecError, _exec_reason):
            result = _execute(policy, ingested.documents, code, log)
            log.seal("exec_done")
    return result, log.path


def _start(policy: Policy, documents: list[Document]) -> events.ExecStart:
    docs = [{"name": d.name, "sha256": d.sha256, "size": d.size, "text_sha256": d.text_sha256, "chars": d.chars}
            for d in documents]
    return events.ExecStart(policy=policy.name, policy_sha256=policy.sha256, runtime=policy.runtime,
                            host_version=__version__, limits=policy.limits.model_dump(), documents=docs)


def _execute(policy: Policy, documents: list[Document], code: str, log: AuditLog) -> ExecutionResult:
    result = None
    try:
        with DockerSandbox.start(policy, documents, on_event=log) as sandbox:
            result = sandbox.execute(code)
            chars = len(result.stdout) + len(result.stderr)
            events.Cell.of(code, result, iteration=1, depth=1, chars=chars).to(log)
    except BaseException as exc:
        if result is not None:
            exc.cell_result = result  # type: ignore[attr-defined]  # its outcome is known: shown before the error
        raise
    return result


def _exec_reason(exc: BaseException) -> str:
    """exec's seal reasons: Ctrl-C, a signal and the log's own failure as for a run; anything else ``exec_error``."""
    reason = seal_reason(exc)
    return reason if reason in ("interrupted", "terminated", "audit_error") else "exec_error"
