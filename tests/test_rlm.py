"""Full runs through the real sandbox, driven by the scripted OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rlm_host import audit
from rlm_host.errors import ConfigError, LMError
from rlm_host.rlm.lm import PriceTable
from rlm_host.rlm.loop import RLM
from rlm_host.testing import ScriptedLM

from helpers import cell

pytestmark = pytest.mark.docker

DOC = Path(__file__).resolve().parent.parent / "examples" / "clauses.txt"
FEE_OFFSET = DOC.read_text().find("termination fee")


@pytest.fixture
def lm() -> Iterator[ScriptedLM]:
    with ScriptedLM() as server:
        server.rule("sub", lambda messages: "EUR 48,500")
        yield server


def make_rlm(lm: ScriptedLM, policy: str = "standard", **kwargs) -> RLM:
    from rlm_host.rlm.lm import LMClient
    from rlm_host.rlm.config import Models

    prices = kwargs.pop("prices", PriceTable({"root": (1.0, 1.0), "sub": (0.5, 0.5)}))
    client = LMClient(base_url=lm.base_url, backoff_s=0.01, max_retries=kwargs.pop("max_retries", 3), prices=prices)
    return RLM(Models("root", sub_model="sub", lm=client, prices=prices), policy=policy, **kwargs)


FULL_RUN = [
    "Let me look first.\n" + cell("print(len(context), [d.name for d in documents])\n"
                                  "hits = search(r'termination fee')\nprint(hits[:2])"),
    cell("reply = llm_query('What is the fee?', peek(hits[0].start - 100, hits[0].end + 100))\n"
         "parts = llm_query_batched([('Who pays?', peek(0, 200)), ('When?', peek(200, 400))])\n"
         "print(reply, parts)"),
    cell("answer(reply, citations=[hits[0]])"),
]


@pytest.mark.parametrize("policy", ["standard", "strict"])
def test_full_run_with_citations(lm: ScriptedLM, policy: str) -> None:
    """peek, search, llm_query and llm_query_batched, then answer with a citation, under both runtimes."""
    lm.script("root", FULL_RUN)
    result = make_rlm(lm, policy).complete("What is the termination fee?", [DOC])
    assert result.answer == "EUR 48,500" and result.stopped == "answer" and not result.fallback
    assert result.iterations == 3
    assert result.citations[0].start == FEE_OFFSET and result.citations[0].document == "clauses.txt"
    assert "31022 ['clauses.txt']" in result.trajectory[0].output
    assert "EUR 48,500 ['EUR 48,500', 'EUR 48,500']" in result.trajectory[1].output
    usage = {u.model: u for u in result.usage}
    assert usage["root"].calls == 3 and usage["sub"].calls == 3 and result.subcalls["calls"] == 3
    sub_prompts = [r for r in lm.requests if r["model"] == "sub"]
    assert any("Clause 121 (termination fee)" in r["messages"][-1]["content"] for r in sub_prompts)
    assert result.comparison.input_tokens > result.comparison.rlm_tokens > 0
    assert 0 < result.comparison.saved_pct < 100
    assert len([e for e in result.events if e["kind"] == "subcall"]) == 3


def test_quotes_are_the_documents_text(lm: ScriptedLM, tmp_path: Path) -> None:
    """Each citation's quote, document and page are the host's, from the files: the kernel's copy is not asked."""
    annex = tmp_path / "annex.txt"
    annex.write_text("Annex — Zürich 東京: the deposit is EUR 2,000.\n", encoding="utf-8")
    context = DOC.read_text(encoding="utf-8") + "\n\n" + annex.read_text(encoding="utf-8")
    deposit = context.index("deposit is")
    lm.script("root", [cell("hits = search('termination fee')[:1] + search('deposit', document='annex.txt')\n"
                            "context_copy = answer.__self__.context = 'X' * len(context)\n"  # the kernel's copy, forged
                            f"answer('EUR 48,500', citations=[hits[0], hits[1], ({FEE_OFFSET - 400}, "
                            f"{FEE_OFFSET + 100}), "
                            f"({deposit - 60}, {deposit + 7}), 'annex.txt'])")])
    result = make_rlm(lm).complete("What is the termination fee?", [DOC, annex])
    assert result.stopped == "answer", result.trajectory[0].output
    fee, dep, long, across, named = result.citations
    assert (fee.text, fee.document, fee.start) == ("termination fee", "clauses.txt", FEE_OFFSET)
    assert (dep.text, dep.document) == ("deposit", "annex.txt")
    assert long.text == context[FEE_OFFSET - 400:FEE_OFFSET - 100] and long.document == "clauses.txt"
    assert across.text == context[deposit - 60:deposit + 7] and "\n\nAnnex" in across.text
    assert (named.document, named.text) == ("annex.txt", None)
    end = next(e for e in audit.events(Path(result.audit_log)) if e["kind"] == "run.end")
    assert end["evidence"] == ["termination fee", "deposit", long.text, across.text, ""]
    assert len([e for e in result.events if e["kind"] == "cell"]) == 1  # no quoting cell ran


