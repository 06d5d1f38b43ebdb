"""Which model answers a run: an OpenAI-compatible endpoint, or the embedded local model.

One choice for ``rlm-host run``, the live TUI and the Python API (``open_rlm``): an endpoint when
``base_url``/``OPENAI_BASE_URL`` or ``OPENAI_API_KEY`` names one; the embedded model when nothing
names an endpoint or a model; and an error, never a silent switch, when a model is named with no
endpoint to serve it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..events import EventHook, Say
from .config import Generation, Models
from ..settings import LM_TIMEOUT_S, model_name, openai_api_key, openai_base_url

if TYPE_CHECKING:
    from .loop import RLM

DEFAULT_MODEL = "gpt-4o-mini"  # OpenAI's API with only OPENAI_API_KEY set


def wants_local(base_url: str | None, model: str | None = None) -> bool:
    """Whether the embedded model answers: nothing names an endpoint, and nothing names a model."""
    if base_url or openai_base_url() or openai_api_key():
        return False
    named = model or model_name()
    if named:
        source = "--model" if model else "RLM_HOST_MODEL"
        raise ConfigError(f"{source} {named} needs an endpoint and none is configured: set OPENAI_API_KEY "
                          "(OpenAI's API) or --base-url / OPENAI_BASE_URL (any OpenAI-compatible server, "
                          f"with OPENAI_API_KEY if it asks for one); or drop {source} to use the embedded local model")
    return True


def endpoint(base_url: str | None, model: str | None) -> tuple[str | None, str]:
    """The endpoint and root model to use, or a ConfigError saying how to choose."""
    base_url = base_url or openai_base_url()
    model = model or model_name()
    if not model:
        if base_url:
            raise ConfigError("no model: pass --model (or set RLM_HOST_MODEL) with a model the endpoint serves")
        model = DEFAULT_MODEL
    return base_url, model


@contextmanager
def open_rlm(*, model: str | None = None, sub_model: str | None = None, base_url: str | None = None,
             timeout_s: float = LM_TIMEOUT_S, quality: bool = False, generation: Generation | None = None,
             progress: Say | None = None, policy: str | Path = "standard",
             max_iterations: int = 20, max_depth: int | None = None, max_wall_s: float | None = None,
             on_event: EventHook | None = None, audit_dir: Path | None = None) -> Iterator[RLM]:
    """An RLM on the endpoint the arguments and environment name, or on the embedded model.

    The first keywords choose the models: ``timeout_s`` bounds one model reply, ``quality`` (embedded
    model only) makes the 1.5B the root, ``generation`` replaces the chosen models' own settings
    (``local_lm.GENERATION`` for the embedded model, ``Generation()`` for an endpoint), and
    ``progress`` hears the embedded model's setup (fetching, starting servers). The rest are the
    run's, as ``RLM`` takes them. The embedded model's servers, when started here, stop when the block ends.
    """
    from .loop import RLM

    with _models(model, sub_model, base_url, timeout_s, quality, progress) as (models, defaults, info), \
            RLM(models, generation=generation or defaults, policy=policy, max_iterations=max_iterations,
                max_depth=max_depth, max_wall_s=max_wall_s, on_event=on_event, run_info=info,
                audit_dir=audit_dir) as rlm:
        yield rlm


@contextmanager
def _models(model: str | None, sub_model: str | None, base_url: str | None, timeout_s: float, quality: bool,
            progress: Say | None) -> Iterator[tuple[Models, Generation, dict[str, Any]]]:
    """The models for a run, their generation settings and what ``run.start`` records of the choice."""
    if not wants_local(base_url, model):
        url, root = endpoint(base_url, model)
        yield Models(root, sub_model=sub_model, base_url=url, timeout_s=timeout_s), Generation(), {}
        return
    from . import local_lm

    with local_lm.Endpoints(quality, progress=progress or (lambda _m: None)) as servers:
        chosen = local_lm.choose(quality)  # its choice and digests go into the run's first event
        info = {"local_model": {role: {"name": m.name, "sha256": m.sha256} for role, m in chosen.items()},
                "quality": quality}
        yield local_lm.models_for(servers, timeout_s=timeout_s), local_lm.GENERATION, info
