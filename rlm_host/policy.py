"""Security policies: the one place limits are set.

A policy is a packaged YAML file (``rlm-host policy list``; ``policies/`` in a checkout) or any
path, loaded into ``Policy``. Unknown keys are refused by name with the closest known key, every
number is range-checked, and there is no key that gives a container a network: asking for one is
refused by name. A relative ``seccomp`` path is read beside the policy file, else from the packaged
profiles, so a copy of ``standard.yaml`` (``rlm-host policy show standard > my.yaml``) works anywhere.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import reprlib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import regex
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from .errors import PolicyError

NETWORK_KEYS = frozenset(
    {"network", "network_mode", "networking", "net", "ports", "dns", "extra_hosts",
     "publish", "expose", "host_network"}
)
PRIVILEGE_KEYS = frozenset(
    {"privileged", "cap_add", "capabilities", "devices", "volumes", "pid_mode",
     "ipc_mode", "userns_mode", "security_opt", "docker_socket"}
)


# gVisor's sentry and gofer threads live in the container's pids cgroup (about 60 at start).
RUNSC_MIN_PIDS = 128
MAX_POLICY_CHARS = 64 * 1024
MAX_FLOW_DEPTH = 32
MAX_SECCOMP_BYTES = 1 << 20  # ours is about 20 KB; a bigger "profile" is a mistake (or /dev/zero)
# How an installed user finds the packaged files (``policies/`` exists only in a checkout).
MAX_NAMED = 5  # unknown keys named in the one line; the rest are counted
SEE_STANDARD = "see the keys with `rlm-host policy show standard`"
COPY_ONE = "copy one with `rlm-host policy show standard > my.yaml`"
_SHOWN = reprlib.Repr()  # a bad value quoted in one short line, however big (YAML aliases nest cheaply)
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother = 2, 60, 60


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    """Resource limits of one sandbox and of the cells run in it."""

    memory_mb: int = Field(ge=64, le=262144, description="Container memory; swap is set equal, so no swap.")
    cpus: float = Field(gt=0, le=64, description="CPU share, in cores.")
    pids: int = Field(ge=16, le=32768, description="Processes and threads in the container.")
    nofile: int = Field(ge=64, le=1048576, description="Open file descriptors per process.")
    fsize_mb: int = Field(ge=1, le=1048576, description="Largest file a process may write.")
    tmpfs_mb: int = Field(ge=1, le=65536, description="Size of the noexec scratch tmpfs at /tmp.")
    cell_timeout_s: float = Field(gt=0, le=86400, description="Wall-clock limit of one cell.")
    interrupt_grace_s: float = Field(gt=0, le=600, description="How long an interrupted cell may take to stop before "
                                                               "the container is killed.")
    session_lifetime_s: float = Field(gt=0, le=604800, description="Wall-clock limit of one session.")
    output_cap_bytes: int = Field(ge=256, le=67108864, description="Stdout+stderr kept per cell; the rest is cut with "
                                                                   "a marker.")
    start_timeout_s: float = Field(default=30, gt=0, le=600, description="How long a container and kernel may take to "
                                                                         "become ready.")


class SubcallBudget(_Strict):
    """The per-run budget of ``llm_query`` sub-calls, enforced by the RPC broker."""

    max_calls: int = Field(ge=0, le=100000, description="Sub-calls per run.")
    max_prompt_chars: int = Field(ge=1, le=10_000_000, description="Characters in one sub-call prompt.")
    max_total_tokens: int = Field(ge=1, le=1_000_000_000, description="Tokens over all sub-calls of a run.")
    max_cost_usd: float | None = Field(default=None, ge=0, le=100000, description="USD over a run; None for no cost "
                                                                                  "limit.")
    max_concurrency: int = Field(ge=1, le=256, description="Sub-calls in flight at once.")
    max_depth: int = Field(ge=1, le=8, description="Recursion depth; 1 means rlm_query falls back to llm_query.")
    max_frame_bytes: int = Field(ge=1024, le=268435456, description="Largest RPC frame the broker accepts.")


class IngestLimits(_Strict):
    """Limits of the ingestion sandbox, where documents are parsed into text (never on the host).

    Every field has a default (the strict policy's values), so a policy file written before the
    ingestion sandbox existed still loads.
    """

    memory_mb: int = Field(default=512, ge=64, le=65536, description="Address space of the process parsing one "
                                                                     "document.")
    cpus: float = Field(default=1.0, gt=0, le=64, description="CPU share of the ingestion container, in cores.")
    timeout_s: float = Field(default=45, ge=1, le=3600, description="Wall-clock (and CPU) time to parse one document.")
    max_text_mb: int = Field(default=512, ge=1, le=65536,
                             description="Largest text one document may become (the container's file size limit).")


class Checkpoints(_Strict):
    """How often the audit log's chain is signed, when the host has a signing key (``rlm-host audit keygen``).

    A checkpoint is written after the event that reaches either bound, and the seal is always signed;
    every field has a default, so a policy file written before checkpoints existed still loads.
    """

    every_events: int = Field(default=64, ge=1, le=1_000_000, description="Events between two signed checkpoints.")
    every_s: float = Field(default=10, gt=0, le=86400, description="Seconds after which the next event is followed "
                                                                   "by a checkpoint, however few events came.")


EgressAction = Literal["off", "redact", "refuse"]
MAX_PATTERN_CHARS = 256  # a user pattern longer than this is a program, not a pattern
MAX_PATTERNS = 32


class EgressPattern(_Strict):
    """A user-given regular expression whose matches may not leave the host in a sub-call prompt.

    Compiled once, when the policy loads, with the ``regex`` module (its matching takes a timeout, so a
    pattern that backtracks badly refuses the sub-call instead of stalling the broker).
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$",
                      description="Short name: the placeholder is [REDACTED:name] and the log counts it as regex:name.")
    pattern: str = Field(min_length=1, max_length=MAX_PATTERN_CHARS,
                         description="A regular expression (Python/`regex` syntax) matched anywhere in the prompt.")
    action: Literal["redact", "refuse"] = Field(default="redact", description="redact: replace each match by "
                                                "[REDACTED:name]; refuse: the sub-call is not sent.")
    _compiled: Any = PrivateAttr(default=None)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            compiled = regex.compile(value)
        except (regex.error, RecursionError, OverflowError) as exc:
            raise ValueError(f"not a regular expression ({exc}); fix the pattern (in YAML, quote it in single "
                             "quotes)") from None
        if compiled.fullmatch("") is not None:
            raise ValueError("the pattern matches the empty string, so it would match everywhere; make it need a "
                             "character")
        return value

    def model_post_init(self, _context: Any) -> None:
        self._compiled = regex.compile(self.pattern)

    @property
    def compiled(self) -> Any:
        """The compiled pattern (``regex.Pattern``), made once at load."""
        return self._compiled


