"""The RLM loop: a root model writes code, the sandbox runs it, sub-calls come back over RPC.

``RLM(...).complete(query, context)`` starts a sandbox with the documents, an RPC
broker on its session socket and the root conversation, then iterates: the
root model's reply is parsed for a code block, the block runs in the kernel,
and the (truncated) output goes back to the root model, until ``answer(...)``
is called in the kernel, a ``FINAL(...)`` line is written, or a limit is hit;
then one last call asks for the best answer from what was found.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .audit import AuditError, AuditLog, seal_reason
from .errors import ConfigError
from .events import EventHook, Recorder
from .lm import Completion, LMClient, PriceTable
from .parsing import code_blocks, final_answer, same_code, unclosed_block
from .policy import Policy, load_policy
from .results import Citation, Comparison, ExecutionResult, ModelUsage, RLMResult, Step
from .rpc import Broker, Budget, Evidence, Subcalls
from .documents import Ingested, ingest, stage_text
from .sandbox import DockerSandbox, StagedDocument
from .settings import LM_TIMEOUT_S, __version__
from .sandbox.docker_sandbox import sandbox_uid

CHARS_PER_TOKEN = 4  # the documented estimate when no tokenizer is at hand
DESCRIBE_CELL = "import rlm_kernel.documents as _d; print(_d.describe(context, documents)); del _d"
NUDGE_NO_CODE = ("Your reply had no ```python code block. Reply with exactly one ```python block "
                 "that makes progress, or call answer(...) in one.")
NUDGE_UNCLOSED = ("Your code block was cut off before its closing ```. Write a shorter cell in one "
                  "complete ```python block.")
NUDGE_REPEAT = ("You already ran exactly this code; its output is above. Do something different, "
                "or call answer(...) with what you found.")
LAST_CALL = ("You have run out of turns. From what you found so far, write your best final answer now, "
             "as plain text, with the offsets or document names of your evidence. Do not write code.")


def example_turns() -> list[dict[str, str]]:
    """A worked example as earlier turns: small models copy a conversation better than a description."""
    text = resources.files("rlm_host").joinpath("prompts/rlm_example.json").read_text(encoding="utf-8")
    return json.loads(text)


def default_system_prompt() -> str:
    """The root model's instructions, from ``rlm_host/prompts/rlm_system.txt``."""
    return resources.files("rlm_host").joinpath("prompts/rlm_system.txt").read_text(encoding="utf-8")


@dataclass
class _Shared:
    """State one query shares with its child RLMs: the budget, the events, the calls made."""

    budget: Budget
    events: Recorder
    root_calls: list[Completion] = field(default_factory=list)
    sub_calls: list[Completion] = field(default_factory=list)


