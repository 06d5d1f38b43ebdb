"""rlm-host: Recursive Language Models on a security-hardened sandbox.

The public names are listed in ``__all__``; everything else is private to its
module and may change.
"""

from .errors import (
    ConfigError,
    DockerUnavailable,
    ImageError,
    KernelStartError,
    LMError,
    PolicyError,
    RLMHostError,
    SandboxError,
    SessionClosed,
)
from .lm import LMClient, PriceTable
from .policy import Policy, load_policy
from .results import CellError, ExecutionResult, RLMResult
from .rlm import RLM
from .sandbox import DockerSandbox, Sandbox, WarmPool

from .settings import __version__

__all__ = [
    "CellError",
    "ConfigError",
    "DockerSandbox",
    "DockerUnavailable",
    "ExecutionResult",
    "ImageError",
    "KernelStartError",
    "LMClient",
    "LMError",
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
    "load_policy",
]
