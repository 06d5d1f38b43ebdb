"""The command line: exec's JSON contract, doctor, and one clear line for every user error."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlm_host.audit import events, verify
from rlm_host.doctor import run_checks
from rlm_host.sandbox.docker_engine import docker_client
from rlm_host.policy import policies_dir
from rlm_host.settings import OWNER_LABEL, SESSION_LABEL, image_tag

pytestmark = pytest.mark.docker


def cli(*args: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlm_host", *args], input=stdin, capture_output=True,
                          text=True, timeout=180, env={**os.environ, **(env or {})})


def one_line_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode == 1, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_exec_prints_one_json_object(tmp_path: Path, docker_ready: str) -> None:
    """exec runs the file with documents and prints the result fields DESIGN.md names."""
    code = tmp_path / "cell.py"
    code.write_text("print(len(context), [d.name for d in documents])\n")
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("aaaa")
    b.write_text("bb")
    proc = cli("exec", str(code), "--context", str(a), "--context", str(b))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "ok" and out["stdout"] == "8 ['a.txt', 'b.txt']\n"
    assert {"status", "stdout", "stderr", "error", "duration_ms", "truncated"} <= set(out)
    assert len(out["policy_sha256"]) == 64


def test_exec_from_stdin_with_timeout(docker_ready: str) -> None:
    """'-' reads the cell from stdin; --timeout limits it; a timeout still exits 0."""
    proc = cli("exec", "-", "--timeout", "2", stdin="while True:\n    pass\n")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "timeout" and out["error"]["name"] == "KeyboardInterrupt"


def test_exec_strict_policy(docker_ready: str) -> None:
    """--policy strict runs the cell under gVisor."""
    proc = cli("exec", "-", "--policy", "strict", stdin="import os\nprint(os.uname().release)\n")
    out = json.loads(proc.stdout)
    assert out["status"] == "ok" and out["policy"] == "strict"
    assert out["stdout"].strip() == "4.4.0"  # what gVisor reports as its kernel


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["exec", "/nonexistent/cell.py"], "code file /nonexistent/cell.py not found"),
        (["exec", "-", "--policy", "lenient"], "unknown policy 'lenient'"),
        (["exec", "-", "--policy", "/nonexistent/p.yaml"], "policy file /nonexistent/p.yaml not found"),
        (["exec", "-", "--context", "/nonexistent/doc.txt"], "document /nonexistent/doc.txt not found"),
        (["exec", "-", "--timeout", "-1"], "--timeout must be positive"),
        (["run", "-q", "x", "--context", "README.md", "--base-url", "http://127.0.0.1:9/v1"], "no model: pass --model"),
        (["run", "-q", "x", "--context", "/nonexistent/doc.txt", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"],
         "document /nonexistent/doc.txt not found"),
    ],
)
def test_user_errors_are_one_line(args: list[str], needle: str) -> None:
    """Bad input gets one line saying what and how to fix it, and exit code 1."""
    one_line_error(cli(*args, stdin="print(1)\n"), needle)


def test_docker_unreachable_is_one_line() -> None:
    """With no Docker Engine, exec and doctor say so and how to fix it."""
    env = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    one_line_error(cli("exec", "-", stdin="1\n", env=env), "Docker Engine not reachable")
    doctor = cli("doctor", env=env)
    assert doctor.returncode == 1 and "dockerd" in doctor.stdout


def test_missing_image_is_one_line(tmp_path: Path, docker_ready: str) -> None:
    """A missing kernel image names the command that builds it; the line ends with the sealed log's path."""
    env = {"RLM_HOST_IMAGE": "rlm-host-kernel:does-not-exist", "RLM_HOST_AUDIT_DIR": str(tmp_path)}
    proc = cli("exec", "-", stdin="1\n", env=env)
    one_line_error(proc, "rlm-host image build")
    log = next(tmp_path.glob("*.jsonl"))
    assert proc.stderr.strip().endswith(f"(audit log: {log})")
    assert verify(log).status == "intact" and events(log)[-1]["reason"] == "exec_error"
    assert "ImageError" in next(e["error"] for e in events(log) if e["kind"] == "exec.error")