class RLM:
    """A Recursive Language Model whose code runs in the hardened sandbox."""

    def __init__(
        self,
        *,
        model: str,
        sub_model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        sub_base_url: str | None = None,
        lm_timeout_s: float = LM_TIMEOUT_S,
        policy: str | Path | Policy = "standard",
        max_iterations: int = 20,
        max_depth: int | None = None,
        max_wall_s: float | None = None,
        root_max_tokens: int | None = 1024,
        sub_max_tokens: int | None = 1024,
        temperature: float = 0.0,
        output_chars: int = 4000,
        lm: LMClient | None = None,
        sub_lm: LMClient | None = None,
        root_stop: list[str] | None = None,
        prices: PriceTable | None = None,
        image: str | None = None,
        on_event: EventHook | None = None,
        system_prompt: str | None = None,
        run_info: dict[str, Any] | None = None,
        few_shot: bool = True,
        audit_dir: Path | None = None,
    ) -> None:
        if max_iterations < 1:
            raise ConfigError(f"max_iterations must be at least 1 (got {max_iterations})")
        loaded = policy if isinstance(policy, Policy) else load_policy(policy)
        if max_depth is not None:
            loaded = loaded.with_subcalls(max_depth=max_depth)
        self.policy = loaded
        self.model = model
        self.sub_model = sub_model or model
        self.prices = prices or PriceTable.load()
        made = {"api_key": api_key, "prices": self.prices, "timeout_s": lm_timeout_s}
        self._owned: list[LMClient] = []  # closed by close(); clients passed in are the caller's
        if lm is None:
            lm = LMClient(base_url=base_url, **made)
            self._owned.append(lm)
        if sub_lm is None and sub_base_url:  # a separate sub-call server keeps the root's prompt cache warm
            sub_lm = LMClient(base_url=sub_base_url, **made)
            self._owned.append(sub_lm)
        self.lm, self.sub_lm = lm, sub_lm or lm
        self.root_stop = root_stop
        self.max_iterations = max_iterations
        self.max_wall_s = max_wall_s
        self.root_max_tokens = root_max_tokens
        self.sub_max_tokens = sub_max_tokens
        self.temperature = temperature
        self.output_chars = output_chars
        self.image = image
        self.on_event = on_event
        self.system_prompt = system_prompt or default_system_prompt()
        self.run_info = run_info or {}
        self.examples = example_turns() if few_shot else []
        self.audit_dir = audit_dir
        self._check_cost_budget()

    def close(self) -> None:
        """Close the HTTP connections of the model clients this RLM made (not those passed in)."""
        for client in self._owned:
            client.close()

    def __enter__(self) -> RLM:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def complete(self, query: str, context: str | Path | list[str | Path] | None = None) -> RLMResult:
        """Answer ``query`` over ``context`` (text, a file, or several files)."""
        if not query or not query.strip():
            raise ConfigError("the query is empty; pass the question to answer")
        run_id = uuid.uuid4().hex[:12]
        audit = AuditLog(run_id, self.policy.audit_level, directory=self.audit_dir)
        events = Recorder(forward=[audit.record, *([self.on_event] if self.on_event else [])])
        shared = _Shared(Budget(self.policy.subcalls), events)
        try:
            with tempfile.TemporaryDirectory(prefix="rlm-host-ctx-") as scratch:
                documents = _ingest(context, Path(scratch), events, policy=self.policy, image=self.image)
                result = _Run(self, shared, query, documents, depth=1, run_id=run_id).execute()
            audit.seal("last_resort" if result.fallback else "answered")
        except BaseException as exc:  # Ctrl-C and SIGTERM (SystemExit) too: the log says how the run ended
            exc.audit_log = str(audit.path)  # type: ignore[attr-defined]  # the CLI prints it on every exit
            _seal_failed(audit, events, exc)
            raise
        finally:
            audit.close()  # after seal() a no-op; a log that could not take its seal stays unfinished
        return result.model_copy(update={"audit_log": str(audit.path)})

    def _check_cost_budget(self) -> None:
        limit = self.policy.subcalls.max_cost_usd
        if limit is not None and not self.prices.known(self.sub_model):
            raise ConfigError(
                f"policy '{self.policy.name}' limits sub-call cost to ${limit:g}, but the price of model "
                f"'{self.sub_model}' is unknown: add it to a prices file (RLM_HOST_PRICES) or remove max_cost_usd")


def _seal_failed(audit: AuditLog, events: Recorder, exc: BaseException) -> None:
    """Record why the run failed and seal the log with that reason, if the log can still take it."""
    reason = seal_reason(exc)
    try:
        if reason not in ("interrupted", "terminated"):
            events("run.error", {"error": f"{type(exc).__name__}: {exc}"})
        audit.seal(reason)
    except AuditError:
        if not isinstance(exc, AuditError):
            raise
        # the log that failed cannot take a line: it stays unfinished, and the error says why


