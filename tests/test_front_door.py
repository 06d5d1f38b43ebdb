"""The package's front door: the pinned public names, resolved lazily, and a light import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import rlm_host

# The agreed public names, sorted: a name added to rlm_host.__all__ is added here too, with the reason in its commit.
PUBLIC = [
    "AuditError",
    "CellError",
    "ConfigError",
    "DockerSandbox",
    "DockerUnavailable",
    "ExecutionResult",
    "Generation",
    "ImageError",
    "KernelStartError",
    "LMClient",
    "LMError",
    "LocalModelError",
    "Models",
    "Policy",
    "PolicyError",
    "PriceTable",
    "RLM",
    "RLMHostError",
    "RLMResult",
    "Sandbox",
    "SandboxError",
    "SessionClosed",
    "WarmPool",
    "batch",
    "load_policy",
    "open_rlm",
    "otlp_traces",
    "run_cell",
]


def test_public_names_are_the_agreed_list() -> None:
    """The package exports exactly the agreed, sorted names, each importable; an unknown name is an AttributeError."""
    assert rlm_host.__all__ == PUBLIC == sorted(PUBLIC)
    assert all(getattr(rlm_host, name).__name__ == name for name in rlm_host.__all__)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        rlm_host.Nope  # noqa: B018


def test_the_front_door_is_light() -> None:
    """Importing the package and the CLI loads none of openai, docker, jupyter_client, textual or opentelemetry."""
    heavy = ("openai", "docker", "jupyter_client", "textual", "zmq", "opentelemetry")
    probe = f"import sys, rlm_host, rlm_host.cli; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
