"""Ed25519 signing keys and signed notes: what lets anyone verify a log with a public key alone.

The formats are the C2SP ones transparency logs use (https://github.com/C2SP/C2SP, ``signed-note.md``
and ``tlog-checkpoint.md``), so a reviewer can check them with other tools too:

- a *signed note* is UTF-8 text: a body of lines each ending in ``\\n``, a blank line, then one line
  per signature, ``— <key name> <base64(key hash (4 bytes) || Ed25519 signature (64 bytes))>``; the
  signature is over the body's bytes.
- a *checkpoint* is a note whose body is the origin (which log), the size (how many lines it
  covers) and the root hash (base64): here the root is the log's keyless chain head (``audit.plain_link``).
- the *key hash* (the key id in every signature) is the first 4 bytes of
  SHA-256(key name || ``\\n`` || 0x01 || public key); a public key file holds one line,
  ``<name>+<key hash, 8 hex>+<base64(0x01 || public key)>``, and the private key file
  ``PRIVATE+KEY+<name>+<key hash>+<base64(0x01 || seed)>`` (mode 0600), as Go's ``note`` package writes them.

The host's key lives in ``settings.signing_dir()``: ``audit-signing.key`` and ``audit-signing.pub``,
and every public key ever made there is kept as ``<key hash>.pub``, so logs signed before a rotation
still verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import ConfigError, NoAuditKey
from .settings import signing_dir

KEY_NAME = "rlm-host-audit"
ALG_ED25519 = b"\x01"
SIG_PREFIX = "\u2014 "  # "— ", an em dash and a space
NOTE_MAX_BYTES = 1 << 20  # a checkpoint is ~200 bytes; a manifest of 5,000 runs under 1 MiB
KEY_FILE_MAX_BYTES = 4096
PRIVATE_NAME, PUBLIC_NAME = "audit-signing.key", "audit-signing.pub"


def key_hash(name: str, public: bytes) -> bytes:
    """The 4-byte key id of ``name``'s Ed25519 ``public`` key (signed-note.md)."""
    return hashlib.sha256(name.encode() + b"\n" + ALG_ED25519 + public).digest()[:4]


