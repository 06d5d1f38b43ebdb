"""The application's ordinary logs (not the audit log): structlog to stderr, human or JSON."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from .sanitize import json_escape, visible


def configure(*, as_json: bool = False, level: int = logging.INFO) -> None:
    """Set up structlog once for the command line: a console format, or one JSON object per line."""
    renderer = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"),
                    structlog.processors.format_exc_info, renderer, _shown_as_json if as_json else _shown],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def _shown(_logger: Any, _name: str, line: Any) -> str:
    """A log line may quote a hostile value (an exception's message): never a control sequence on stderr."""
    return visible(line, newlines=True)


def _shown_as_json(_logger: Any, _name: str, line: Any) -> str:
    return json_escape(line)