def test_usage_and_cost_follow_the_server(lm: ScriptedLM) -> None:
    """Per-model tokens are the server's reported usage; cost is tokens times the price table."""
    lm.script("root", FULL_RUN)
    lm.usage_for("root", prompt_tokens=1000, completion_tokens=100)
    lm.usage_for("sub", prompt_tokens=200, completion_tokens=20)
    result = make_rlm(lm).complete("What is the termination fee?", [DOC])
    usage = {u.model: u for u in result.usage}
    assert (usage["root"].prompt_tokens, usage["root"].completion_tokens) == (3000, 300)
    assert (usage["sub"].prompt_tokens, usage["sub"].completion_tokens) == (600, 60)
    assert usage["root"].cost_usd == pytest.approx(3300 * 1.0 / 1e6)
    assert usage["sub"].cost_usd == pytest.approx(660 * 0.5 / 1e6)
    assert result.cost_usd == pytest.approx(3300e-6 + 330e-6)
    assert result.comparison.rlm_tokens == 3960


def test_never_answering_hits_max_iterations(lm: ScriptedLM) -> None:
    """A model that never answers is stopped at max_iterations and asked once for its best answer."""
    lm.script("root", [cell(f"print({i})") for i in range(3)] + ["Best guess: EUR 48,500 (offset 30890)."])
    result = make_rlm(lm, max_iterations=3).complete("What is the fee?", [DOC])
    assert result.stopped == "max_iterations" and result.fallback and result.iterations == 3
    assert result.answer == "Best guess: EUR 48,500 (offset 30890)."
    assert "out of turns" in lm.requests[-1]["messages"][-1]["content"]


def test_syntax_error_no_code_and_repeats_are_survived(lm: ScriptedLM) -> None:
    """A syntax error, a reply without code, an unclosed block and a repeated cell each get a nudge."""
    lm.script("root", [
        cell("print(('unbalanced'"),
        "I believe the answer is in clause 121.",
        "```python\nprint('cut off",
        cell("x = 1\nprint(x)"),
        cell("x = 1\nprint(x)"),
        cell("answer('done')"),
    ])
    result = make_rlm(lm).complete("What is the fee?", [DOC])
    assert result.answer == "done" and result.stopped == "answer"
    statuses = [s.status for s in result.trajectory]
    assert statuses == ["error", "no_code", "unclosed", "ok", "repeated", "ok"]
    assert "SyntaxError" in result.trajectory[0].output
    sent = [r["messages"][-1]["content"] for r in lm.requests if r["model"] == "root"]
    assert "no ```python code block" in sent[2] and "cut off" in sent[3] and "already ran exactly" in sent[5]


def test_next_step_hints_follow_the_question(lm: ScriptedLM) -> None:
    """An empty search is answered with a word of the question to try; a counting question whose search shows
    several hits is steered off search (capped at max_results) to counting in Python, and the suggested cell
    runs as written; with one hit shown it takes the read-the-hit path."""
    lm.script("root", [cell('print(search(r"zzqx-nowhere"))'), cell('print(search(r"clause")[:1])'),
                       cell('hits = search(r"clause")\nprint(hits[:5])'),
                       cell('import re\nn = len(re.findall(r"clause", context, re.IGNORECASE))\nprint(n)'),
                       cell("answer(str(n))")])
    result = make_rlm(lm).complete("How many times does the Agreement mention a clause?", [DOC])
    sent = [r["messages"][-1]["content"] for r in lm.requests if r["model"] == "root"]
    assert "Nothing found" in sent[1] and 'search(r"Agreement")' in sent[1]
    assert "Step 2" in sent[2] and "cannot count" not in sent[2]
    assert "cannot count" in sent[3] and 're.findall(r"clause", context, re.IGNORECASE)' in sent[3]
    assert result.answer == str(DOC.read_text().lower().count("clause")) != "0"


