"""The per-session directory on the host: the only path a container shares.

    <runtime_dir>/<session id>/        0711, the host user's
        io/    -> /session (rw)        0700, owned by the sandbox uid: the kernel's
                                       connection file and ipc sockets, the RPC socket
        docs/  -> /docs (ro)           the documents and their manifest

``io/`` is writable by the kernel, so the host treats it as hostile: when the host
runs as root it is a private tmpfs of its own (``noexec,nosuid,nodev``, 1 MiB), so
nothing dropped there runs and nothing written there fills the host's disk; and
the host never follows a link the kernel planted there (it unlinks, then creates
with ``O_EXCL|O_NOFOLLOW``).

Documents are hard-linked when they are already world-readable and on the same
filesystem, else copied in a stream; either way the container reads them from
the read-only mount and they never pass through the kernel protocol.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from rlm_kernel.contract import IO_DIR as CONTAINER_IO
from rlm_kernel.contract import RPC_SOCKET, manifest_entry, write_manifest

from ..errors import ConfigError, SandboxError
from ..settings import runtime_dir
from .document import Document

KERNEL_PREFIX = "kernel"
CONNECTION_FILE = "kernel.json"
CHANNEL_PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}
# io/'s own filesystem: room for the connection file and sockets, nothing to run, nothing to hoard
IO_TMPFS_OPTIONS = "size=1m,nr_inodes=64,mode=0700"
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
MNT_DETACH = 0x2


def new_session_id() -> str:
    return secrets.token_hex(6)


@dataclass
class SessionDir:
    """Creates, fills and removes one session's directory."""

    session_id: str
    uid: int

    @property
    def root(self) -> Path:
        return runtime_dir() / self.session_id

    @property
    def io(self) -> Path:
        return self.root / "io"

    @property
    def docs(self) -> Path:
        return self.root / "docs"

    @property
    def rpc_socket(self) -> Path:
        return self.io / RPC_SOCKET

    def create(self) -> None:
        base = runtime_dir()
        base.mkdir(mode=0o711, parents=True, exist_ok=True)
        self.root.mkdir(mode=0o711)
        self.io.mkdir(mode=0o700)
        self.docs.mkdir(mode=0o755)
        if os.geteuid() == 0:
            _mount_private_tmpfs(self.io, self.uid)
        self._own(self.io)

    def write_connection(self) -> dict:
        """Write a fresh connection file (new key); return the host-side connection info."""
        self.reset_io()
        info = {"transport": "ipc", "ip": f"{CONTAINER_IO}/{KERNEL_PREFIX}", **CHANNEL_PORTS,
                "key": secrets.token_hex(32), "signature_scheme": "hmac-sha256", "kernel_name": "rlm"}
        path = self.io / CONNECTION_FILE  # reset_io removed what was there (a link to a host file), unfollowed
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as file:
            if os.geteuid() == 0:
                os.fchown(fd, self.uid, self.uid)
            file.write(json.dumps(info))
        return {**info, "ip": str(self.io / KERNEL_PREFIX)}

    def sockets_ready(self) -> bool:
        return all((self.io / f"{KERNEL_PREFIX}-{port}").exists() for port in CHANNEL_PORTS.values())

    def reset_io(self) -> None:
        """Empty io/ for a fresh kernel (all but the broker's socket), whatever the last one left."""
        for entry in list(self.io.iterdir()):
            if entry.name != RPC_SOCKET:
                _clear(entry)

    def stage_documents(self, documents: list[Document]) -> None:
        """Place the documents in ``docs/`` and write the manifest the kernel reads."""
        entries = []
        for index, doc in enumerate(documents):
            dest = self.docs / f"{index:05d}.doc"
            place_file(doc.text_path, dest)
            entries.append(manifest_entry(doc.name, dest.name, dest.stat().st_size, doc.chars, doc.pages))
        write_manifest(self.docs, entries)

    def remove(self) -> None:
        remove_session_dir(self.root)

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.uid)


def check_documents(documents: list[Document]) -> None:
    """Refuse a missing, linked, unreadable or non-file document before anything starts.

    A link is never followed: staging puts exactly the named file in ``docs/``, so a path cannot
    hand the sandbox (or the host's own reading of the staged text) a file somewhere else.
    """
    for path in (doc.text_path for doc in documents):
        try:
            info = path.lstat()
        except FileNotFoundError:
            raise ConfigError(f"document {path} not found; check the path") from None
        except OSError as exc:
            raise ConfigError(f"document {path} cannot be read ({exc.strerror}); check the path") from exc
        if stat.S_ISLNK(info.st_mode):
            raise ConfigError(f"document {path} is a symbolic link, which is never followed; "
                              "pass the file it points to")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"document {path} is not a regular file; pass files")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"document {path} is not readable; check its permissions")


def remove_session_dir(root: Path) -> None:
    """Remove a session's directory, its io/ tmpfs unmounted first."""
    _unmount(root / "io")
    shutil.rmtree(root, ignore_errors=True)


def _clear(path: Path) -> None:
    """Remove a path the kernel may have replaced (file, link, directory) without following links."""
    try:
        path.unlink(missing_ok=True)
    except IsADirectoryError:
        shutil.rmtree(path, ignore_errors=True)  # rmtree never follows links


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount_private_tmpfs(path: Path, uid: int) -> None:
    """Mount io/'s own small noexec tmpfs, owned by the sandbox uid (root only)."""
    options = f"{IO_TMPFS_OPTIONS},uid={uid},gid={uid}".encode()
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    if _libc().mount(b"tmpfs", os.fsencode(path), b"tmpfs", flags, options) != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"cannot mount the session's private tmpfs at {path}: {os.strerror(err)}; "
                           "rlm-host needs CAP_SYS_ADMIN when run as root (or run it as a user with uid >= 1000)")


def _unmount(path: Path) -> None:
    """Detach io/'s tmpfs if it is mounted (a no-op when it is a plain directory)."""
    if path.is_mount():
        _libc().umount2(os.fsencode(path), MNT_DETACH)


def place_file(src: Path, dest: Path) -> None:
    """Stage the file ``src`` names, opened without following a link: linked when others may read it, else copied.

    The link is made from the open descriptor (``/proc/self/fd``), so what is staged is the file that
    was checked, even if ``src`` is replaced by a link in between.
    """
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise SandboxError(f"cannot stage document {src}: {exc.strerror} (links are never followed)") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SandboxError(f"cannot stage document {src}: not a regular file")
        if not (info.st_mode & 0o004 and _link(fd, dest)):
            _copy(fd, src, dest)
    finally:
        os.close(fd)


def _link(fd: int, dest: Path) -> bool:
    """Hard-link the open file itself: linkat(/proc/self/fd, "N", ..., AT_SYMLINK_FOLLOW)."""
    try:
        fds = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.link(str(fd), dest, src_dir_fd=fds, follow_symlinks=True)  # a dir fd makes it linkat
        finally:
            os.close(fds)
    except OSError:
        return False  # another filesystem, or links not allowed: copy instead
    return True


def _copy(fd: int, src: Path, dest: Path) -> None:
    try:
        with open(fd, "rb", closefd=False) as source, open(dest, "xb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
        dest.chmod(0o644)
    except OSError as exc:
        raise SandboxError(f"cannot stage document {src}: {exc}") from exc
