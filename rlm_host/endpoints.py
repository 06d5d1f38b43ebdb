"""Which model answers a run: an OpenAI-compatible endpoint, or the embedded local model.

One choice for ``rlm-host run``, the live TUI and the Python API (``open_rlm``): an endpoint when
``base_url``/``OPENAI_BASE_URL`` or ``OPENAI_API_KEY`` names one; the embedded model when nothing
names an endpoint or a model; and an error, never a silent switch, when a model is named with no
endpoint to serve it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .events import EventHook
from .settings import model_name, openai_api_key, openai_base_url

if TYPE_CHECKING:
    from .rlm import RLM

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
             quality: bool = False, policy: str | Path = "standard", on_event: EventHook | None = None,
             progress: Callable[[str], None] | None = None, **options: Any) -> Iterator[RLM]:
    """An RLM on the endpoint the arguments and environment name, or on the embedded model.

    ``quality`` (embedded model only) makes the 1.5B the root; ``progress`` hears the embedded
    model's setup (fetching, starting servers); ``options`` go to ``RLM`` (limits, audit_dir, ...).
    The embedded model's servers, when started here, stop when the block ends.
    """
    if wants_local(base_url, model):
        with _local(quality, policy, on_event, progress, options) as rlm:
            yield rlm
        return
    from .rlm import RLM

    url, root = endpoint(base_url, model)
    with RLM(model=root, sub_model=sub_model, base_url=url, policy=policy, on_event=on_event, **options) as rlm:
        yield rlm


@contextmanager
def _local(quality: bool, policy: str | Path, on_event: EventHook | None, progress: Callable[[str], None] | None,
           options: dict[str, Any]) -> Iterator[RLM]:
    """A run on the embedded model; its choice and digests go into the run's first event."""
    from . import local_lm

    with local_lm.Endpoints(quality, progress=progress or (lambda _m: None)) as servers:
        models = local_lm.choose(quality)
        info = {"local_model": {role: {"name": m.name, "sha256": m.sha256} for role, m in models.items()},
                "quality": quality}
        with local_lm.local_rlm(servers, policy=policy, on_event=on_event, run_info=info, **options) as rlm:
            yield rlm
