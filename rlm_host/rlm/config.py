"""What an RLM is made of, as two records: which models answer (``Models``) and how they write (``Generation``).

``RLM(models, generation=..., policy=..., ...)`` takes them beside the run's own options. They live
apart from ``loop.py`` so ``local_lm`` and ``endpoints`` can name them without importing openai or docker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..settings import LM_TIMEOUT_S

if TYPE_CHECKING:
    from .lm import LMClient, PriceTable


@dataclass(frozen=True)
class Models:
    """The root and sub-call models and how to reach them.

    ``lm``/``sub_lm`` are clients the caller made (and closes); without them the RLM makes its own
    from ``base_url``, ``api_key`` and ``timeout_s``. ``sub_base_url`` gives sub-calls a server of
    their own, so the root's prompt cache stays warm.
    """

    model: str
    sub_model: str | None = None  # None: the root model answers sub-calls too
    base_url: str | None = None  # None: OPENAI_BASE_URL, else OpenAI's API
    api_key: str | None = None
    sub_base_url: str | None = None
    timeout_s: float = LM_TIMEOUT_S  # one model reply; longer counts as a timeout and is retried
    lm: LMClient | None = None
    sub_lm: LMClient | None = None
    prices: PriceTable | None = None  # None: the shipped prices plus RLM_HOST_PRICES


@dataclass(frozen=True)
class Generation:
    """How the root model is asked and what it is shown; the defaults suit a hosted model."""

    temperature: float = 0.0
    root_max_tokens: int | None = 1024
    sub_max_tokens: int | None = 1024
    root_stop: tuple[str, ...] = ()  # a stop sequence that eats a closing fence gets the fence back
    output_chars: int = 4000  # a cell's output is cut to this (head and tail) before the root sees it
    few_shot: bool = True  # the example turns before the question
    system_prompt: str | None = None  # None: the shipped prompt