def test_rebinding_context_is_refused(lm: ScriptedLM) -> None:
    """`context = ...` is refused with a clear error; context stays whole and the run goes on."""
    lm.script("root", [
        cell("context = context[:10]"),
        cell("globals()['peek'] = None"),
        cell("print(len(context), peek(0, 6))"),
        cell("answer('kept')"),
    ])
    result = make_rlm(lm).complete("What is the fee?", [DOC])
    assert "'context' is provided by rlm-host and cannot be rebound" in result.trajectory[0].output
    assert "'peek' is provided by rlm-host" in result.trajectory[1].output
    assert result.trajectory[2].output.startswith(f"{len(DOC.read_text())} MASTER")
    assert [e["kind"] for e in result.events].count("kernel.rebind_refused") == 1
    assert result.answer == "kept"


def test_final_and_final_var_lines(lm: ScriptedLM) -> None:
    """Reference-style FINAL_VAR(name) in the reply's text ends the run with that variable's value."""
    lm.script("root", [cell("fee = 'EUR ' + '48,500'"), "FINAL_VAR(fee)"])
    result = make_rlm(lm).complete("What is the fee?", [DOC])
    assert result.stopped == "final" and result.answer == "EUR 48,500"
    lm.script("root", ["FINAL(EUR 48,500)"])
    assert make_rlm(lm).complete("What is the fee?", "a short text context").answer == "EUR 48,500"


@pytest.mark.parametrize(
    ("budget", "code", "needle"),
    [
        ({"max_calls": 1}, "llm_query('a', 'x'); llm_query('b', 'y')", "sub-call budget exhausted: 1 of 1 used"),
        ({"max_prompt_chars": 50}, "llm_query('q', context[:5000])", "exceeds the limit of 50"),
        ({"max_total_tokens": 10}, "llm_query('q', context[:800]); llm_query('q', 'x')", "token budget exhausted"),
        ({"max_cost_usd": 1e-9}, "llm_query('q', context[:800]); llm_query('q', 'x')", "cost budget exhausted"),
    ],
    ids=["count", "size", "tokens", "cost"],
)
def test_budgets_refuse_in_the_cell(lm: ScriptedLM, budget: dict, code: str, needle: str) -> None:
    """Past a budget the cell gets a readable SubcallError; the run continues to an answer."""
    from rlm_host.policy import load_policy

    lm.script("root", [cell(code), cell("answer('stopped by budget')")])
    policy = load_policy("standard").with_subcalls(**budget)
    result = make_rlm(lm, policy=policy).complete("What is the fee?", [DOC])
    assert "SubcallError" in result.trajectory[0].output and needle in result.trajectory[0].output
    assert any(e["kind"] == "subcall.denied" for e in result.events)
    assert result.answer == "stopped by budget"


def test_unknown_price_with_cost_budget_refuses_to_start(lm: ScriptedLM) -> None:
    """A USD budget with a sub-model of unknown price is refused before anything starts."""
    from rlm_host.policy import load_policy

    policy = load_policy("standard").with_subcalls(max_cost_usd=1.0)
    with pytest.raises(ConfigError, match="price of model 'sub' is unknown"):
        make_rlm(lm, policy=policy, prices=PriceTable({}))


