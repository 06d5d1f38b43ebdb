"""Checks of the machine rlm-host runs on, each with the command that fixes it."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .sandbox.docker_engine import docker_client
from .errors import DockerUnavailable, ImageError
from .sandbox.image import current_image, require_image
from .settings import SESSION_LABEL, image_tag, model_name, openai_api_key, openai_base_url, runtime_dir

# --oci-seccomp: without it runsc ignores the policy's seccomp profile (scripts/register_runsc.py says why)
RUNSC_ARGS = ("--network=none", "--host-uds=all", "--oci-seccomp")
RUNSC_ENTRY = {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": list(RUNSC_ARGS)}}


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report; ``fix`` is empty when all is well."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def run_checks() -> list[Check]:
    """Docker, runtimes, image, leftovers and LM endpoint, in that order."""
    try:
        version = docker_client().version().get("Version", "?")
    except DockerUnavailable as exc:
        return [Check("docker", False, str(exc), "apt-get install docker.io && dockerd &")]
    checks = [Check("docker", True, f"Docker Engine {version} reachable")]
    checks += [_runc(), _runsc(), _image(), _leftovers(), _lm_endpoint(), _local_model()]
    return checks


def node_checks(runtimes: list[str]) -> list[Check]:
    """What a machine needs to hold sessions of the given runtimes: Docker, those runtimes, the image."""
    try:
        version = docker_client().version().get("Version", "?")
    except DockerUnavailable as exc:
        return [Check("docker", False, str(exc), "apt-get install docker.io && dockerd &")]
    by_runtime = {"runc": _runc, "runsc": _runsc}
    return [Check("docker", True, f"Docker Engine {version} reachable"),
            *(by_runtime[name]() for name in runtimes), _image()]


def _runtimes() -> dict:
    return docker_client().info().get("Runtimes", {})


def _runc() -> Check:
    ok = "runc" in _runtimes()
    return Check("runtime runc", ok, "registered" if ok else "missing (policy 'standard' needs it)",
                 "" if ok else "reinstall docker.io")


def _runsc() -> Check:
    entry = _runtimes().get("runsc")
    fix = ("apt-get install runsc, then add to /etc/docker/daemon.json under \"runtimes\": "
           f"{json.dumps(RUNSC_ENTRY)} and restart dockerd")
    if entry is None:
        return Check("runtime runsc", False, "not registered (policy 'strict' needs gVisor)", fix)
    args = entry.get("runtimeArgs") or []
    missing = [a for a in RUNSC_ARGS if a not in args]
    if missing:
        return Check("runtime runsc", False, f"registered without {' '.join(missing)}", fix)
    return Check("runtime runsc", True, f"registered: {entry.get('path')} {' '.join(args)}")


def _image() -> Check:
    try:
        require_image()
    except ImageError as exc:
        return Check("kernel image", False, str(exc), "rlm-host image build")
    label, _expected = current_image()
    assert label is not None, "require_image found the image labelled"
    return Check("kernel image", True, f"{image_tag()} current (content hash {label[:12]})")


def _leftovers() -> Check:
    containers = docker_client().containers.list(all=True, filters={"label": SESSION_LABEL})
    dirs = [p for p in runtime_dir().glob("*") if p.is_dir()] if runtime_dir().is_dir() else []
    if not containers and not dirs:
        return Check("leftovers", True, "no sandbox containers or session directories left behind")
    return Check("leftovers", False, f"{len(containers)} container(s), {len(dirs)} session dir(s) "
                 "from earlier runs (or running now)", "rlm-host doctor --reap", required=False)


def _lm_endpoint() -> Check:
    base = openai_base_url()
    key = "set" if openai_api_key() else "not set"
    if base:
        return Check("LM endpoint", True, f"OPENAI_BASE_URL={base}, OPENAI_API_KEY {key}", required=False)
    if key == "set":
        return Check("LM endpoint", True, "OpenAI's API (OPENAI_API_KEY set)", required=False)
    if model_name():  # `run` refuses a named model with nothing to serve it
        return Check("LM endpoint", False, "RLM_HOST_MODEL is set but no endpoint is configured: runs stop "
                     "with an error; set OPENAI_API_KEY or OPENAI_BASE_URL, or unset RLM_HOST_MODEL for the "
                     "embedded local model", "unset RLM_HOST_MODEL", required=False)
    return Check("LM endpoint", True, "none configured: runs use the embedded local model", required=False)


def _local_model() -> Check:
    """The embedded model: llama-cpp-python installed, the 0.5B weights fetched and verified."""
    import importlib.util

    from .rlm.local_lm import MODELS, verified, models_dir

    if importlib.util.find_spec("llama_cpp") is None:
        return Check("local model", False, "llama-cpp-python not installed (needed without an API key; "
                     "it builds from source, 5-8 min)", "pip install 'rlm-host[local]'", required=False)
    model = MODELS["0.5b"]
    if not verified(models_dir() / model.filename, model):
        return Check("local model", False, f"{model.name} not fetched yet", "rlm-host local-lm fetch",
                     required=False)
    return Check("local model", True, f"{model.name} fetched and verified")


def reap_all(*, include_live: bool = False) -> tuple[int, int]:
    """Remove leftover containers and session directories; return (containers, dirs).

    Containers of a host process that still runs are kept unless ``include_live``;
    a session directory goes when no container of that session remains.
    """
    from .sandbox import reap
    from .sandbox.session_dir import remove_session_dir

    removed = reap(include_live=include_live)
    remaining = {c.labels.get(SESSION_LABEL) for c in
                 docker_client().containers.list(all=True, filters={"label": SESSION_LABEL})}
    dirs = 0
    if runtime_dir().is_dir():
        for path in runtime_dir().iterdir():
            if path.is_dir() and path.name not in remaining:
                remove_session_dir(path)
                dirs += 1
    return len(removed), dirs