class _Run:
    """One root conversation over one sandbox (a child RLM is another _Run)."""

    def __init__(self, rlm: RLM, shared: _Shared, query: str, documents: list[StagedDocument],
                 depth: int, run_id: str | None = None) -> None:
        self.rlm, self.shared, self.query, self.documents, self.depth = rlm, shared, query, documents, depth
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.evidence = Evidence(documents)  # the host's own layout: it checks citations and quotes them
        self.emit = shared.events
        self.steps: list[Step] = []
        self.messages: list[dict[str, str]] = []
        self.started = time.monotonic()

    def execute(self) -> RLMResult:
        self.emit("run.start", {"run": self.run_id, "depth": self.depth, "query": self.query,
                                "model": self.rlm.model, "sub_model": self.rlm.sub_model,
                                "policy": self.rlm.policy.name, "policy_sha256": self.rlm.policy.sha256,
                                "runtime": self.rlm.policy.runtime, "audit_level": self.rlm.policy.audit_level,
                                "host_version": __version__, "limits": self.rlm.policy.limits.model_dump(),
                                "subcall_budget": self.rlm.policy.subcalls.model_dump(), **self.rlm.run_info})
        with DockerSandbox.start(self.rlm.policy, self.documents, image=self.rlm.image,
                                 on_event=self.emit) as sandbox:
            subcalls = Subcalls(self.rlm.sub_lm, self.rlm.sub_model, self.shared.budget, depth=self.depth,
                                child=self._child, max_tokens=self.rlm.sub_max_tokens,
                                evidence=self.evidence, on_event=self.emit)
            broker = Broker(sandbox.rpc_socket_path, subcalls, uid=sandbox_uid(self.rlm.policy),
                            max_frame_bytes=self.rlm.policy.subcalls.max_frame_bytes, on_event=self.emit).start()
            try:
                result = self._loop(sandbox, subcalls)
            finally:
                broker.close()
                self.shared.sub_calls.extend(subcalls.completions)
        self.emit("run.end", {"run": self.run_id, "depth": self.depth, "stopped": result.stopped,
                              "iterations": result.iterations, "answer": result.answer, "fallback": result.fallback,
                              "citations": [c.model_dump(exclude_none=True, exclude={"text"}) for c in result.citations],
                              "evidence": [c.text or "" for c in result.citations],
                              "usage": [u.model_dump() for u in result.usage], "cost_usd": result.cost_usd,
                              "comparison": result.comparison.model_dump(), "subcalls": result.subcalls})
        return result

    def _loop(self, sandbox: DockerSandbox, subcalls: Subcalls) -> RLMResult:
        description = sandbox.execute(DESCRIBE_CELL).stdout.strip()
        self.messages = [{"role": "system", "content": self.rlm.system_prompt}, *self.rlm.examples,
                         {"role": "user", "content": f"Question: {self.query}\n\n{description}\n\n"
                                                     "Write your first cell."}]
        last_code: str | None = None
        for iteration in range(1, self.rlm.max_iterations + 1):
            if self._out_of_time():
                return self._last_call(sandbox, subcalls, "wall_time", iteration - 1)
            self.emit("iteration.start", {"iteration": iteration, "depth": self.depth})
            reply = self._root(self.messages)
            step = Step(iteration=iteration, reply=reply)
            self.steps.append(step)
            self.messages.append({"role": "assistant", "content": reply})
            last_code = self._act(sandbox, step, last_code)
            if subcalls.answer is not None:
                citations = self.evidence.resolve(subcalls.answer.citations)
                return self._finish(subcalls, "answer", iteration, subcalls.answer.text, citations)
            if step.status == "no_code" and (final := self._final(sandbox, reply)) is not None:
                return self._finish(subcalls, "final", iteration, final, [])
        return self._last_call(sandbox, subcalls, "max_iterations", self.rlm.max_iterations)

    def _act(self, sandbox: DockerSandbox, step: Step, last_code: str | None) -> str | None:
        """Run the reply's code (or say why not); return the code that ran last."""
        blocks = code_blocks(step.reply)
        if not blocks:
            step.status = "unclosed" if unclosed_block(step.reply) else "no_code"
            if final_answer(step.reply) is None:
                self._tell(NUDGE_UNCLOSED if step.status == "unclosed" else NUDGE_NO_CODE)
            return last_code
        code = "\n\n".join(blocks)
        step.code = code
        if last_code is not None and same_code(code, last_code):
            step.status = "repeated"
            self._tell(NUDGE_REPEAT)
            return last_code
        result = sandbox.execute(code)
        step.status, step.duration_ms = result.status, result.duration_ms
        step.output = self._format(result)
        self.emit("cell", {"iteration": step.iteration, "depth": self.depth, "status": result.status,
                           "code": code, "code_sha256": hashlib.sha256(code.encode()).hexdigest(),
                           "stdout": result.stdout, "stderr": result.stderr, "result": result.result or "",
                           "error": result.error.name if result.error else None, "reason": result.reason,
                           "chars": len(step.output), "duration_ms": result.duration_ms,
                           "truncated": result.truncated, "restarted": result.restarted})
        if result.error is not None and result.error.name == "ProtectedNameError":
            self.emit("kernel.rebind_refused", {"iteration": step.iteration, "message": result.error.value})
        self._tell(f"Output of your cell:\n{step.output}{_next_step(code, result, self.query)}")
        return code

    def _final(self, sandbox: DockerSandbox, reply: str) -> str | None:
        found = final_answer(reply)
        if found is None:
            return None
        kind, value = found
        if kind == "text":
            return value
        shown = sandbox.execute(f"print({value})")
        return shown.stdout.rstrip("\n") if shown.ok else None

    def _root(self, messages: list[dict[str, str]]) -> str:
        completion = self.rlm.lm.complete(messages, model=self.rlm.model, max_tokens=self.rlm.root_max_tokens,
                                          temperature=self.rlm.temperature, stop=self.rlm.root_stop)
        self.shared.root_calls.append(completion)
        self.emit("root", {"model": completion.model, "prompt": messages[-1]["content"], "response": completion.text,
                           "messages": len(messages), "prompt_tokens": completion.usage.prompt_tokens,
                           "completion_tokens": completion.usage.completion_tokens,
                           "cost_usd": completion.cost_usd, "latency_s": round(completion.latency_s, 4),
                           "retries": completion.retries, "depth": self.depth})
        if self.rlm.root_stop and unclosed_block(completion.text):
            return completion.text.rstrip() + "\n```"  # the stop sequence ate the closing fence
        return completion.text

    def _last_call(self, sandbox: DockerSandbox, subcalls: Subcalls, why: str, iterations: int) -> RLMResult:
        """One more call for the best answer; a reply that is code calling answer() still counts."""
        self.emit("limit." + why, {"iterations": iterations})
        reply = self._root([*self.messages, {"role": "user", "content": LAST_CALL}])
        blocks = code_blocks(reply)
        if blocks and "answer(" in blocks[-1]:
            sandbox.execute("\n\n".join(blocks))
        if subcalls.answer is not None:
            citations = self.evidence.resolve(subcalls.answer.citations)
            return self._finish(subcalls, why, iterations, subcalls.answer.text, citations, fallback=True)
        return self._finish(subcalls, why, iterations, reply.strip(), [], fallback=True)

    def _finish(self, subcalls: Subcalls, stopped: str, iterations: int, answer: str,
                citations: list[Citation], *, fallback: bool = False) -> RLMResult:
        self.shared.sub_calls.extend(subcalls.completions)
        subcalls.completions.clear()
        usage = _usage(self.shared.root_calls, "root") + _usage(self.shared.sub_calls, "sub")
        costs = [u.cost_usd for u in usage]
        return RLMResult(
            run_id=self.run_id, query=self.query, answer=answer, citations=citations, stopped=stopped,
            fallback=fallback, iterations=iterations, usage=usage,
            cost_usd=None if None in costs else round(sum(costs), 6),
            comparison=_compare(self.query, self.documents, usage), subcalls=self.shared.budget.snapshot(),
            trajectory=self.steps, events=list(self.shared.events.events),
            duration_s=round(time.monotonic() - self.started, 3))

    def _child(self, question: str, text: str, depth: int) -> str:
        """rlm_query: a child RLM on ``text`` in its own sandbox, sharing this run's budget."""
        with tempfile.TemporaryDirectory(prefix="rlm-host-child-") as scratch:
            path = Path(scratch) / "context.txt"
            path.write_text(text, encoding="utf-8")
            child = _Run(self.rlm, self.shared, question, [StagedDocument("context.txt", path)], depth)
            return child.execute().answer

    def _tell(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})

    def _format(self, result: ExecutionResult) -> str:
        parts = [result.stdout, result.stderr]
        if result.result is not None:
            parts.append(result.result)
        if result.error is not None:
            where = [line for line in result.error.traceback if "---->" in line][-1:]
            parts.append("\n".join([*where, f"{result.error.name}: {result.error.value}"]))
        if result.status != "ok" and result.reason:
            parts.append(f"[{result.status}: {result.reason}]")
        text = "\n".join(p.rstrip("\n") for p in parts if p and p.strip()) or "(no output)"
        return _clip(text, self.rlm.output_chars)

    def _out_of_time(self) -> bool:
        limit = self.rlm.max_wall_s
        return limit is not None and time.monotonic() - self.started > limit