def _raw(public: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Verifier:
    """One public key: its name and key hash say which signature lines are its own."""

    name: str
    hash: bytes
    key: Ed25519PublicKey

    @property
    def key_id(self) -> str:
        """``<name>+<key hash in hex>``: how messages and checkpoint events name a key."""
        return f"{self.name}+{self.hash.hex()}"

    def line(self) -> str:
        """The public key file's one line."""
        return f"{self.key_id}+{base64.b64encode(ALG_ED25519 + _raw(self.key)).decode()}"

    def verifies(self, body: bytes, signature: bytes) -> bool:
        try:
            self.key.verify(signature, body)
        except InvalidSignature:
            return False
        return True


class Signer:
    """The private key that signs this host's checkpoints, seals and manifests."""

    def __init__(self, private: Ed25519PrivateKey, name: str = KEY_NAME) -> None:
        self._private = private
        public = private.public_key()
        self.verifier = Verifier(name, key_hash(name, _raw(public)), public)

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    @property
    def key_id(self) -> str:
        return self.verifier.key_id

    def sign(self, body: str) -> str:
        """``body`` (lines ending in ``\\n``) as a signed note with this key's one signature line."""
        signature = self._private.sign(body.encode())
        return f"{body}\n{SIG_PREFIX}{self.verifier.name} {base64.b64encode(self.verifier.hash + signature).decode()}\n"

    def private_line(self) -> str:
        from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

        seed = self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return f"PRIVATE+KEY+{self.key_id}+{base64.b64encode(ALG_ED25519 + seed).decode()}"


# -- notes and checkpoints -----------------------------------------------------------------------

@dataclass(frozen=True)
class Note:
    """A parsed signed note: its body and each signature as (key name, key hash, signature)."""

    body: str
    signatures: tuple[tuple[str, bytes, bytes], ...]

    def signed_by(self, verifiers: dict[bytes, Verifier]) -> tuple[Verifier | None, str]:
        """The first of ``verifiers`` whose signature here is valid, or None and why not."""
        known = [(name, h, sig) for name, h, sig in self.signatures if h in verifiers and verifiers[h].name == name]
        if not known:
            ids = ", ".join(f"{name}+{h.hex()}" for name, h, _ in self.signatures)
            return None, f"signed by another key ({ids}), not by any key given"
        for _name, h, sig in known:
            if verifiers[h].verifies(self.body.encode(), sig):
                return verifiers[h], ""
        return None, f"forged: its signature by {known[0][0]}+{known[0][1].hex()} does not verify"

    def key_hashes(self) -> set[bytes]:
        return {h for _name, h, _sig in self.signatures}


def parse_note(text: object) -> Note:
    """A signed note, or ValueError saying how it is malformed (the text is hostile: bounded, strict)."""
    if not isinstance(text, str) or len(text) > NOTE_MAX_BYTES or not text.endswith("\n"):
        raise ValueError("not a signed note (no text ending in a newline)")
    if any(char < " " and char != "\n" for char in text):
        raise ValueError("not a signed note (a control character other than newline)")
    cut = text.rfind("\n\n")
    if cut < 0:
        raise ValueError("not a signed note (no blank line before its signatures)")
    body, block = text[:cut + 1], text[cut + 2:]
    signatures = []
    for line in block.split("\n")[:-1]:
        if not line.startswith(SIG_PREFIX) or line.count(" ") != 2:
            raise ValueError("not a signed note (a signature line is malformed)")
        name, encoded = line[len(SIG_PREFIX):].split(" ")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise ValueError("not a signed note (a signature is not base64)") from exc
        if len(blob) != 68:
            raise ValueError("not a signed note (a signature is not 4 + 64 bytes)")
        signatures.append((name, blob[:4], blob[4:]))
    if not signatures:
        raise ValueError("not a signed note (no signature)")
    return Note(body, tuple(signatures))


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's body: which log (origin), how many lines (size), their chain head (root)."""

    origin: str
    size: int
    root: bytes
    extra: tuple[str, ...] = ()

    def body(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extra]
        return "".join(line + "\n" for line in lines)


def parse_checkpoint(body: str) -> Checkpoint:
    """The checkpoint a note's body holds, or ValueError."""
    lines = body.split("\n")[:-1]
    if len(lines) < 3 or not lines[1].isdigit() or (lines[1] != "0" and lines[1].startswith("0")):
        raise ValueError("not a checkpoint (origin, size, root hash)")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except binascii.Error as exc:
        raise ValueError("not a checkpoint (its root hash is not base64)") from exc
    return Checkpoint(lines[0], int(lines[1]), root, tuple(lines[3:]))


def origin_of(run_id: str) -> str:
    """The origin line of a run's checkpoints: names the log, so a checkpoint cannot pass for another's."""
    safe = run_id if run_id.isascii() and run_id.isprintable() and " " not in run_id and "+" not in run_id else \
        "sha256:" + hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"rlm-host/audit/{safe}"


# -- key files -----------------------------------------------------------------------------------

def private_key_path() -> Path:
    return signing_dir() / PRIVATE_NAME


def public_key_path() -> Path:
    """The public key that verifies this host's new logs (``rlm-host audit pubkey``)."""
    return signing_dir() / PUBLIC_NAME


def keygen(*, force: bool = False) -> Signer:
    """Make the host's signing key; an existing one is kept unless ``force`` (its public key stays).

    The private key is written 0600 to a temporary file and renamed into place, so a reader sees the
    old key or the new one, never half of one.
    """
    path = private_key_path()
    if path.exists() and not force:
        old = host_signer()
        raise ConfigError(f"a signing key already exists at {path} (key {old.key_id if old else '?'}); "
                          "`rlm-host audit keygen --force` makes a new one (the old public key is kept)")
    signer = Signer.generate()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    public = signer.verifier.line() + "\n"
    _write_atomic(path.parent / f"{signer.verifier.hash.hex()}.pub", public, 0o644)
    _write_atomic(path, signer.private_line() + "\n", 0o600)
    _write_atomic(public_key_path(), public, 0o644)
    return signer


def _write_atomic(path: Path, text: str, mode: int) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def host_signer() -> Signer | None:
    """This host's signing key, or None when there is none (then logs are chained with the HMAC only)."""
    path = private_key_path()
    if not path.exists():
        return None
    text = _read_small(path, "signing key")
    parts = text.strip().split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise ConfigError(f"the signing key {path} is not one `rlm-host audit keygen` wrote; make a new one with "
                          "`rlm-host audit keygen --force`")
    blob = _b64(parts[4], path)
    if len(blob) != 33 or blob[:1] != ALG_ED25519:
        raise ConfigError(f"the signing key {path} is not an Ed25519 key; `rlm-host audit keygen --force`")
    signer = Signer(Ed25519PrivateKey.from_private_bytes(blob[1:]), parts[2])
    if signer.verifier.hash.hex() != parts[3]:
        raise ConfigError(f"the signing key {path} does not match its own key id; `rlm-host audit keygen --force`")
    return signer


def parse_public(line: str, where: Path) -> Verifier:
    """A public key file's line as a ``Verifier``, or ``NoAuditKey`` saying what is wrong with it."""
    parts = line.strip().split("+", 2)
    blob = _b64(parts[2], where, NoAuditKey) if len(parts) == 3 else b""
    if len(blob) != 33 or blob[:1] != ALG_ED25519:
        raise NoAuditKey(f"cannot verify: {where} is not a public key (one line NAME+KEYHASH+BASE64, as "
                         "`rlm-host audit keygen` writes; `rlm-host audit pubkey` prints its path)")
    verifier = Verifier(parts[0], key_hash(parts[0], blob[1:]), Ed25519PublicKey.from_public_bytes(blob[1:]))
    if verifier.hash.hex() != parts[1]:
        raise NoAuditKey(f"cannot verify: the public key {where} does not match its own key id")
    return verifier


def load_verifiers(path: Path | None = None) -> dict[bytes, Verifier]:
    """The public keys in a ``.pub`` file, or in every ``*.pub`` of a folder (a key ring), by key hash.

    Without a path, this host's key ring (the current key and every one it replaced).
    """
    path = path or signing_dir()
    if path.is_dir():
        files = sorted(path.glob("*.pub"))
        if not files:
            raise NoAuditKey(f"cannot verify: no public key (*.pub) in {path}; give one with --pubkey KEY.pub")
    elif not path.exists():
        raise NoAuditKey(f"cannot verify: no public key at {path}; give the key that signed the log with --pubkey")
    else:
        files = [path]
    verifiers = [parse_public(_read_small(file, "public key", NoAuditKey), file) for file in files]
    return {v.hash: v for v in verifiers}


def _read_small(path: Path, what: str, error: type[ConfigError] = ConfigError) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise error(f"cannot read the {what} {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(f"the {what} {path} is not a regular file")
        data = file.read(KEY_FILE_MAX_BYTES + 1)
    if len(data) > KEY_FILE_MAX_BYTES:
        raise error(f"the {what} {path} is too big to be one")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise error(f"the {what} {path} is not text") from exc


def _b64(text: str, where: Path, error: type[ConfigError] = ConfigError) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise error(f"{where} is not a key (not base64)") from exc
