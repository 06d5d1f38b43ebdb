"""Sandboxes: where model-written code runs. See ``base.Sandbox`` for the interface."""

from .base import Sandbox, SandboxFactory
from .container import reap
from .docker_sandbox import DockerSandbox
from .pool import WarmPool
from .document import Document

__all__ = ["DockerSandbox", "Document", "Sandbox", "SandboxFactory", "WarmPool", "reap"]
