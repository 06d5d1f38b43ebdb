"""Where rlm-host keeps its state, decided in one place.

Each location has an environment override, then the XDG default. The runtime
directory holds per-session directories whose Unix socket paths must stay short
(the kernel's ipc sockets live there), so it defaults to a short path.
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


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
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
