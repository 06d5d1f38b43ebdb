"""Every environment variable is read in settings.py, and each reader there treats an empty value as unset."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from rlm_host import settings

PACKAGE = Path(settings.__file__).parent


def _reads_environment(tree: ast.AST) -> list[int]:
    """Lines that touch ``os.environ`` or call ``os.getenv``/``getenv``."""
    names = {"environ", "environb", "getenv"}
    return [node.lineno for node in ast.walk(tree)
            if (isinstance(node, ast.Attribute) and node.attr in names)
            or (isinstance(node, ast.Name) and node.id in names)]


def test_only_settings_reads_the_environment() -> None:
    """No module of the package but settings.py reads an environment variable (STYLE: one place decides)."""
    offenders = {str(path.relative_to(PACKAGE)): lines for path in sorted(PACKAGE.rglob("*.py"))
                 if path.name != "settings.py" and (lines := _reads_environment(ast.parse(path.read_text())))}
    assert offenders == {}
    assert _reads_environment(ast.parse((PACKAGE / "settings.py").read_text()))  # the check can see a read


@pytest.mark.parametrize(("name", "reader"), [
    ("RLM_HOST_MODEL", settings.model_name), ("OPENAI_BASE_URL", settings.openai_base_url),
    ("OPENAI_API_KEY", settings.openai_api_key), ("RLM_HOST_PRICES", settings.prices_file),
    ("RLM_HOST_AUDIT_KEY_FILE", settings.audit_key_named)])
def test_empty_variable_means_unset(monkeypatch: pytest.MonkeyPatch, name: str, reader: object) -> None:
    """``VAR=`` (as a shell leaves it) reads as unset, and a value reads back as given."""
    monkeypatch.setenv(name, "")
    assert reader() is None  # type: ignore[operator]
    monkeypatch.setenv(name, "/x/y")
    assert str(reader()) == "/x/y"  # type: ignore[operator]


def test_state_places_follow_their_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The audit directory and key default under the state directory and each has its own override."""
    monkeypatch.delenv("RLM_HOST_AUDIT_DIR", raising=False)
    monkeypatch.delenv("RLM_HOST_AUDIT_KEY_FILE", raising=False)
    monkeypatch.setenv("RLM_HOST_STATE_DIR", str(tmp_path / "state"))
    assert settings.audit_dir() == tmp_path / "state" / "audit"
    assert settings.audit_key_path() == tmp_path / "state" / "audit.key"
    monkeypatch.setenv("RLM_HOST_AUDIT_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("RLM_HOST_AUDIT_KEY_FILE", str(tmp_path / "k"))
    assert (settings.audit_dir(), settings.audit_key_path()) == (tmp_path / "logs", tmp_path / "k")
    monkeypatch.setenv("RLM_HOST_DEBIAN_MIRROR", "")
    assert settings.debian_mirror() == settings.DEFAULT_DEBIAN_MIRROR
