"""The policy loader: shipped policies load; bad ones are refused by key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rlm_host.errors import PolicyError
from rlm_host.policy import available_policies, load_policy, policies_dir


def write_policy(tmp_path: Path, edit) -> Path:
    """A copy of the standard policy (and its seccomp profile) with ``edit`` applied."""
    raw = yaml.safe_load((policies_dir() / "standard.yaml").read_text())
    edit(raw)
    (tmp_path / "seccomp-standard.json").write_text((policies_dir() / "seccomp-standard.json").read_text())
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_shipped_policies_load() -> None:
    """standard (runc + seccomp) and strict (runsc) load with their digests."""
    assert available_policies() == ["standard", "strict"]
    standard, strict = load_policy("standard"), load_policy("strict")
    assert standard.runtime == "runc" and strict.runtime == "runsc"
    assert standard.seccomp_profile and '"io_uring_setup"' in standard.seccomp_profile
    assert len(standard.sha256) == 64 and standard.sha256 != strict.sha256
    assert strict.limits.memory_mb < standard.limits.memory_mb


def test_policy_digest_follows_content(tmp_path: Path) -> None:
    """The same content gives the same digest; a changed limit changes it."""
    same = load_policy(write_policy(tmp_path, lambda raw: None))
    assert same.sha256 == load_policy("standard").sha256
    changed = load_policy(write_policy(tmp_path, lambda raw: raw["limits"].update(pids=100)))
    assert changed.sha256 != same.sha256


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda raw: raw.update(colour="blue"), "unknown key 'colour'"),
        (lambda raw: raw["limits"].update(swap_mb=10), "unknown key 'limits.swap_mb'"),
        (lambda raw: raw["limits"].update(memory_mb=1), "'limits.memory_mb'"),
        (lambda raw: raw["limits"].update(cpus=0), "'limits.cpus'"),
        (lambda raw: raw["limits"].update(cell_timeout_s=-1), "'limits.cell_timeout_s'"),
        (lambda raw: raw["subcalls"].update(max_depth=99), "'subcalls.max_depth'"),
        (lambda raw: raw.update(user=0), "'user'"),
        (lambda raw: raw.update(runtime="kata"), "'runtime'"),
        (lambda raw: raw["limits"].pop("pids"), "missing key 'limits.pids'"),
        (lambda raw: raw.pop("seccomp"), "needs a 'seccomp' profile"),
        (lambda raw: raw.update(runtime="runsc") or raw.pop("seccomp"), "'runsc' needs a 'seccomp' profile"),
    ],
)
def test_bad_values_are_refused_by_name(tmp_path: Path, edit, needle: str) -> None:
    """Unknown keys, out-of-range and missing values are refused, naming the key."""
    with pytest.raises(PolicyError, match="custom.yaml") as info:
        load_policy(write_policy(tmp_path, edit))
    assert needle in str(info.value)


@pytest.mark.parametrize("key", ["network", "network_mode", "ports", "dns", "host_network"])
def test_networking_cannot_be_enabled(tmp_path: Path, key: str) -> None:
    """Any attempt to give the container a network is refused by name."""
    with pytest.raises(PolicyError) as info:
        load_policy(write_policy(tmp_path, lambda raw: raw.update({key: "bridge"})))
    assert f"'{key}'" in str(info.value) and "never get a network" in str(info.value)


@pytest.mark.parametrize("key", ["privileged", "cap_add", "devices", "volumes"])
def test_hardening_cannot_be_weakened(tmp_path: Path, key: str) -> None:
    """Keys that would weaken the hardening are refused by name."""
    with pytest.raises(PolicyError, match=f"'{key}'"):
        load_policy(write_policy(tmp_path, lambda raw: raw.update({key: True})))


def test_unknown_policy_and_missing_file() -> None:
    """An unknown name lists the shipped ones; a missing file says so."""
    with pytest.raises(PolicyError, match="use one of: standard, strict"):
        load_policy("lenient")
    with pytest.raises(PolicyError, match="not found"):
        load_policy("/nonexistent/policy.yaml")


def test_broken_yaml_and_seccomp(tmp_path: Path) -> None:
    """Invalid YAML and an unreadable seccomp profile are clear errors."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(bad)
    path = write_policy(tmp_path, lambda raw: raw.update(seccomp="missing.json"))
    with pytest.raises(PolicyError, match="seccomp profile"):
        load_policy(path)


def test_with_limits_validates() -> None:
    """Overriding a limit keeps the range checks."""
    policy = load_policy("standard")
    shorter = policy.with_limits(cell_timeout_s=2)
    assert shorter.limits.cell_timeout_s == 2 and shorter.seccomp_profile == policy.seccomp_profile
    assert shorter.sha256 != policy.sha256
    with pytest.raises(ValueError):
        policy.with_limits(cell_timeout_s=0)
    with pytest.raises(ValueError, match="gVisor's own threads"):
        load_policy("strict").with_limits(pids=64)


def test_a_policy_without_an_ingest_section_gets_the_defaults(tmp_path: Path) -> None:
    """A policy file written before the ingestion sandbox existed still loads, with conservative limits."""
    loaded = load_policy(str(write_policy(tmp_path, lambda raw: raw.pop("ingest"))))
    assert (loaded.ingest.memory_mb, loaded.ingest.timeout_s, loaded.ingest.max_text_mb) == (512, 45, 512)
    assert loaded.sha256 != load_policy("standard").sha256