def test_depth_two_starts_a_child_sandbox(lm: ScriptedLM) -> None:
    """rlm_query at max_depth=2 runs a child RLM in its own sandbox; deeper falls back to llm_query."""
    lm.script("root", [
        cell("print(rlm_query('What is the fee?', context[-400:]))"),
        cell("print(rlm_query('deeper?', context[-100:]))"),  # the child, at depth 2
        cell("answer('child found EUR 48,500')"),
        cell("answer('parent: EUR 48,500')"),
    ])
    result = make_rlm(lm, max_depth=2).complete("What is the fee?", [DOC])
    assert result.answer == "parent: EUR 48,500"
    assert "child found EUR 48,500" in result.trajectory[0].output
    starts = [e for e in result.events if e["kind"] == "sandbox.start"]
    assert len({e["session"] for e in starts}) == 2
    assert [e["kind"] for e in result.events].count("subcall.child_rlm") == 1
    assert [e["kind"] for e in result.events].count("subcall.depth_fallback") == 1
    from rlm_host.audit import verify

    assert verify(Path(result.audit_log)).status == "intact"  # the child's events are in the parent's chain


def test_the_controller_gets_every_sandbox_from_its_factory(lm: ScriptedLM) -> None:
    """RLM(sandbox_factory=...) decides where the root and each child run: here every session runs under
    strict (gVisor) although the RLM's policy is standard, and the run still answers and verifies."""
    from rlm_host.audit import verify
    from rlm_host.policy import load_policy
    from rlm_host.sandbox import DockerSandbox

    started = []

    def on_gvisor(policy, documents=(), *, on_event=None):  # a backend choice the controller does not see
        started.append((policy.name, [d.name for d in documents]))
        return DockerSandbox.start(load_policy("strict"), documents, on_event=on_event)

    lm.script("root", [cell("print(rlm_query('What is the fee?', context[-400:]))"),
                       cell("answer('child: EUR 48,500')"), cell("answer('parent: EUR 48,500')")])
    result = make_rlm(lm, max_depth=2, sandbox_factory=on_gvisor).complete("What is the fee?", [DOC])
    assert result.answer == "parent: EUR 48,500" and "child: EUR 48,500" in result.trajectory[0].output
    assert started == [("standard", ["clauses.txt"]), ("standard", ["context.txt"])]
    assert {e["runtime"] for e in result.events if e["kind"] == "sandbox.start"} == {"runsc"}
    assert verify(Path(result.audit_log)).status == "intact"


def test_depth_one_falls_back_to_llm_query(lm: ScriptedLM) -> None:
    """With the default depth 1, rlm_query is an llm_query (no second sandbox)."""
    lm.script("root", [cell("print(rlm_query('What is the fee?', context[-400:]))"), cell("answer('x')")])
    result = make_rlm(lm).complete("What is the fee?", [DOC])
    assert "EUR 48,500" in result.trajectory[0].output
    assert len({e["session"] for e in result.events if e["kind"] == "sandbox.start"}) == 1


def test_rate_limits_and_server_errors_are_retried(lm: ScriptedLM) -> None:
    """429 and 500 answers are retried and the run completes; retries are recorded."""
    lm.script("root", [cell("answer(llm_query('q', 'x'))")])
    lm.fail(429, times=2, model="root", retry_after=0.05)
    lm.fail(500, times=1, model="sub")
    result = make_rlm(lm).complete("What is the fee?", [DOC])
    assert result.answer == "EUR 48,500"
    root = [e for e in result.events if e["kind"] == "root"]
    sub = [e for e in result.events if e["kind"] == "subcall"]
    assert root[0]["retries"] == 2 and sub[0]["retries"] == 1


def test_root_failure_after_retries_is_clean(lm: ScriptedLM) -> None:
    """When the root model keeps failing, LMError says so and no container is left."""
    lm.fail(500, times=100, model="root")
    with pytest.raises(LMError, match="500"):
        make_rlm(lm, max_retries=2).complete("What is the fee?", [DOC])


