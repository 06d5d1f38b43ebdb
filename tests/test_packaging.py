"""The built wheel: it holds every file the package reads, and works installed outside the checkout."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import rlm_host

ROOT = Path(__file__).resolve().parent.parent
# Source folder -> where pyproject.toml puts it in the wheel.
MAPPED = {"rlm_host": "rlm_host", "policies": "rlm_host/policies", "kernel_image": "rlm_host/kernel_image"}
PROBE = """
import rlm_host, sys
from pathlib import Path
assert "/fresh/" in rlm_host.__file__, rlm_host.__file__
from rlm_host import PriceTable, load_policy
from rlm_host.sandbox.image import context_dir
from rlm_host.rlm.prompts import default_system_prompt, example_turns
for name in ("standard", "strict"):
    load_policy(name)
assert PriceTable.load().known("gpt-4o-mini")
assert default_system_prompt() and example_turns()
assert (context_dir() / "Dockerfile").is_file() and list((context_dir() / "rlm_kernel").glob("*.py"))
print("ok")
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from the tracked files only, as a clean checkout would build it."""
    source = tmp_path_factory.mktemp("source")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    tar = subprocess.run(["tar", "-c", "--null", "-T", "-"], cwd=ROOT, input=tracked, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(source)], input=tar.stdout, check=True)
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(out), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-4000:]
    warned = [line for line in (build.stdout + build.stderr).splitlines() if "Warning:" in line]
    assert warned == []  # the packaging configuration is clean (setuptools warns on every deprecated form)
    return next(out.glob("rlm_host-*.whl"))


def test_the_wheel_holds_every_file_the_package_ships(wheel: Path) -> None:
    """Each tracked file of the package folders (data, prompts, policies, the image context) is in the wheel."""
    tracked = subprocess.run(["git", "ls-files", *MAPPED], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    expected = {MAPPED[path.split("/", 1)[0]] + "/" + path.split("/", 1)[1] for path in tracked}
    held = set(zipfile.ZipFile(wheel).namelist())
    assert expected - held == set()


def test_the_installed_wheel_works_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    """Installed in a fresh venv and run from another folder: --version, and the packaged policies, prices,
    prompts and image context load."""
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True, timeout=120)
    site = next((fresh / "lib").glob("python*/site-packages"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(fresh / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True, timeout=300)
    # The dependencies come from this interpreter's site-packages, added after the wheel's (a plain path
    # entry: its .pth files, the editable install's among them, are not run).
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    version = subprocess.run([str(fresh / "bin" / "rlm-host"), "--version"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == rlm_host.__version__, version.stderr
    probe = subprocess.run([str(fresh / "bin" / "python"), "-c", PROBE], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
    assert probe.stdout.strip() == "ok", probe.stderr