class Egress(_Strict):
    """What may leave the host in a sub-call prompt (``llm_query``, ``llm_query_batched``, ``rlm_query``).

    Every field has a default (nothing screened), so a policy file written before this section existed
    still loads, with the same digest. See docs/egress.md.
    """

    email: EgressAction = Field(default="off", description="E-mail addresses: redacted as [EMAIL], or refused.")
    iban: EgressAction = Field(default="off", description="IBANs whose mod-97 checksum and country format hold "
                                                          "(python-stdnum): [IBAN], or refused.")
    card: EgressAction = Field(default="off", description="Payment card numbers (13-19 digits, Luhn-valid): [CARD], "
                                                          "or refused.")
    patterns: tuple[EgressPattern, ...] = Field(default=(), max_length=MAX_PATTERNS,
                                                description="User-given regular expressions, each redacted or refused.")

    @model_validator(mode="after")
    def _names_unique(self) -> Egress:
        names = [p.name for p in self.patterns]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"egress pattern name {twice[0]!r} is used twice; give each pattern its own name")
        return self


class Policy(_Strict):
    """A named set of isolation settings and limits.

    ``sha256`` identifies the effective policy (its settings and the seccomp
    profile's content) in the audit log.
    """

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    runtime: Literal["runc", "runsc"] = Field(description="runc with our hardening, or gVisor's runsc.")
    seccomp: str | None = Field(default=None, description="Seccomp profile file, relative to the policy file.")
    user: int = Field(default=1000, ge=1000, le=65533, description="Non-root uid and gid the kernel runs as.")
    audit_level: Literal["full", "redacted", "hashes"] = "full"
    limits: Limits
    subcalls: SubcallBudget
    ingest: IngestLimits = Field(default_factory=IngestLimits)
    checkpoints: Checkpoints = Field(default_factory=Checkpoints)
    egress: Egress = Field(default_factory=Egress, description="What may leave in a sub-call prompt.")
    seccomp_profile: str | None = Field(default=None, exclude=True, repr=False)
    sha256: str = Field(default="", exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse_dangerous_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key in NETWORK_KEYS:
                    raise ValueError(
                        f"'{key}': containers never get a network in rlm-host "
                        "(always --network none); remove the key"
                    )
                if key in PRIVILEGE_KEYS:
                    raise ValueError(f"'{key}': a policy cannot change this hardening; remove the key")
        return data

    @model_validator(mode="after")
    def _fits_runtime(self) -> Policy:
        if not self.seccomp:  # runsc too: without ours, Docker's default applies and under runsc no thread starts
            raise ValueError(f"runtime '{self.runtime}' needs a 'seccomp' profile (e.g. seccomp-standard.json)")
        if self.runtime == "runsc" and self.limits.pids < RUNSC_MIN_PIDS:
            raise ValueError(f"runtime 'runsc' needs limits.pids >= {RUNSC_MIN_PIDS}: gVisor's own "
                             f"threads count against it (got {self.limits.pids})")
        return self

    def with_limits(self, **changes: Any) -> Policy:
        """A copy with some limits changed, validated like the original."""
        return self._with("limits", changes)

    def with_subcalls(self, **changes: Any) -> Policy:
        """A copy with some sub-call budget fields changed, validated like the original."""
        return self._with("subcalls", changes)

    def with_ingest(self, **changes: Any) -> Policy:
        """A copy with some ingestion limits changed, validated like the original."""
        return self._with("ingest", changes)

    def with_egress(self, **changes: Any) -> Policy:
        """A copy with some egress rules changed, validated like the original."""
        return self._with("egress", changes)

    def _with(self, section: str, changes: dict[str, Any]) -> Policy:
        data = self.model_dump()
        data[section] = {**data[section], **changes}
        return _finish(Policy.model_validate(data), self.seccomp_profile)


def policies_dir() -> Path:
    """The directory of the policies shipped with rlm-host."""
    return Path(str(resources.files("rlm_host.policies")))


def available_policies() -> list[str]:
    return sorted(p.stem for p in policies_dir().glob("*.yaml"))


def load_policy(name_or_path: str | Path) -> Policy:
    """Load a shipped policy by name, or a policy file by path."""
    path = _resolve(str(name_or_path))
    try:
        raw = yaml.safe_load(_policy_text(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read policy {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy {path} is not valid YAML: {exc}".replace("\n", " ")) from exc
    except RecursionError:
        raise PolicyError(f"policy {path} nests too deeply to be a policy; {SEE_STANDARD}") from None
    if not isinstance(raw, dict):
        raise PolicyError(f"policy {path} must be a mapping of keys to values")
    return parse_policy(raw, base_dir=path.parent, source=str(path))


def _policy_text(path: Path) -> str:
    """The file's text, refused before YAML sees it when no policy could be that big or that nested
    (PyYAML takes seconds over a few KB of ``[[[[``, then overflows the stack)."""
    with path.open(encoding="utf-8") as file:
        text = file.read(MAX_POLICY_CHARS + 1)
    if len(text) > MAX_POLICY_CHARS:
        raise PolicyError(f"policy {path} is over {MAX_POLICY_CHARS // 1024} KiB; a policy is a few dozen "
                          f"lines ({SEE_STANDARD})")
    depth = deepest = 0
    for char in text:
        depth += (char in "[{") - (char in "]}")
        deepest = max(deepest, depth)
    if deepest > MAX_FLOW_DEPTH:
        raise PolicyError(f"policy {path} nests [ ] or {{ }} {deepest} deep (at most {MAX_FLOW_DEPTH}); "
                          f"{SEE_STANDARD}")
    return text


def parse_policy(raw: dict[str, Any], *, base_dir: Path, source: str = "policy") -> Policy:
    """Validate a policy mapping; read its seccomp profile; compute its digest."""
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(f"{source}: {_first_error(exc)}") from exc
    return _finish(policy, _read_seccomp(policy, base_dir, source))


def _finish(policy: Policy, profile: str | None) -> Policy:
    """Attach the seccomp profile's text and the digest of settings + profile."""
    dumped = policy.model_dump(mode="json")
    if policy.egress == Egress():  # a policy without egress rules keeps the digest it had before they existed
        del dumped["egress"]
    settings = json.dumps(dumped, sort_keys=True).encode()
    digest = hashlib.sha256(settings + (profile or "").encode()).hexdigest()
    return policy.model_copy(update={"seccomp_profile": profile, "sha256": digest})


def _resolve(name: str) -> Path:
    path = Path(name).expanduser()
    if path.suffix in {".yaml", ".yml"} or "/" in name:
        if not path.is_file():
            raise PolicyError(f"policy file {path} not found; give an existing file, or a packaged policy's name "
                              f"({', '.join(available_policies())}; {COPY_ONE})")
        return path
    shipped = policies_dir() / f"{name}.yaml"
    if not shipped.is_file():
        raise PolicyError(f"unknown policy '{name}'; use one of: {', '.join(available_policies())} "
                          f"or a path to a policy file ({COPY_ONE})")
    return shipped


def packaged_text(name: str) -> str:
    """The text of a packaged policy (``standard``) or profile (``seccomp-standard.json``), for ``policy show``."""
    names = {p.stem: p for p in policies_dir().glob("*.yaml")} | {p.name: p for p in policies_dir().glob("*.json")}
    path = names.get(name) or names.get(name.removesuffix(".yaml").removesuffix(".yml"))
    if path is None:
        raise PolicyError(f"no packaged policy or profile '{name}'; known: {', '.join(sorted(names))} "
                          "(`rlm-host policy list`)")
    return path.read_text(encoding="utf-8")


def seccomp_path(policy: Policy, base_dir: Path) -> Path:
    """Where a policy's profile is: as written (absolute, or beside the policy file), else the packaged
    profile of that name, so a copied ``standard.yaml`` still finds ``seccomp-standard.json``."""
    written = base_dir / Path(policy.seccomp or "").expanduser()
    packaged = policies_dir() / (policy.seccomp or "")
    if written.exists() or Path(policy.seccomp or "").is_absolute() or not packaged.is_file():
        return written
    return packaged


def _read_seccomp(policy: Policy, base_dir: Path, source: str) -> str | None:
    if not policy.seccomp:
        return None
    path = seccomp_path(policy, base_dir)
    try:
        if not path.is_file():
            raise PolicyError(f"{source}: seccomp profile {path} is not a file; name a JSON profile by a path "
                              f"relative to the policy file, an absolute path, or a packaged profile's name "
                              f"({', '.join(_packaged_profiles())})")
        with path.open(encoding="utf-8") as profile:
            text = profile.read(MAX_SECCOMP_BYTES + 1)
        if len(text) > MAX_SECCOMP_BYTES:
            raise PolicyError(f"{source}: seccomp profile {path} is over {MAX_SECCOMP_BYTES} bytes; "
                              "name the profile's JSON file")
        json.loads(text)
    except (OSError, ValueError, RecursionError) as exc:
        raise PolicyError(f"{source}: seccomp profile {path} is unreadable or not JSON: {exc}") from exc
    return text


def _packaged_profiles() -> list[str]:
    return sorted(p.name for p in policies_dir().glob("*.json"))


def _first_error(exc: ValidationError) -> str:
    """One line for the most useful error: unknown keys first (a typo also reads as a missing key)."""
    errors = exc.errors()
    unknown = [e["loc"] for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        return f"{_unknown_keys(unknown)}; rename or remove {'it' if len(unknown) == 1 else 'them'} ({SEE_STANDARD})"
    err = errors[0]
    where = _dotted(err["loc"]) or "policy"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"missing key '{where}'; add it ({SEE_STANDARD})"
    got = err.get("input")
    shown = "" if isinstance(got, dict) else f" (got {_SHOWN.repr(got)})"
    return f"'{where}': {msg}{shown}"


def _unknown_keys(locations: list[tuple]) -> str:
    """``unknown key 'limits.memroy_mb' (did you mean 'limits.memory_mb'?)``, for each one."""
    parts = []
    for loc in locations[:MAX_NAMED]:
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1])[:64], known, n=1, cutoff=0.6)
        hint = f" (did you mean '{_dotted((*loc[:-1], close[0]))}'?)" if close else ""
        parts.append(f"'{_SHOWN.repr(_dotted(loc))[1:-1]}'{hint}")
    more = f" and {len(locations) - MAX_NAMED} more" if len(locations) > MAX_NAMED else ""
    return f"unknown key{'s' if len(locations) > 1 else ''} {', '.join(parts)}{more}"


def _known_keys(parent: tuple) -> list[str]:
    """The keys a policy accepts at ``parent`` (``()`` for the top level, ``("limits",)`` ...)."""
    model: Any = Policy
    for name in parent:
        field = model.model_fields.get(str(name)) if isinstance(model, type) and issubclass(model, BaseModel) else None
        model = field.annotation if field is not None else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    return [name for name, field in model.model_fields.items() if not field.exclude]


def _dotted(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)
