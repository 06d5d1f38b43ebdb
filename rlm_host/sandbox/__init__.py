"""Sandboxes: where model-written code runs. See ``base.Sandbox`` for the interface."""

from .base import Sandbox
from .container import reap
from .docker_sandbox import DockerSandbox
from .pool import WarmPool

__all__ = ["DockerSandbox", "Sandbox", "WarmPool", "reap"]
