"""Drive one environment of the reference implementation (PyPI ``rlms``) and print JSON timings.

Runs in the separate virtual environment that ``bench/reference.py`` creates (``rlms`` is never
a dependency of rlm-host), one process per environment and context size, so that no state
leaks between measurements. Environments (``rlms`` 0.1.3, ``rlm.environments``):

* ``local``: ``LocalREPL``, ``exec`` in the driver's own process;
* ``ipython``: ``IPythonREPL(kernel_mode="in_process")``, an IPython shell in the same process;
* ``ipykernel``: ``IPythonREPL(kernel_mode="subprocess")``, an ipykernel child over TCP on
  127.0.0.1 (two ``execute_interactive`` round trips per cell);
* ``docker``: ``DockerREPL`` with only its ``setup()`` replaced (``OfflineDockerREPL``): its own
  ``execute_code`` and per-cell script run unchanged.

What the replacement changes, and nothing else: the reference starts ``python:3.11-slim`` on the
default bridge with ``--add-host host.docker.internal:host-gateway``, ``pip install``s ``dill`` and
``requests`` inside it over the network and serves an HTTP proxy on 0.0.0.0 for ``llm_query``.
Here the container is the given image with ``--network none``, run as root like the reference,
``dill`` and ``requests`` come from this venv's site-packages mounted read-only on
``PYTHONPATH``, a read-only shim directory puts ``python`` on ``PATH`` (the image has only
``python3``), the container carries rlm-host's labels, and no proxy is started (no cell here
calls ``llm_query``; the per-cell script still embeds the proxy URL, port 0, and never uses it).
The reference's own check that ``requests`` imports in the container is kept.

    python reference_driver.py ENV [--context FILE] [--cells N] [--warmup N] [--image IMAGE]
        [--label KEY=VALUE]...

Prints one JSON object on the last line of stdout: ``ready_s`` (construction, context load
included), ``first_cell_s`` (construction until the first trivial cell returned), ``context_chars``
(checked from inside the environment) and ``rt_ms`` (wall-clock per trivial cell, after warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

TRIVIAL = "1"
SHIM_DIR = "/opt/rlms-bin"
SITE_DIR = "/opt/rlms-site"
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def offline_docker_class(image: str, labels: list[str]) -> type:
    """``DockerREPL`` with its networked setup replaced by an offline container (see the docstring)."""
    from rlm.environments.docker_repl import DockerREPL

    class OfflineDockerREPL(DockerREPL):
        def setup(self) -> None:
            self.proxy_port = 0
            shim = Path(self.temp_dir).with_name(Path(self.temp_dir).name + "-bin")
            shim.mkdir()
            (shim / "python").symlink_to("/usr/bin/python3")
            self._shim = shim
            cmd = ["docker", "run", "-d", "--rm", "--network", "none", "--user", "0:0",
                   *[arg for label in labels for arg in ("--label", label)],
                   "-v", f"{self.temp_dir}:/workspace",
                   "-v", f"{sysconfig.get_paths()['purelib']}:{SITE_DIR}:ro",
                   "-v", f"{shim}:{SHIM_DIR}:ro",
                   "-e", f"PYTHONPATH={SITE_DIR}", "-e", f"PATH={SHIM_DIR}:{IMAGE_PATH}",
                   image, "tail", "-f", "/dev/null"]
            started = subprocess.run(cmd, capture_output=True, text=True)
            if started.returncode != 0:
                self.cleanup()
                raise RuntimeError(f"Failed to start container: {started.stderr}")
            self.container_id = started.stdout.strip()
            check = subprocess.run(["docker", "exec", self.container_id, "python", "-c", "import requests"],
                                   capture_output=True, text=True)
            if check.returncode != 0:
                self.cleanup()
                raise RuntimeError(f"requests does not import in the container: {check.stderr}")

        def cleanup(self) -> None:
            super().cleanup()
            shim = getattr(self, "_shim", None)
            if shim is not None and shim.exists():
                (shim / "python").unlink()
                shim.rmdir()

    return OfflineDockerREPL


def make_env(kind: str, context: str | None, args: argparse.Namespace) -> Any:
    from rlm.environments import LocalREPL

    if kind == "local":
        return LocalREPL(context_payload=context)
    if kind in ("ipython", "ipykernel"):
        from rlm.environments.ipython_repl import IPythonREPL

        mode = "in_process" if kind == "ipython" else "subprocess"
        return IPythonREPL(context_payload=context, kernel_mode=mode)
    if kind == "docker":
        return offline_docker_class(args.image, args.label)(context_payload=context)
    raise SystemExit(f"unknown environment {kind!r}")


def run_cell(env: Any, code: str) -> str:
    """One cell through the environment's own ``execute_code``; its stdout, or raise on an error."""
    result = env.execute_code(code)
    if result.stderr.strip():
        raise RuntimeError(f"cell {code!r} failed: {result.stderr[-2000:]}")
    return result.stdout


def measure(kind: str, context: str | None, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    env = make_env(kind, context, args)
    ready = time.perf_counter() - t0
    try:
        run_cell(env, TRIVIAL)
        first = time.perf_counter() - t0
        chars = int(run_cell(env, "print(len(context))").split()[-1]) if context is not None else None
        if context is not None and chars != len(context):
            raise RuntimeError(f"context has {chars} characters in the environment, {len(context)} loaded")
        for _ in range(args.warmup):
            run_cell(env, TRIVIAL)
        samples = []
        for _ in range(args.cells):
            t1 = time.perf_counter()
            run_cell(env, TRIVIAL)
            samples.append((time.perf_counter() - t1) * 1000)
    finally:
        env.cleanup()
    return {"env": kind, "rlms": version("rlms"), "python": sys.version.split()[0],
            "ready_s": ready, "first_cell_s": first, "context_chars": chars, "rt_ms": samples}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("env", choices=["local", "ipython", "ipykernel", "docker"])
    ap.add_argument("--context", type=Path, help="a UTF-8 text file loaded as the context")
    ap.add_argument("--cells", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--image", default="python:3.11-slim", help="docker: the image (with python3)")
    ap.add_argument("--label", action="append", default=[], help="docker: a container label KEY=VALUE")
    args = ap.parse_args(argv)
    context = args.context.read_text(encoding="utf-8") if args.context else None
    os.environ.setdefault("RLM_DOCKER_WORKSPACE_DIR", tempfile.gettempdir())
    print(json.dumps(measure(args.env, context, args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
