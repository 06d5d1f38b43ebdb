"""The kernel image's contract: non-root, no setuid files, no compilers, runtime installed, hash label."""

from __future__ import annotations

import json

import pytest

from rlm_host.sandbox.docker_engine import docker_client
from rlm_host.sandbox.image import build_image, current_image
from rlm_host.sandbox import DockerSandbox

pytestmark = pytest.mark.docker

SCAN = r"""
import json, os, shutil, stat
special = []
for root, dirs, files in os.walk("/"):
    if root.startswith(("/proc", "/sys", "/dev", "/session", "/docs", "/tmp")):
        dirs[:] = []
        continue
    for name in files:
        try:
            mode = os.lstat(os.path.join(root, name)).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
            special.append(os.path.join(root, name))
import ipykernel, rlm_kernel
print(json.dumps({"setid": special, "tools": [t for t in ("gcc", "cc", "g++", "make", "apt-get", "dpkg", "pip", "pip3",
                                                         "sudo", "su", "mount") if shutil.which(t)],
                  "ipykernel": ipykernel.__version__, "rlm_kernel": rlm_kernel.__file__}))
"""


def test_image_is_current_and_labelled(docker_ready: str) -> None:
    """The tagged image carries the content hash of its build context; a rebuild is skipped."""
    label, expected = current_image()
    assert label is not None and label == expected
    info = build_image()
    assert not info.built and info.content_hash == label
    config = docker_client().images.get(docker_ready).attrs["Config"]
    assert config["User"] == "1000:1000"


def test_image_contents(shared_sandbox: DockerSandbox) -> None:
    """No setuid/setgid files, no compilers or privilege tools, ipykernel and rlm_kernel present."""
    result = shared_sandbox.execute(SCAN, timeout=60)
    assert result.status == "ok", result
    seen = json.loads(result.stdout)
    assert seen["setid"] == []
    assert seen["tools"] == []
    assert seen["rlm_kernel"].startswith("/opt/rlm/")
