"""The RLM loop: a root model writes code, the sandbox runs it, sub-calls come back over RPC.

``RLM(...).complete(query, context)`` starts a sandbox with the documents, an RPC
broker on its session socket and the root conversation, then iterates: the
root model's reply is parsed for a code block, the block runs in the kernel,
and the (truncated) output goes back to the root model, until ``answer(...)``
is called in the kernel, a ``FINAL(...)`` line is written, or a limit is hit;
then one last call asks for the best answer from what was found.
"""

from __future__ import annotations

import copy
import functools
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..audit import AuditLog, audited
from ..errors import ConfigError
from .. import events
from ..events import EventHook, Recorder
from .lm import Completion, LMClient, PriceTable
from .parsing import code_blocks, final_answer, same_code, unclosed_block
from ..policy import Policy, load_policy
from .prompts import (DESCRIBE_CELL, LAST_CALL, NUDGE_NO_CODE, NUDGE_REPEAT, NUDGE_UNCLOSED, next_step,
                      opening)
from .config import Generation, Models
from ..results import Citation, ExecutionResult, RLMResult, Step, Stopped, compare, usage_of
from .broker import Broker
from .subcalls import Budget, Evidence, Subcalls
from ..documents import Ingested, ingest, stage_text
from ..sandbox import Document, DockerSandbox, Sandbox, SandboxFactory
from ..settings import __version__

@dataclass
class _Shared:
    """State one query shares with its child RLMs: the budget, the events, the calls made."""

    budget: Budget
    events: Recorder
    root_calls: list[Completion] = field(default_factory=list)
    sub_calls: list[Completion] = field(default_factory=list)


class RLM:
    """A Recursive Language Model whose code runs in the hardened sandbox.

    ``RLM(models, *, generation=Generation(), policy="standard", ...)``: ``models`` is a ``Models``
    record, or a model name as shorthand for ``Models(model=name)``; ``generation`` says how the root
    model is asked. The keywords after them are this RLM's runs: the policy (``max_depth`` overrides
    its ``subcalls.max_depth``), the iteration and wall-time limits, the image, an event hook, extra
    ``run.start`` info, the audit folder and where each sandbox comes from.
    """

    def __init__(
        self,
        models: Models | str,
        *,
        generation: Generation = Generation(),
        policy: str | Path | Policy = "standard",
        max_iterations: int = 20,
        max_depth: int | None = None,
        max_wall_s: float | None = None,
        image: str | None = None,
        on_event: EventHook | None = None,
        run_info: dict[str, Any] | None = None,
        audit_dir: Path | None = None,
        sandbox_factory: SandboxFactory | None = None,
    ) -> None:
        if max_iterations < 1:
            raise ConfigError(f"max_iterations must be at least 1 (got {max_iterations})")
        models = Models(model=models) if isinstance(models, str) else models
        self.models = models
        self.generation = generation
        self.policy = _loaded(policy, max_depth)
        self.model = models.model
        self.sub_model = models.sub_model or models.model
        self.prices = models.prices or PriceTable.load()
        self._owned: list[LMClient] = []  # closed by close(); clients passed in are the caller's
        self.lm = models.lm or self._client(models.base_url)
        sub_lm = models.sub_lm
        if sub_lm is None and models.sub_base_url:  # a separate sub-call server keeps the root's prompt cache warm
            sub_lm = self._client(models.sub_base_url)
        self.sub_lm = sub_lm or self.lm
        self.max_iterations = max_iterations
        self.max_wall_s = max_wall_s
        self.image = image
        self.sandbox_factory = sandbox_factory or functools.partial(DockerSandbox.start, image=image)
        self.on_event = on_event
        self.run_info = run_info or {}
        self.audit_dir = audit_dir
        self.opening = opening(generation)
        self._check_cost_budget()

    def with_policy(self, policy: str | Path | Policy) -> RLM:
        """This RLM under another policy, for the same models; the copy shares this one's clients.

        The clients stay this RLM's to close: the copy's ``close()`` closes none.
        """
        twin = copy.copy(self)
        twin.policy = _loaded(policy, None)
        twin._owned = []
        twin._check_cost_budget()
        return twin

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
        audit = AuditLog(run_id, self.policy.audit_level, directory=self.audit_dir,
                         checkpoints=self.policy.checkpoints)
        recorder = Recorder(forward=[audit.record, *([self.on_event] if self.on_event else [])])
        shared = _Shared(Budget(self.policy.subcalls), recorder)
        with audited(audit, recorder, events.RunError):  # Ctrl-C and SIGTERM too: the seal says how it ended
            with tempfile.TemporaryDirectory(prefix="rlm-host-ctx-") as scratch:
                documents = _ingest(context, Path(scratch), recorder, policy=self.policy, image=self.image)
                result = _Run(self, shared, query, documents, depth=1, run_id=run_id).execute()
            audit.seal("last_resort" if result.fallback else "answered")
        return result.model_copy(update={"audit_log": str(audit.path)})

    def _client(self, base_url: str | None) -> LMClient:
        client = LMClient(base_url=base_url, api_key=self.models.api_key, prices=self.prices,
                          timeout_s=self.models.timeout_s)
        self._owned.append(client)
        return client

    def _check_cost_budget(self) -> None:
        limit = self.policy.subcalls.max_cost_usd
        if limit is not None and not self.prices.known(self.sub_model):
            raise ConfigError(
                f"policy '{self.policy.name}' limits sub-call cost to ${limit:g}, but the price of model "
                f"'{self.sub_model}' is unknown: add it to a prices file (RLM_HOST_PRICES) or remove max_cost_usd")


