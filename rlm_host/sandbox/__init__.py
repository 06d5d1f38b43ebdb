"""Sandboxes: where model-written code runs. See ``base.Sandbox`` for the interface."""

from .base import Sandbox, SandboxFactory
from .container import reap
from .docker_sandbox import DockerSandbox
from .pool import WarmPool
from .session_dir import StagedDocument

__all__ = ["DockerSandbox", "Sandbox", "SandboxFactory", "StagedDocument", "WarmPool", "reap"]
