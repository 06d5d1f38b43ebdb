"""The educational terminal UI: a run, live or replayed from its audit log, step by step with the paper."""

from .app import RLMApp

__all__ = ["RLMApp"]
