"""Building the kernel image, air-gapped or online, and knowing when it is current.

Air-gapped (the default): ``kernel_image/build_rootfs.sh`` makes a Debian
minbase rootfs with debootstrap, ``docker import`` turns it into a base image,
and the Dockerfile finishes it. Online: the same Dockerfile on a registry base
image (e.g. ``python:3.11-slim``) with ipykernel from PyPI.

The image carries a label with the content hash of everything that went into
it; a build whose hash is already tagged is skipped.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from docker import DockerClient
from docker.errors import BuildError, APIError, ImageNotFound
from docker.models.images import Image

from .docker_engine import docker_client
from ..errors import ImageError
from ..events import Say
from ..settings import CONTENT_HASH_LABEL, DEFAULT_DEBIAN_MIRROR, IMAGE_REPOSITORY, cache_dir, debian_mirror, image_tag

DEFAULT_MIRROR = DEFAULT_DEBIAN_MIRROR
DEFAULT_SUITE = "bookworm"
BASE_REPOSITORY = "rlm-host-base"



@dataclass(frozen=True)
class ImageInfo:
    """A built kernel image."""

    tag: str
    id: str
    content_hash: str
    size_bytes: int
    built: bool
    seconds: float


def context_dir() -> Path:
    """The image's build context, shipped inside the package."""
    return Path(str(resources.files("rlm_host.kernel_image")))


def _context_files() -> list[tuple[Path, str]]:
    """(file, path in the build context): the kernel_image files, then the vendored pypdf."""
    root = context_dir()
    files = [root / "Dockerfile", root / "build_rootfs.sh", *sorted((root / "rlm_kernel").rglob("*.py"))]
    pairs = [(path, path.relative_to(root).as_posix()) for path in files]
    package = _pypdf_dir()
    return pairs + [(path, f"vendor/pypdf/{path.relative_to(package).as_posix()}")
                    for path in sorted(package.rglob("*")) if _vendored(path)]


def _pypdf_dir() -> Path:
    """The pypdf package the host has installed: pure Python, copied into the image (no registry)."""
    import pypdf

    return Path(pypdf.__file__).parent


def _vendored(path: Path) -> bool:
    return path.is_file() and "__pycache__" not in path.parts and path.suffix in {".py", ".typed"}


def content_hash(base: str) -> str:
    """SHA-256 over the build context (the vendored pypdf included) and the base it is built on."""
    digest = hashlib.sha256(f"base={base}\n".encode())
    for path, name in _context_files():
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _assemble_context(into: Path) -> Path:
    """The build context as a directory: the kernel_image files plus ``vendor/pypdf``."""
    for path, name in _context_files():
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return into


def _rootfs_hash(suite: str, mirror: str) -> str:
    script = (context_dir() / "build_rootfs.sh").read_bytes()
    return hashlib.sha256(script + f"{suite} {mirror}".encode()).hexdigest()[:16]


def offline_base_tag(suite: str = DEFAULT_SUITE, mirror: str = DEFAULT_MIRROR) -> str:
    return f"{BASE_REPOSITORY}:{_rootfs_hash(suite, mirror)}"


def current_image() -> tuple[str | None, str | None]:
    """(label, expected) content hashes of the tagged image; label is None when absent."""
    try:
        image = docker_client().images.get(image_tag())
    except ImageNotFound:
        return None, None
    labels = image.labels or {}
    base = labels.get("rlm-host.base", "")
    return labels.get(CONTENT_HASH_LABEL), content_hash(base) if base else None


def require_image() -> str:
    """The tag to start sandboxes from; an ImageError with the fix when it is missing."""
    label, expected = current_image()
    if label is None:
        raise ImageError(f"kernel image {image_tag()} not found: build it with `rlm-host image build`")
    if expected is not None and label != expected and image_tag().startswith(IMAGE_REPOSITORY):
        raise ImageError(f"kernel image {image_tag()} is out of date: rebuild it with `rlm-host image build`")
    return image_tag()


