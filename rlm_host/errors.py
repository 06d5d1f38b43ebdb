"""The one exception tree of rlm-host.

Errors from docker, jupyter_client, openai and the OS are caught where they enter and
re-raised as one of these, ``from`` the original. Each message says what went
wrong and what to do; the CLI prints it as one line.

    RLMHostError
    ├── ConfigError            bad input from the user: a policy, a file, an argument
    │   └── PolicyError        a policy file that does not validate
    ├── DockerUnavailable      no Docker Engine reachable
    ├── ImageError             the kernel image is missing, stale or failed to build
    ├── LMError                the LM endpoint refused, failed or could not be reached
    └── SandboxError           the sandbox broke (not the model's code: that is a result)
        ├── KernelStartError   the container or kernel did not come up
        └── SessionClosed      the session ended (closed, or its lifetime ran out)
"""

from __future__ import annotations


class RLMHostError(Exception):
    """Base of every error rlm-host raises on purpose."""


class ConfigError(RLMHostError):
    """A user input is wrong; the message names it and the fix."""


class PolicyError(ConfigError):
    """A policy failed to load or validate."""


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


class SandboxError(RLMHostError):
    """The sandbox itself failed (engine, container or channel)."""


class KernelStartError(SandboxError):
    """A container or its kernel did not become ready."""

    def __init__(self, message: str, *, logs: str = "") -> None:
        super().__init__(message)
        self.logs = logs


class SessionClosed(SandboxError):
    """The session is closed; start a new one."""