def _next_step(code: str, result: ExecutionResult, question: str) -> str:
    """A one-line reminder of the method's next step, which small models otherwise skip."""
    if not result.ok:
        return "\n\nFix the error: write a corrected cell (define any missing variable first)."
    searched, shown = "search(" in code or "grep(" in code, result.stdout.count("Hit(")
    # several hits for a how-many question: something to count, not one sentence that states the number
    if searched and shown >= 3 and _AGGREGATE.search(question):
        pattern = _SEARCHED.search(code)
        literal = f"r{pattern[1]}{pattern[2]}{pattern[1]}" if pattern else 'r"..."'
        return ("\n\nsearch() stops at max_results hits, so it cannot count. Next: count every match in Python:\n"
                f"import re\nn = len(re.findall({literal}, context, re.IGNORECASE))\nprint(n)\n"
                "Then answer(str(n)).")
    if "llm_query" in code:
        return "\n\nNext: Step 3, answer with the hit as citation."
    if searched and not shown:
        word = _key_word(question, code)
        return ("\n\nNothing found. Search again with one or two key words from the question "
                "(a name or a noun)" + (f", e.g. search(r\"{word}\")." if word else "."))
    if searched:
        return "\n\nNext: Step 2, read the text around the best hit with llm_query."
    return ""


