"""rlm_host.testing, the shipped scripted model: light to import, and the README's example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_scripted_model_imports_only_the_stdlib() -> None:
    """Importing rlm_host.testing, beyond the package's front door, loads only itself and stdlib modules."""
    probe = ("import sys, rlm_host; before = set(sys.modules); import rlm_host.testing; "
             "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] not in sys.stdlib_module_names))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "['rlm_host.testing']"


@pytest.mark.docker
def test_the_readme_example_runs(docker_ready: str) -> None:
    """The README's "Testing your code" example runs a real sandbox against ScriptedLM and its asserts hold."""
    section = README.read_text().split("### Testing your code against rlm-host", 1)[1]
    code = re.search(r"```python\n(.*?)\n```\n", section, re.DOTALL)
    assert code is not None
    exec(compile(code.group(1), "README.md", "exec"), {})