def build_image(
    *,
    offline: bool = True,
    base_image: str = "python:3.11-slim",
    mirror: str | None = None,
    suite: str = DEFAULT_SUITE,
    force: bool = False,
    progress: Say = lambda _msg: None,
) -> ImageInfo:
    """Build the kernel image unless one with the same content hash exists."""
    started = time.monotonic()
    mirror = mirror or debian_mirror()
    base = offline_base_tag(suite, mirror) if offline else base_image
    want = content_hash(base)
    client = docker_client()
    tag = f"{IMAGE_REPOSITORY}:{want[:12]}"
    if not force and _has_image(tag):
        _tag_current(client.images.get(tag))
        progress(f"image {tag} is current (content hash {want[:12]}); nothing to build")
        return _info(tag, want, built=False, started=started)
    if offline:
        _ensure_offline_base(base, suite, mirror, progress)
    progress(f"building {tag} from {base}")
    with tempfile.TemporaryDirectory(prefix="rlm-host-image-") as scratch:
        image = _build(client, _assemble_context(Path(scratch)), tag, base, want, offline=offline)
    _tag_current(image)
    return _info(tag, want, built=True, started=started)


def _build(client: DockerClient, context: Path, tag: str, base: str, want: str, *, offline: bool) -> Image:
    try:
        image, _logs = client.images.build(
            path=str(context), tag=tag, network_mode="none" if offline else None,
            buildargs={"BASE_IMAGE": base, "PIP_IPYKERNEL": "0" if offline else "1"},
            labels={CONTENT_HASH_LABEL: want, "rlm-host.base": base}, rm=True, forcerm=True,
        )
    except (BuildError, APIError) as exc:
        hint = "" if offline else " (online builds need a registry for the base image; try --offline)"
        raise ImageError(f"kernel image build failed: {exc}{hint}") from exc
    return image


def _tag_current(image: Image) -> None:
    """Tag the build as the image sandboxes start from (``RLM_HOST_IMAGE``, default ``...:latest``).

    Two checkouts sharing one engine each set their own ``RLM_HOST_IMAGE`` and so never retag the
    image the other is running from.
    """
    repository, colon, tag = image_tag().rpartition(":")
    if not colon or "/" in tag:  # no tag given (a registry port is not one)
        repository, tag = image_tag(), "latest"
    image.tag(repository, tag)


def _has_image(tag: str) -> bool:
    try:
        docker_client().images.get(tag)
    except ImageNotFound:
        return False
    return True


def _info(tag: str, want: str, *, built: bool, started: float) -> ImageInfo:
    image = docker_client().images.get(tag)
    return ImageInfo(tag, image.id, want, image.attrs.get("Size", 0), built, time.monotonic() - started)


def _ensure_offline_base(base: str, suite: str, mirror: str, progress: Say) -> None:
    if _has_image(base):
        progress(f"base {base} present")
        return
    if os.geteuid() != 0:
        raise ImageError("the air-gapped image build runs debootstrap and needs root: run it as root")
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap not found: install it with `apt-get install debootstrap`")
    tar = cache_dir() / f"{base.replace(':', '-')}.tar"
    tar.parent.mkdir(parents=True, exist_ok=True)
    progress(f"debootstrap {suite} minbase from {mirror} (about a minute)")
    script = context_dir() / "build_rootfs.sh"
    proc = subprocess.run(["sh", str(script), str(tar), suite, mirror], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise ImageError(f"debootstrap failed (exit {proc.returncode}): {tail}")
    progress(f"importing rootfs as {base}")
    try:
        repository, tag = base.split(":")
        docker_client().api.import_image(src=str(tar), repository=repository, tag=tag)
    except APIError as exc:
        raise ImageError(f"docker import failed: {exc}") from exc
    finally:
        tar.unlink(missing_ok=True)