# a question that counts ("total" and "average" are left out: "the total fee" is one value to find)
_AGGREGATE = re.compile(r"\b(how many|how often|number of|count)\b", re.IGNORECASE)
_SEARCHED = re.compile(r"""(?:search|grep)\(\s*r?(["'])(.+?)\1""")  # the quote and the pattern of a search
_STOP_WORDS = frozenset("what which when where who whom whose why how does did have has the this that these those "
                        "there their with from into about text document documents give exact number".split())


def _key_word(question: str, code: str) -> str | None:
    """The question's likeliest search term the code has not tried: a name first, else the longest word."""
    tokens = re.findall(r"[A-Za-z][A-Za-z0-9_-]{3,}", question)
    fresh = [(i, w) for i, w in enumerate(tokens) if w.lower() not in _STOP_WORDS and w.lower() not in code.lower()]
    names = [w for i, w in fresh if i > 0 and w[0].isupper()]  # capitalised mid-sentence
    return max(names or [w for _, w in fresh], key=len, default=None)


def _ingest(context: str | Path | list[str | Path] | None, scratch: Path, emit: EventHook, *,
            policy: Policy, image: str | None) -> list[StagedDocument]:
    """Documents for the sandbox: files and folders parsed in the ingestion sandbox, text as it is."""
    if context is None:
        return []
    if isinstance(context, str):
        ingested = Ingested([stage_text(context, scratch)])
    else:
        inputs = [context] if isinstance(context, Path) else [Path(p) for p in context]
        ingested = ingest(inputs, scratch, policy=policy, image=image,
                          progress=lambda message: emit("progress", {"message": message}))
    for path, why in ingested.skipped:
        emit("document.skipped", {"path": str(path), "reason": why})
    for doc in ingested.documents:
        emit("document", {"name": doc.name, "type": doc.kind, "size": doc.size, "sha256": doc.sha256,
                          "text_bytes": doc.text_bytes, "text_sha256": doc.text_sha256, "chars": doc.chars,
                          "pages": len(doc.pages)})
    return [StagedDocument(doc.name, doc.text_path, doc.pages) for doc in ingested.documents]


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head, tail = text[: limit * 3 // 4], text[-limit // 4:]
    return f"{head}\n[... {len(text) - len(head) - len(tail):,} characters cut ...]\n{tail}"


def _usage(calls: list[Completion], role: str) -> list[ModelUsage]:
    by_model: dict[str, ModelUsage] = {}
    for call in calls:
        usage = by_model.setdefault(call.model, ModelUsage(model=call.model, role=role))
        usage.calls += 1
        usage.prompt_tokens += call.usage.prompt_tokens
        usage.completion_tokens += call.usage.completion_tokens
        usage.cost_usd = None if usage.cost_usd is None or call.cost_usd is None else usage.cost_usd + call.cost_usd
    return list(by_model.values())


def _compare(query: str, documents: list[StagedDocument], usage: list[ModelUsage]) -> Comparison:
    chars = len(query) + sum(doc.path.stat().st_size for doc in documents)
    stuffed = max(1, chars // CHARS_PER_TOKEN)
    used = sum(u.total_tokens for u in usage)
    return Comparison(input_tokens=stuffed, rlm_tokens=used, saved_pct=round(100 * (1 - used / stuffed), 1),
                      method=f"estimate: {CHARS_PER_TOKEN} characters (bytes) per token")