def test_debug_shows_the_traceback() -> None:
    """--debug turns the one-line error into the full traceback."""
    proc = cli("--debug", "exec", "/nonexistent/cell.py")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_doctor_reports_and_reaps(docker_ready: str) -> None:
    """doctor passes on this machine; --reap removes a crashed run's container, not live ones."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    orphan = docker_client().containers.create(
        image_tag(), command=["true"], network_mode="none",
        labels={SESSION_LABEL: "orphan-test", OWNER_LABEL: dead})
    live = docker_client().containers.create(
        image_tag(), command=["true"], network_mode="none",
        labels={SESSION_LABEL: "live-test", OWNER_LABEL: str(os.getpid())})
    try:
        proc = cli("doctor", "--reap")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "reaped 1 container" in proc.stdout and "kernel image" in proc.stdout
        ids = {c.id for c in docker_client().containers.list(all=True, filters={"label": SESSION_LABEL})}
        assert orphan.id not in ids and live.id in ids
    finally:
        for container in (orphan, live):
            with contextlib.suppress(Exception):  # already reaped
                container.remove(force=True)


def test_help_texts() -> None:
    """Every command documents itself."""
    for args in (["--help"], ["exec", "--help"], ["doctor", "--help"], ["image", "build", "--help"],
                 ["run", "--help"], ["audit", "verify", "--help"], ["local-lm", "serve", "--help"],
                 ["policy", "list", "--help"], ["policy", "show", "--help"]):
        proc = cli(*args)
        assert proc.returncode == 0 and "Usage" in proc.stdout, args
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == "0.1.0"


@pytest.mark.parametrize("args", [["--a\u202eb\x1b]0;T\x07"], ["\x1b[2Jcmd\x9b"],
                                  ["exec", "-", "--policy", "\x1b]0;T\x07[/]"]])
def test_usage_and_errors_with_hostile_values_are_one_visible_line(args: list[str]) -> None:
    """A usage error or our error quoting a hostile value is one line with the escapes shown, not raw."""
    proc = cli(*args, stdin="")
    assert proc.returncode in (1, 64) and proc.stdout == "", proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlm-host: error: "), proc.stderr
    assert "\x1b" not in proc.stderr and "\u202e" not in proc.stderr and "\x9b" not in proc.stderr
    assert "\\x1b" in proc.stderr


def cli_without_endpoint(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """A command run as a user with no endpoint configured (no OPENAI_* or RLM_HOST_MODEL in its environment)."""
    clean = {k: v for k, v in os.environ.items() if k not in {"OPENAI_API_KEY", "OPENAI_BASE_URL", "RLM_HOST_MODEL"}}
    return subprocess.run([sys.executable, "-m", "rlm_host", *args], capture_output=True, text=True, timeout=180,
                          env={**clean, **(env or {})}, cwd=cwd, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("command", "args", "env", "named"), [
    ("run", ["--model", "gpt-4o-mini"], {}, "--model gpt-4o-mini"),
    ("run", [], {"RLM_HOST_MODEL": "gpt-4o-mini"}, "RLM_HOST_MODEL gpt-4o-mini"),
    ("tui", ["--model", "gpt-4o-mini"], {}, "--model gpt-4o-mini"),
])
def test_a_model_without_an_endpoint_is_refused(tmp_path: Path, command: str, args: list[str], env: dict,
                                                named: str) -> None:
    """--model (or RLM_HOST_MODEL) with no endpoint never falls back to the embedded model: one line, how to fix."""
    proc = cli_without_endpoint(command, "-q", "x", "--context", "README.md", *args,
                                env={**env, "RLM_HOST_AUDIT_DIR": str(tmp_path)})
    one_line_error(proc, f"{named} needs an endpoint")
    hints = ("OPENAI_API_KEY", "--base-url", "OPENAI_BASE_URL", "embedded local model")
    assert all(hint in proc.stderr for hint in hints)
    assert "local-lm" not in proc.stderr and list(tmp_path.iterdir()) == []  # nothing started, nothing recorded


def test_policy_list_and_show_from_any_folder(tmp_path: Path) -> None:
    """`policy list` names the packaged policies; `policy show` prints the shipped YAML from any working directory."""
    listed = cli_without_endpoint("policy", "list", cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.split()[:2] == ["standard", "runc"], listed
    assert "strict" in listed.stdout and "seccomp-standard.json" in listed.stdout
    shown = cli_without_endpoint("policy", "show", "standard", cwd=tmp_path)
    assert shown.returncode == 0 and shown.stdout.startswith("# standard") and "memory_mb:" in shown.stdout
    bad = cli_without_endpoint("policy", "show", "lenient", cwd=tmp_path)
    one_line_error(bad, "no packaged policy or profile 'lenient'")


def test_a_copied_and_edited_policy_runs(tmp_path: Path, docker_ready: str) -> None:
    """`policy show standard > my.yaml`, edited, runs a cell from its own folder; a typo in it is named."""
    text = cli_without_endpoint("policy", "show", "standard").stdout
    (tmp_path / "my.yaml").write_text(text.replace("name: standard", "name: mine").replace("pids: 256", "pids: 200"))
    proc = cli_without_endpoint("exec", "-", "--policy", "my.yaml", cwd=tmp_path,
                                env={"RLM_HOST_AUDIT_DIR": str(tmp_path / "audit")})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["policy"] == "mine"
    (tmp_path / "typo.yaml").write_text(text.replace("memory_mb:", "memroy_mb:", 1))
    typo = cli_without_endpoint("exec", "-", "--policy", "typo.yaml", cwd=tmp_path)
    one_line_error(typo, "unknown key 'limits.memroy_mb' (did you mean 'limits.memory_mb'?)")
    assert "rlm-host policy show standard" in typo.stderr


def test_a_hostile_policy_key_is_shown_escaped(tmp_path: Path) -> None:
    """An unknown key carrying terminal escapes is named in one visible line, the escapes shown, not sent."""
    text = (policies_dir() / "standard.yaml").read_text()
    (tmp_path / "evil.yaml").write_text(text + '"\\e]0;PWNED\\a\\u202e[/]": 1\n')
    proc = cli_without_endpoint("exec", "-", "--policy", str(tmp_path / "evil.yaml"))
    one_line_error(proc, "unknown key")
    assert "\x1b" not in proc.stderr and "\u202e" not in proc.stderr and "\\x1b]0;PWNED" in proc.stderr
    assert cli_without_endpoint("policy", "show", "standard").returncode == 0


def test_doctor_prints_fixes_verbatim_at_any_width(docker_ready: str) -> None:
    """Each fix is one whole, unwrapped line (brackets kept), even in a 40-column terminal."""
    proc = cli_without_endpoint("doctor", env={"COLUMNS": "40"})
    fixes = [line for line in proc.stdout.splitlines() if line.startswith("fix (")]
    expected = {f"fix ({c.name}): {c.fix}" for c in run_checks() if c.fix and c.name != "leftovers"}
    assert expected <= set(fixes), (expected, proc.stdout)
    if importlib.util.find_spec("llama_cpp") is None:
        assert "fix (local model): pip install 'rlm-host[local]'" in fixes
    named = cli_without_endpoint("doctor", env={"RLM_HOST_MODEL": "gpt-4o-mini"})
    assert "fix (LM endpoint): unset RLM_HOST_MODEL" in named.stdout.splitlines()
