"""rlm-host: Recursive Language Models on a security-hardened sandbox.

The public names are listed in ``__all__``; everything else is private to its
module and may change. Names resolve on first use (PEP 562), so importing the
package, or the CLI, does not import openai, docker and jupyter_client: only
the commands that need them do.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    AuditError,
    ConfigError,
    DockerUnavailable,
    ImageError,
    KernelStartError,
    LMError,
    LocalModelError,
    PolicyError,
    RLMHostError,
    SandboxError,
    SessionClosed,
)
from .settings import __version__ as __version__

if TYPE_CHECKING:
    from .rlm.lm import LMClient, PriceTable
    from .policy import Policy, load_policy
    from .results import CellError, ExecutionResult, RLMResult
    from .rlm.loop import RLM
    from .rlm.config import Generation, Models
    from .rlm.endpoints import open_rlm
    from .batches import batch
    from .oneshot import run_cell
    from .telemetry import otlp_traces
    from .sandbox import DockerSandbox, Sandbox, WarmPool

_HOMES = {
    "batch": ".batches",
    "CellError": ".results",
    "DockerSandbox": ".sandbox",
    "ExecutionResult": ".results",
    "Generation": ".rlm.config",
    "LMClient": ".rlm.lm",
    "Models": ".rlm.config",
    "Policy": ".policy",
    "PriceTable": ".rlm.lm",
    "RLM": ".rlm.loop",
    "RLMResult": ".results",
    "Sandbox": ".sandbox",
    "WarmPool": ".sandbox",
    "load_policy": ".policy",
    "open_rlm": ".rlm.endpoints",
    "otlp_traces": ".telemetry",
    "run_cell": ".oneshot",
}

__all__ = [  # noqa: RUF022 - plain sorted(), as tests/test_front_door.py holds it
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


def __getattr__(name: str) -> Any:
    """Import a public name's module the first time the name is used, then keep it."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'rlm_host' has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