def _loaded(policy: str | Path | Policy, max_depth: int | None) -> Policy:
    loaded = policy if isinstance(policy, Policy) else load_policy(policy)
    return loaded if max_depth is None else loaded.with_subcalls(max_depth=max_depth)


class _Run:
    """One root conversation over one sandbox (a child RLM is another _Run)."""

    def __init__(self, rlm: RLM, shared: _Shared, query: str, documents: list[Document],
                 depth: int, run_id: str | None = None) -> None:
        self.rlm = rlm
        self.shared = shared
        self.query = query
        self.documents = documents
        self.depth = depth
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.evidence = Evidence(documents)  # the host's own layout: it checks citations and quotes them
        self.emit = shared.events
        self.steps: list[Step] = []
        self.messages: list[dict[str, str]] = []
        self.started = time.monotonic()

    def execute(self) -> RLMResult:
        policy = self.rlm.policy
        events.RunStart(run=self.run_id, depth=self.depth, query=self.query, model=self.rlm.model,
                        sub_model=self.rlm.sub_model, policy=policy.name, policy_sha256=policy.sha256,
                        runtime=policy.runtime, audit_level=policy.audit_level, host_version=__version__,
                        limits=policy.limits.model_dump(), subcall_budget=policy.subcalls.model_dump(),
                        info=self.rlm.run_info).to(self.emit)
        with self.rlm.sandbox_factory(self.rlm.policy, self.documents, on_event=self.emit) as sandbox:
            subcalls = Subcalls(self.rlm.sub_lm, self.rlm.sub_model, self.shared.budget, depth=self.depth,
                                child=self._child, max_tokens=self.rlm.generation.sub_max_tokens,
                                evidence=self.evidence, on_event=self.emit, egress=policy.egress)
            broker = Broker(sandbox.rpc_socket_path, subcalls, uid=sandbox.rpc_socket_owner,
                            max_frame_bytes=self.rlm.policy.subcalls.max_frame_bytes, on_event=self.emit).start()
            try:
                result = self._loop(sandbox, subcalls)
            finally:
                broker.close()
                self.shared.sub_calls.extend(subcalls.completions)
        events.RunEnd(run=self.run_id, depth=self.depth, stopped=result.stopped, iterations=result.iterations,
                      answer=result.answer, fallback=result.fallback,
                      citations=[c.model_dump(exclude_none=True, exclude={"text"}) for c in result.citations],
                      evidence=[c.text or "" for c in result.citations], usage=[u.model_dump() for u in result.usage],
                      cost_usd=result.cost_usd, comparison=result.comparison.model_dump(),
                      subcalls=result.subcalls,
                      passages=[self.evidence.passage(c) for c in result.citations]).to(self.emit)
        return result

    def _loop(self, sandbox: Sandbox, subcalls: Subcalls) -> RLMResult:
        description = sandbox.execute(DESCRIBE_CELL).stdout.strip()
        self.messages = [*self.rlm.opening,
                         {"role": "user", "content": f"Question: {self.query}\n\n{description}\n\n"
                                                     "Write your first cell."}]
        last_code: str | None = None
        for iteration in range(1, self.rlm.max_iterations + 1):
            if self._out_of_time():
                return self._last_call(sandbox, subcalls, "wall_time", iteration - 1)
            events.IterationStart(iteration, self.depth).to(self.emit)
            reply = self._root(self.messages)
            step = Step(iteration=iteration, reply=reply)
            self.steps.append(step)
            self.messages.append({"role": "assistant", "content": reply})
            last_code = self._act(sandbox, step, last_code)
            if subcalls.answer is not None:
                citations = subcalls.cited
                return self._finish(subcalls, "answer", iteration, subcalls.answer.text, citations)
            if step.status == "no_code" and (final := self._final(sandbox, reply)) is not None:
                return self._finish(subcalls, "final", iteration, final, [])
        return self._last_call(sandbox, subcalls, "max_iterations", self.rlm.max_iterations)

    def _act(self, sandbox: Sandbox, step: Step, last_code: str | None) -> str | None:
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
        events.Cell.of(code, result, iteration=step.iteration, depth=self.depth, chars=len(step.output)).to(self.emit)
        if result.error is not None and result.error.name == "ProtectedNameError":
            events.RebindRefused(step.iteration, result.error.value).to(self.emit)
        self._tell(f"Output of your cell:\n{step.output}{next_step(code, result, self.query)}")
        return code

    def _final(self, sandbox: Sandbox, reply: str) -> str | None:
        found = final_answer(reply)
        if found is None:
            return None
        kind, value = found
        if kind == "text":
            return value
        shown = sandbox.execute(f"print({value})")
        return shown.stdout.rstrip("\n") if shown.ok else None

    def _root(self, messages: list[dict[str, str]]) -> str:
        generation = self.rlm.generation
        completion = self.rlm.lm.chat(messages, model=self.rlm.model, max_tokens=generation.root_max_tokens,
                                      temperature=generation.temperature, stop=list(generation.root_stop) or None)
        self.shared.root_calls.append(completion)
        events.RootReply(model=completion.model, prompt=messages[-1]["content"], response=completion.text,
                         messages=len(messages), prompt_tokens=completion.usage.prompt_tokens,
                         completion_tokens=completion.usage.completion_tokens, cost_usd=completion.cost_usd,
                         latency_s=round(completion.latency_s, 4), retries=completion.retries,
                         depth=self.depth).to(self.emit)
        if generation.root_stop and unclosed_block(completion.text):
            return completion.text.rstrip() + "\n```"  # the stop sequence ate the closing fence
        return completion.text

    def _last_call(self, sandbox: Sandbox, subcalls: Subcalls, why: Stopped, iterations: int) -> RLMResult:
        """One more call for the best answer; a reply that is code calling answer() still counts."""
        (events.WallTime if why == "wall_time" else events.MaxIterations)(iterations).to(self.emit)
        reply = self._root([*self.messages, {"role": "user", "content": LAST_CALL}])
        blocks = code_blocks(reply)
        if blocks and "answer(" in blocks[-1]:
            sandbox.execute("\n\n".join(blocks))
        if subcalls.answer is not None:
            citations = subcalls.cited
            return self._finish(subcalls, why, iterations, subcalls.answer.text, citations, fallback=True)
        return self._finish(subcalls, why, iterations, reply.strip(), [], fallback=True)

    def _finish(self, subcalls: Subcalls, stopped: Stopped, iterations: int, answer: str,
                citations: list[Citation], *, fallback: bool = False) -> RLMResult:
        self.shared.sub_calls.extend(subcalls.completions)
        subcalls.completions.clear()
        usage = usage_of(self.shared.root_calls, "root") + usage_of(self.shared.sub_calls, "sub")
        costs = [u.cost_usd for u in usage if u.cost_usd is not None]
        return RLMResult(
            run_id=self.run_id, query=self.query, answer=answer, citations=citations, stopped=stopped,
            fallback=fallback, iterations=iterations, usage=usage,
            cost_usd=None if len(costs) < len(usage) else round(sum(costs), 6),
            comparison=compare(self.query, self.documents, usage), subcalls=self.shared.budget.snapshot(),
            trajectory=self.steps, events=list(self.shared.events.events),
            duration_s=round(time.monotonic() - self.started, 3))

    def _child(self, question: str, text: str, depth: int) -> str:
        """rlm_query: a child RLM on ``text`` in its own sandbox, sharing this run's budget."""
        with tempfile.TemporaryDirectory(prefix="rlm-host-child-") as scratch:
            child = _Run(self.rlm, self.shared, question, [stage_text(text, Path(scratch))], depth)
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
        if (result.status != "ok" or result.restarted) and result.reason:  # an ok cell may have been restarted after
            parts.append(f"[{result.status}: {result.reason}]")
        text = "\n".join(p.rstrip("\n") for p in parts if p and p.strip()) or "(no output)"
        return _clip(text, self.rlm.generation.output_chars)

    def _out_of_time(self) -> bool:
        limit = self.rlm.max_wall_s
        return limit is not None and time.monotonic() - self.started > limit


def _ingest(context: str | Path | list[str | Path] | None, scratch: Path, emit: EventHook, *,
            policy: Policy, image: str | None) -> list[Document]:
    """Documents for the sandbox: files and folders parsed in the ingestion sandbox, text as it is."""
    if context is None:
        return []
    if isinstance(context, str):
        ingested = Ingested([stage_text(context, scratch)])
    else:
        inputs = [context] if isinstance(context, Path) else [Path(p) for p in context]
        ingested = ingest(inputs, scratch, policy=policy, image=image,
                          progress=lambda message: events.ProgressNote(message).to(emit))
    for path, why in ingested.skipped:
        events.DocumentSkipped(str(path), why).to(emit)
    for doc in ingested.documents:
        events.DocumentLoaded.of(doc).to(emit)
    return ingested.documents


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head, tail = text[: limit * 3 // 4], text[-limit // 4:]
    return f"{head}\n[... {len(text) - len(head) - len(tail):,} characters cut ...]\n{tail}"