HOSTILE = r'''
import json, socket, struct
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect("/session/rpc.sock")
    s.settimeout(20)
    return s
def reply(s):
    head = s.recv(4, socket.MSG_WAITALL)
    if len(head) < 4:
        return "closed"
    body = s.recv(struct.unpack(">I", head)[0], socket.MSG_WAITALL)
    return json.loads(body)["error"]["code"]
def frame(obj):
    body = json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body
out = {}
s = conn(); s.sendall(struct.pack(">I", 2**31)); out["oversized"] = reply(s)
out["after_oversized"] = reply(s); s.close()
s = conn(); s.sendall(struct.pack(">I", 50) + b'{"id": 1'); s.close()
s = conn()
s.sendall(struct.pack(">I", 8) + b"{not js}"); out["invalid_json"] = reply(s)
s.sendall(frame({"id": 2, "op": "llm_query", "question": 42})); out["wrong_types"] = reply(s)
s.sendall(frame({"id": 3, "op": "exec", "code": "import os"})); out["unknown_op"] = reply(s)
s.sendall(frame({"id": 4, "op": "llm_query", "question": "q", "session": "other"})); out["other_session"] = reply(s)
s.sendall(b"".join(frame({"id": 10 + i, "op": "answer", "text": 5}) for i in range(1000)))
out["burst"] = sorted(set(reply(s) for _ in range(1000)))
s.close()
print(json.dumps(out, sort_keys=True))
'''


def test_hostile_frames_from_inside_the_sandbox(lm: ScriptedLM) -> None:
    """Oversized, truncated, invalid, mistyped, unknown and burst frames are refused; the run goes on."""
    lm.script("root", [cell(HOSTILE), cell("print(llm_query('still there?', 'x'))"), cell("answer('alive')")])
    result = make_rlm(lm).complete("What is the fee?", [DOC])
    assert result.trajectory[0].status == "ok", result.trajectory[0].output
    assert result.trajectory[0].output.strip() == (
        '{"after_oversized": "closed", "burst": ["bad_request"], "invalid_json": "bad_json", '
        '"other_session": "bad_request", "oversized": "frame_too_large", "unknown_op": "unknown_op", '
        '"wrong_types": "bad_request"}')
    assert result.trajectory[1].output.strip() == "EUR 48,500"
    rejected = [e["code"] for e in result.events if e["kind"] == "rpc.frame_rejected"]
    assert {"frame_too_large", "truncated", "bad_json", "bad_request", "unknown_op"} <= set(rejected)
    assert len(rejected) >= 1000 + 5 and result.answer == "alive"


def test_show_vars_and_helpers_in_the_kernel(lm: ScriptedLM) -> None:
    """SHOW_VARS lists the model's variables (not the helpers or modules); grep is search; pages are None for
    text; re is there without an import."""
    lm.script("root", [cell("notes = ['a', 'b']\nprint(SHOW_VARS())\nprint(grep('Clause 12[01]')[0].page)\n"
                            "print(len(re.findall('Clause', context)))"),
                       cell("answer('ok')")])
    result = make_rlm(lm).complete("What is the fee?", [DOC])
    assert result.trajectory[0].output.splitlines() == ["{'notes': 'list, len 2'}", "None",
                                                        str(DOC.read_text().count("Clause"))]


