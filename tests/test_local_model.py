"""End to end with the real embedded model: Qwen2.5-Coder 0.5B through the real sandbox."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from rlm_host import RLM
from rlm_host.rlm import local_lm
from rlm_host.errors import LocalModelError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import tasks  # bench/tasks.py: the one place for filler text

pytestmark = pytest.mark.docker

NEEDLE = "The access code for the east vault is 7391-QX."


def haystack(path: Path, depth: float = 2 / 3) -> Path:
    """About 8K tokens of filler (bench/tasks.py) with one needle sentence at ``depth``."""
    path.write_text(tasks.haystack(33_000, NEEDLE, depth))
    return path


def test_real_model_answers_from_the_document(tmp_path: Path, docker_ready: str) -> None:
    """The 0.5B model searches, reads with llm_query and answers with the code from the document."""
    doc = haystack(tmp_path / "minutes.txt")
    servers = local_lm.start_servers(quality=False)
    try:
        with RLM(local_lm.models_for(servers), generation=local_lm.GENERATION, max_iterations=6) as rlm:
            result = rlm.complete("What is the access code for the east vault?", [doc])
    finally:
        for server in servers.values():
            local_lm.stop(server)
    assert "7391-QX" in result.answer, result.trajectory
    assert not result.fallback and result.citations and result.citations[0].document == "minutes.txt"
    assert any(e["kind"] == "subcall" for e in result.events)
    assert result.comparison.input_tokens > 2000
    for server in servers.values():
        with pytest.raises(ProcessLookupError):
            os.kill(server.pid, 0)


def _ask(server: local_lm.Server, messages: list[dict[str, str]]) -> str:
    from openai import OpenAI

    with OpenAI(base_url=server.base_url, api_key="local", max_retries=0) as client:
        reply = client.chat.completions.create(model=server.model, messages=messages, max_tokens=8, temperature=0)
    return reply.choices[0].message.content or ""


def test_fixed_prefix_is_read_once_then_loaded_and_never_stale(tmp_path: Path) -> None:
    """The opening's state is computed on the first start, loaded on the next, and changes no answer.

    A prompt of its own (a nonce in it) gives this test a state file no other run has made; a changed
    prompt gets another file; a torn file is read again, not trusted.
    """
    import uuid

    model = local_lm.MODELS["0.5b"]
    path = local_lm.fetch(model)
    opening = [{"role": "system", "content": f"You answer in one word. Session {uuid.uuid4()}."}]
    question = [*opening, {"role": "user", "content": "What is the capital of France?"}]
    state = local_lm.prefix_state(model, opening, 8192)
    changed = [{"role": "system", "content": opening[0]["content"] + " "}]
    assert local_lm.prefix_state(model, changed, 8192) != state != local_lm.prefix_state(model, opening, 4096)

    def answer(prefix: list[dict[str, str]]) -> tuple[str, str]:
        server = local_lm.serve(model, path, prefix=prefix)
        try:
            return _ask(server, question), Path(server.log).read_text(errors="replace")
        finally:
            local_lm.stop(server)

    try:
        cold, log = answer([])
        assert "Paris" in cold and "fixed prefix" not in log
        first, log = answer(opening)
        assert "read the fixed prefix" in log and state.is_file() and first == cold
        second, log = answer(opening)
        assert "loaded the fixed prefix" in log and "prefix-match hit" in log and second == cold
        state.write_bytes(b"torn" * 100)
        third, log = answer(opening)
        assert "read the fixed prefix" in log and third == cold and state.stat().st_size > 400
    finally:
        state.unlink(missing_ok=True)
        state.with_suffix(".json").unlink(missing_ok=True)


def test_server_that_fails_reports_its_log(tmp_path: Path) -> None:
    """A server that cannot load its model is reported with the tail of its log."""
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not a GGUF file")
    model = local_lm.LocalModel("bogus", (), bogus.stat().st_size, "0" * 64)
    with pytest.raises(LocalModelError, match=r"exited with code .*log:"):
        local_lm.serve(model, bogus, timeout_s=60)


def test_cli_run_uses_the_local_model_without_an_endpoint(tmp_path: Path, docker_ready: str) -> None:
    """With no API key and no base URL, `rlm-host run` starts, uses and stops the embedded model."""
    import json
    import subprocess

    doc = haystack(tmp_path / "minutes.txt", depth=0.4)
    env = {k: v for k, v in os.environ.items() if k not in {"OPENAI_API_KEY", "OPENAI_BASE_URL"}}
    proc = subprocess.run([sys.executable, "-m", "rlm_host", "run", "-q", "What is the access code for the east vault?",
                           "--context", str(doc), "--max-iterations", "6", "--json"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert "7391-QX" in out["answer"]
    start = next(e for e in out["events"] if e["kind"] == "run.start")
    assert start["local_model"]["root"]["sha256"] == local_lm.MODELS["0.5b"].sha256 and start["quality"] is False
    assert {e["kind"] for e in out["events"]} >= {"document", "subcall", "answer"}


def test_kept_servers_serve_status_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`local-lm serve` keeps both servers, `status` lists them, `stop` ends them by pid."""
    import subprocess

    monkeypatch.setenv("RLM_HOST_STATE_DIR", str(tmp_path / "state"))

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "rlm_host", "local-lm", *args], capture_output=True,
                              text=True, timeout=300)

    served = cli("serve")
    try:
        assert served.returncode == 0, served.stderr
        assert "root: qwen2.5-coder-0.5b-instruct at http://127.0.0.1:" in served.stdout
        status = cli("status")
        assert status.returncode == 0 and status.stdout.count("pid") == 2
        assert local_lm.kept().keys() == {"root", "sub"}
        again = cli("serve")
        assert again.returncode == 1 and "already running" in again.stderr
        pids = [s.pid for s in local_lm.kept().values()]
    finally:
        stopped = cli("stop")
    assert stopped.returncode == 0 and "stopped 2" in stopped.stdout
    assert cli("status").returncode == 1
    assert not any(local_lm._alive(pid) for pid in pids)
