"""Every environment variable rlm-host reads, and where it keeps its state, decided in one place.

Each location has an environment override, then the XDG default. The runtime
directory holds per-session directories whose Unix socket paths must stay short
(the kernel's ipc sockets live there), so it defaults to a short path. Nothing
else in the package reads ``os.environ``: a newcomer finds every knob here.
"""

from __future__ import annotations

import os
from pathlib import Path

__version__ = "0.1.0"
IMAGE_REPOSITORY = "rlm-host-kernel"
SESSION_LABEL = "rlm-host.session"
POLICY_LABEL = "rlm-host.policy"
OWNER_LABEL = "rlm-host.owner-pid"  # the host process that started the container
CONTENT_HASH_LABEL = "rlm-host.content-hash"
LM_TIMEOUT_S = 120.0  # one model reply; LMClient, RLM and `run --lm-timeout` default to it


DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"
AUDIT_KEY_ENV = "RLM_HOST_AUDIT_KEY_FILE"
PRICES_ENV = "RLM_HOST_PRICES"


def _env(name: str) -> str | None:
    """The variable's value, with an empty value meaning unset (as shells leave ``VAR=``)."""
    return os.environ.get(name) or None


def _env_path(name: str) -> Path | None:
    value = _env(name)
    return Path(value).expanduser() if value else None


def runtime_dir() -> Path:
    """Per-session directories (sockets): ``RLM_HOST_RUNTIME_DIR`` or ``/tmp/rlm-host-<uid>``."""
    return _env_path("RLM_HOST_RUNTIME_DIR") or Path(f"/tmp/rlm-host-{os.getuid()}")


def cache_dir() -> Path:
    """Downloads and build artefacts: ``RLM_HOST_CACHE_DIR`` or ``$XDG_CACHE_HOME/rlm-host``."""
    xdg = _env_path("XDG_CACHE_HOME") or Path.home() / ".cache"
    return _env_path("RLM_HOST_CACHE_DIR") or xdg / "rlm-host"


def state_dir() -> Path:
    """Audit logs and keys: ``RLM_HOST_STATE_DIR`` or ``$XDG_STATE_HOME/rlm-host``."""
    xdg = _env_path("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return _env_path("RLM_HOST_STATE_DIR") or xdg / "rlm-host"


def image_tag() -> str:
    """The kernel image sandboxes start from: ``RLM_HOST_IMAGE`` or ``rlm-host-kernel:latest``."""
    return os.environ.get("RLM_HOST_IMAGE", f"{IMAGE_REPOSITORY}:latest")


def audit_dir() -> Path:
    """Where audit logs go: ``RLM_HOST_AUDIT_DIR`` or ``<state dir>/audit``."""
    return _env_path("RLM_HOST_AUDIT_DIR") or state_dir() / "audit"


def audit_key_named() -> Path | None:
    """The key file ``RLM_HOST_AUDIT_KEY_FILE`` names, if it names one (then it must exist)."""
    return _env_path(AUDIT_KEY_ENV)


def audit_key_path() -> Path:
    """Where the chain key is: ``RLM_HOST_AUDIT_KEY_FILE``, else ``audit.key`` in the state directory."""
    return audit_key_named() or state_dir() / "audit.key"


def signing_dir() -> Path:
    """The Ed25519 key that signs audit checkpoints, and every public key it replaced: ``<state dir>/signing``."""
    return state_dir() / "signing"


def prices_file() -> Path | None:
    """A prices file that overrides the shipped table: ``RLM_HOST_PRICES``."""
    return _env_path(PRICES_ENV)


def debian_mirror() -> str:
    """The Debian mirror the image's root filesystem is built from: ``RLM_HOST_DEBIAN_MIRROR``."""
    return _env("RLM_HOST_DEBIAN_MIRROR") or DEFAULT_DEBIAN_MIRROR


def docker_host() -> str:
    """The Docker Engine the SDK talks to (``DOCKER_HOST``), for messages only: the SDK reads it itself."""
    return _env("DOCKER_HOST") or "unix:///var/run/docker.sock"


def model_name() -> str | None:
    """The root model named by ``RLM_HOST_MODEL``."""
    return _env("RLM_HOST_MODEL")


def openai_base_url() -> str | None:
    """An OpenAI-compatible endpoint: ``OPENAI_BASE_URL`` (as the openai client reads it)."""
    return _env("OPENAI_BASE_URL")


def openai_api_key() -> str | None:
    """The endpoint's key: ``OPENAI_API_KEY`` (as the openai client reads it)."""
    return _env("OPENAI_API_KEY")


def ray_address() -> str:
    """The Ray cluster ``batch --ray`` joins when it names none: ``RAY_ADDRESS``, else ``auto`` (Ray's
    word for the cluster this machine is a node of)."""
    return _env("RAY_ADDRESS") or "auto"


def otlp_endpoint() -> str | None:
    """Where traces go when ``run`` is not told: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` as it is, else
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` with ``/v1/traces`` added (OpenTelemetry's rule for the two)."""
    traces = _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if traces:
        return traces
    base = _env("OTEL_EXPORTER_OTLP_ENDPOINT")
    return base.rstrip("/") + "/v1/traces" if base else None


def environment_with(**changes: str) -> dict[str, str]:
    """This process's environment with ``changes``, for an rlm-host process it starts (a batch's runs):
    endpoint keys reach it this way, never on its command line."""
    return {**os.environ, **changes}