def test_cli_run_prints_the_result(lm: ScriptedLM, tmp_path: Path) -> None:
    """`rlm-host run --json` prints the whole result; the text form shows answer, citations and tokens."""
    import json
    import os
    import subprocess
    import sys

    def run(*extra: str) -> subprocess.CompletedProcess:
        args = [sys.executable, "-m", "rlm_host", "run", "-q", "What is the termination fee?", "--context",
                str(DOC), "--base-url", lm.base_url, "--model", "root", "--sub-model", "sub", *extra]
        return subprocess.run(args, capture_output=True, text=True, timeout=120, env=os.environ)

    lm.script("root", FULL_RUN)
    proc = run("--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["answer"] == "EUR 48,500" and out["citations"][0]["text"] == "termination fee"
    assert out["comparison"]["saved_pct"] > 0 and out["stopped"] == "answer"
    lm.script("root", FULL_RUN)
    text = run().stdout
    assert text.startswith("Answer\nEUR 48,500") and "[1] clauses.txt:" in text and "whole input in one prompt" in text


def test_cli_lm_timeout_reaches_the_client(lm: ScriptedLM) -> None:
    """`--lm-timeout 1` against a server answering in 3 s: one line naming the timeout, exit 1."""
    import os
    import subprocess
    import sys

    lm.latency_s = 3.0
    lm.script("root", FULL_RUN)
    args = [sys.executable, "-m", "rlm_host", "run", "-q", "What is the termination fee?", "--context", str(DOC),
            "--base-url", lm.base_url, "--model", "root", "--lm-timeout", "1"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, env=os.environ, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1 and "no reply within 1 s" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_open_rlm_chooses_the_endpoint_the_environment_names(lm: ScriptedLM, monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    """open_rlm (the API's door, and the CLI's) runs on the endpoint OPENAI_BASE_URL and RLM_HOST_MODEL name."""
    from rlm_host import open_rlm

    monkeypatch.setenv("OPENAI_BASE_URL", lm.base_url)
    monkeypatch.setenv("RLM_HOST_MODEL", "root")
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    lm.script("root", [cell("answer('EUR 48,500')")])
    with open_rlm(audit_dir=tmp_path) as rlm:
        result = rlm.complete("What is the fee?", [DOC])
    assert result.answer == "EUR 48,500" and {u.model for u in result.usage} == {"root"}


def test_open_rlm_refuses_a_model_with_no_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model named with no endpoint to serve it is an error saying how to configure one, before anything starts."""
    from rlm_host import open_rlm

    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "RLM_HOST_MODEL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="needs an endpoint and none is configured"), open_rlm(model="gpt-4o-mini"):
        pass


EGRESS_SECRETS = ["jane.doe@example.com", "DE89 3704 0044 0532 0130 00", "4111 1111 1111 1111", "EMP-123456"]
EGRESS_RUN = [
    cell("i = context.find('Mail')\nreply = llm_query('Who pays?', peek(i, context.find('.\\n', i) + 1))\n"
         "print(reply)"),
    cell("j = context.find('Staff')\ntry:\n    llm_query('Whose?', peek(j, j + 40))\n"
         "except Exception as exc:\n    print(type(exc).__name__, str(exc)[:120])"),
    cell("answer('paid by card')"),
]


def test_egress_rules_in_a_real_run(lm: ScriptedLM, tmp_path: Path) -> None:
    """A cell's llm_query with an e-mail, an IBAN and a card: the model gets placeholders, the log counts
    without values; a refused llm_query is an error in the cell and the run goes on to its answer."""
    seen: list[str] = []
    lm.rule("sub", lambda messages: seen.append(messages[-1]["content"]) or "the tenant")
    doc = tmp_path / "payment.txt"
    doc.write_text(DOC.read_text()[:3000] + "\nMail jane.doe@example.com, pay DE89 3704 0044 0532 0130 00 with "
                   "card 4111 1111 1111 1111.\nStaff EMP-123456 approved.\n")
    policy = audit_policy(tmp_path, "standard", patterns=[{"name": "staff", "pattern": r"EMP-\d{6}",
                                                           "action": "refuse"}])
    lm.script("root", EGRESS_RUN)
    result = make_rlm(lm, policy, audit_dir=tmp_path / "logs").complete("Who pays?", [doc])
    assert result.answer == "paid by card" and result.stopped == "answer"
    assert seen == ["Who pays?\n\nMail [EMAIL], pay [IBAN] with card [CARD]."]
    assert "SubcallError llm_query refused: the policy's egress rule 'regex:staff'" in result.trajectory[1].output
    log = Path(result.audit_log)
    text = log.read_text()
    assert not any(secret in text for secret in EGRESS_SECRETS)
    records = list(audit.events(log))
    [sent] = [e for e in records if e["kind"] == "subcall"]
    assert sent["prompt"] == seen[0] and sent["redacted"] == {"email": 1, "iban": 1, "card": 1}
    assert sent["endpoint"] == lm.base_url
    [refused] = [e for e in records if e["kind"] == "subcall.egress_refused"]
    assert refused["refused_by"] == "regex:staff" and refused["found"] == {"regex:staff": 1}


def audit_policy(tmp_path: Path, name: str, **egress: object) -> Path:
    """A copy of a packaged policy with some egress rules changed, written beside the test's files."""
    import yaml

    from rlm_host.policy import policies_dir

    raw = yaml.safe_load((policies_dir() / f"{name}.yaml").read_text())
    raw["egress"] = {**raw["egress"], **egress}
    path = tmp_path / f"{name}-egress.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
