"""The one exception tree of rlm-host.

Errors from docker, jupyter_client, openai and the OS are caught where they enter and
re-raised as one of these, ``from`` the original. Each message says what went
wrong and what to do; the CLI prints it as one line and exits with the error's ``exit_code``
(1 unless the error is one of the audit readers' below; ``ExitCode`` is their table).

    RLMHostError
    ├── ConfigError            bad input from the user: a policy, a file, an argument
    │   ├── PolicyError        a policy file that does not validate
    │   └── AuditReadError     an audit log that cannot be read as one (exit 3, 4 or 5)
    │       ├── NotAnAuditLog  a directory, FIFO, empty, text or binary file (exit 3)
    │       ├── LogNotFound    no such file, or unreadable (exit 4)
    │       ├── NoAuditKey     no key here to check the log with (exit 5)
    │       └── ManifestTampered  a manifest whose signature or shape does not hold (exit 1)
    ├── AuditError             the audit log cannot be written: the run stops
    ├── DockerUnavailable      no Docker Engine reachable
    ├── ImageError             the kernel image is missing, stale or failed to build
    ├── LMError                the LM endpoint refused, failed or could not be reached
    ├── LocalModelError        the embedded model could not be fetched, verified or served
    └── SandboxError           the sandbox broke (not the model's code: that is a result)
        ├── KernelStartError   the container or kernel did not come up
        └── SessionClosed      the session ended (closed, or its lifetime ran out)
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum


class ExitCode(IntEnum):
    """What the audit-reading commands exit with (verify, show, report, tui --replay, list, diff).

    Scripts rely on it, so 2 means only "unfinished": click's usage errors exit 64 (EX_USAGE).
    """

    INTACT = 0  # chain intact, log sealed
    TAMPERED = 1  # chain broken, a line edited, forged, removed, or the seal does not match
    UNFINISHED = 2  # chain intact up to the last line, no seal
    NOT_A_LOG = 3  # a directory, FIFO, device, empty, text or binary file
    NOT_FOUND = 4  # no such file, or it cannot be read
    NO_KEY = 5  # cannot verify: the key the log was written with is not here
    USAGE = 64  # a wrong option or argument


# The order in which one outcome outweighs another, for a command over many logs.
SEVERITY = (ExitCode.INTACT, ExitCode.UNFINISHED, ExitCode.NOT_A_LOG, ExitCode.NOT_FOUND, ExitCode.NO_KEY,
            ExitCode.TAMPERED)


def worst(codes: Iterable[int]) -> int:
    """The exit code of a command over many logs: the gravest of theirs (tampered above all)."""
    return max(codes, key=SEVERITY.index, default=ExitCode.INTACT)


class RLMHostError(Exception):
    """Base of every error rlm-host raises on purpose."""

    exit_code: int = 1


class ConfigError(RLMHostError):
    """A user input is wrong; the message names it and the fix."""


class PolicyError(ConfigError):
    """A policy failed to load or validate."""


class AuditReadError(ConfigError):
    """A path given as an audit log cannot be read as one; ``exit_code`` says how (see ``ExitCode``)."""


class NotAnAuditLog(AuditReadError):
    """The path is there but is no audit log (a directory, FIFO, empty, text or binary file)."""

    exit_code = ExitCode.NOT_A_LOG


class LogNotFound(AuditReadError):
    """No file at the path, or it cannot be read."""

    exit_code = ExitCode.NOT_FOUND


class NoAuditKey(AuditReadError):
    """The key the log was chained with is not on this machine: the log cannot be verified."""

    exit_code = ExitCode.NO_KEY


class ManifestTampered(AuditReadError):
    """A manifest of runs whose signature, or the list it signs, does not hold: nothing in it is on record."""

    exit_code = ExitCode.TAMPERED


class AuditError(RLMHostError):
    """The audit log cannot be written; the run must not go on without it."""


class DockerUnavailable(RLMHostError):
    """The Docker Engine cannot be reached."""


class ImageError(RLMHostError):
    """The kernel image is missing, stale, or its build failed."""


class LMError(RLMHostError):
    """The LM endpoint refused a request, kept failing, or could not be reached.

    ``status`` is the HTTP status it last answered with (``None`` when it never
    answered) and ``attempts`` how many requests were sent, so callers can tell
    a wrong model name (404, one attempt) from an endpoint that is down.
    """

    def __init__(self, message: str, *, status: int | None, attempts: int) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


class LocalModelError(RLMHostError):
    """The local model could not be fetched, verified or served; the message says what to do."""


class SandboxError(RLMHostError):
    """The sandbox itself failed (engine, container or channel)."""


class KernelStartError(SandboxError):
    """A container or its kernel did not become ready."""

    def __init__(self, message: str, *, logs: str = "") -> None:
        super().__init__(message)
        self.logs = logs


class SessionClosed(SandboxError):
    """The session is closed; start a new one."""
