"""The policy loader: shipped policies load; bad ones are refused by key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from rlm_host.errors import PolicyError
from rlm_host.policy import available_policies, load_policy, packaged_text, policies_dir


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
    with pytest.raises(PolicyError, match=re.escape("custom.yaml")) as info:
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


@pytest.mark.parametrize(("edit", "unknown", "meant"), [
    (lambda raw: raw["limits"].update(memroy_mb=raw["limits"].pop("memory_mb")),
     "limits.memroy_mb", "limits.memory_mb"),
    (lambda raw: raw["subcalls"].update(max_cals=raw["subcalls"].pop("max_calls")),
     "subcalls.max_cals", "subcalls.max_calls"),
    (lambda raw: raw["ingest"].update(timeout=60), "ingest.timeout", "ingest.timeout_s"),
    (lambda raw: raw.update(audit_levl=raw.pop("audit_level")), "audit_levl", "audit_level"),
    (lambda raw: raw.update(runtme=raw.pop("runtime")), "runtme", "runtime"),
])
def test_a_typo_is_named_as_unknown_with_the_closest_key(tmp_path: Path, edit, unknown: str, meant: str) -> None:
    """A misspelt key at any level is reported as unknown (not as the missing key it hides) with the fix."""
    with pytest.raises(PolicyError) as info:
        load_policy(write_policy(tmp_path, edit))
    message = str(info.value)
    assert f"unknown key '{unknown}' (did you mean '{meant}'?)" in message and "missing" not in message, message
    assert "rlm-host policy show standard" in message and "policies/" not in message


def test_every_unknown_key_is_named_once(tmp_path: Path) -> None:
    """Several unknown keys are all named in the one line; a key like no other gets no guess."""
    def edit(raw: dict) -> None:
        raw.update(colour="blue")
        raw["limits"].update(cpu=1)
    with pytest.raises(PolicyError) as info:
        load_policy(write_policy(tmp_path, edit))
    message = str(info.value)
    assert message.count("'colour'") == 1 and message.count("'limits.cpu'") == 1 and "unknown keys " in message
    assert "'limits.cpu' (did you mean 'limits.cpus'?)" in message
    assert "'colour' (did you mean" not in message and "\n" not in message


def test_a_copied_policy_finds_the_packaged_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy of standard.yaml elsewhere, loaded from another folder, reads the packaged profile: same digest."""
    copy = tmp_path / "mine" / "my.yaml"
    copy.parent.mkdir()
    copy.write_text((policies_dir() / "standard.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    assert load_policy(copy).sha256 == load_policy("standard").sha256
    monkeypatch.chdir("/")
    assert load_policy(str(copy)).seccomp_profile == load_policy("standard").seccomp_profile


def test_relative_paths_resolve_beside_the_policy_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative profile path is read from the policy file's folder, whatever the working directory,
    and a profile beside the file wins over the packaged one of the same name."""
    profile = json.loads((policies_dir() / "seccomp-standard.json").read_text())
    profile["comment"] = "my own"
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "mine.json").write_text(json.dumps(profile))
    (tmp_path / "seccomp-standard.json").write_text(json.dumps(profile))
    raw = yaml.safe_load((policies_dir() / "standard.yaml").read_text())
    (tmp_path / "sub.yaml").write_text(yaml.safe_dump({**raw, "seccomp": "profiles/mine.json"}))
    (tmp_path / "same.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir("/")
    for name in ("sub.yaml", "same.yaml"):
        loaded = load_policy(tmp_path / name)
        assert "my own" in loaded.seccomp_profile and loaded.sha256 != load_policy("standard").sha256


def test_a_missing_profile_says_where_it_looked(tmp_path: Path) -> None:
    """A profile that is nowhere names the path tried and the packaged profiles to choose from."""
    raw = yaml.safe_load((policies_dir() / "standard.yaml").read_text())
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({**raw, "seccomp": "nope.json"}))
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "p.yaml")
    message = str(info.value)
    assert str(tmp_path / "nope.json") in message and "seccomp-standard.json" in message


def test_packaged_text_and_messages_name_the_command() -> None:
    """`policy show` prints the shipped YAML; messages point at the command an installed user has."""
    assert packaged_text("standard") == (policies_dir() / "standard.yaml").read_text()
    assert packaged_text("strict.yaml").startswith("# strict")
    assert json.loads(packaged_text("seccomp-standard.json"))["defaultAction"]
    for bad in ("lenient", "/nonexistent/p.yaml"):
        with pytest.raises(PolicyError) as info:
            load_policy(bad)
        message = str(info.value)
        assert "rlm-host policy show standard > my.yaml" in message and "policies/" not in message
    with pytest.raises(PolicyError, match="rlm-host policy list"):
        packaged_text("../cli")
