"""Long-context accuracy with the embedded model: the RLM on rlm-host against the model read directly.

For each size (tokens at 4 characters per token) and seed, one task from ``bench/tasks.py``
(S-NIAH, and OOLONG-style counting at ``--count-sizes``) is answered twice by the same local
Qwen2.5-Coder model:

- rlm: ``RLM(local_lm.models_for(servers), generation=local_lm.GENERATION)`` (root and sub-calls on
  their own servers, ``max_iterations`` 6) over the whole text in the real sandbox (policy ``standard``);
- direct: one chat call with as much of the text as fits the server's window (``n_ctx`` 8192 tokens)
  minus room for the instructions, the question and the answer: the text's first tokens, counted by
  the server's own tokenizer, then the question. It cannot see a needle past the first window.

Each row records correct, the answer, tokens (prompt + completion of every root and sub call, as
the servers report them; for direct, the one call), wall time and how the run stopped; failures
(errors, wrong answers, turn limits) are rows like any other. The direct calls go to a third server,
so its prompt cache keeps the window's prefix, which repeats across tasks.

    python3 bench/accuracy.py [--sizes 8K,32K,128K,1M,10M] [--count-sizes 32K,1M] [--tasks 10]
                              [--model 0.5b|1.5b] [--out bench/results]

Writes ``accuracy.json``, ``accuracy.md`` and ``accuracy.png``. The default run takes about an hour
on 2 otherwise idle cores with the 0.5B (the direct calls over a full window cost 1-2 minutes each).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import tasks as gen  # bench/tasks.py
from report import RESULTS, write_results  # bench/report.py

from rlm_host import RLM
from rlm_host.rlm import local_lm
from rlm_host.rlm.lm import LMClient
from rlm_host.results import CHARS_PER_TOKEN

N_CTX = 8192                 # the servers' window (local_lm.serve's default)
ANSWER_TOKENS = 64           # room kept for the direct answer
QUESTION_TOKENS = 160        # room kept for the chat template, the instructions and the question
MAX_ITERATIONS = 6
DIRECT_SYSTEM = "Answer the question from the text. Reply with the answer only."
Progress = Callable[[str], None]


def say(line: str) -> None:
    print(line, flush=True)


class Methods:
    """The three servers of one model: the RLM's root and sub-calls, and the direct baseline."""

    def __init__(self, model: str, max_wall_s: float) -> None:
        self.model = local_lm.MODELS[model]
        self.max_wall_s = max_wall_s
        self.servers: dict[str, local_lm.Server] = {}
        self.direct_lm: LMClient | None = None

    def __enter__(self) -> Methods:
        path = local_lm.fetch(self.model, progress=print)
        try:
            for role in ("root", "sub", "direct"):
                self.servers[role] = local_lm.serve(self.model, path, n_ctx=N_CTX, timeout_s=300)
        except BaseException:
            self.__exit__()
            raise
        self.direct_lm = LMClient(base_url=self.servers["direct"].base_url, timeout_s=3600, max_retries=0)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.direct_lm is not None:
            self.direct_lm.close()
        for server in self.servers.values():
            local_lm.stop(server)

    def rlm(self, task: gen.Task) -> dict:
        """The RLM over the whole text; its usage sums every root and sub call."""
        began = time.monotonic()
        with RLM(local_lm.models_for(self.servers), generation=local_lm.GENERATION, max_iterations=MAX_ITERATIONS,
                 max_wall_s=self.max_wall_s) as rlm:
            result = rlm.complete(task.question, task.text)
        by_role = {role: sum(u.total_tokens for u in result.usage if u.role == role) for role in ("root", "sub")}
        return {"answer": result.answer, "stopped": result.stopped, "iterations": result.iterations,
                "wall_s": round(time.monotonic() - began, 1),
                "prompt_tokens": sum(u.prompt_tokens for u in result.usage),
                "completion_tokens": sum(u.completion_tokens for u in result.usage),
                "root_tokens": by_role["root"], "sub_tokens": by_role["sub"],
                "calls": sum(u.calls for u in result.usage)}

    def direct(self, task: gen.Task) -> dict:
        """One call with the first window of the text, then the question."""
        text = fit(task.text, N_CTX - ANSWER_TOKENS - QUESTION_TOKENS, self.count_tokens)
        messages = [{"role": "system", "content": DIRECT_SYSTEM},
                    {"role": "user", "content": f"{text}\n\nQuestion: {task.question}"}]
        began = time.monotonic()
        assert self.direct_lm is not None, "use Methods as a context manager"
        reply = self.direct_lm.chat(messages, model=self.model.name, max_tokens=ANSWER_TOKENS, temperature=0)
        return {"answer": reply.text, "stopped": "answer", "iterations": 1,
                "wall_s": round(time.monotonic() - began, 1),
                "prompt_tokens": reply.usage.prompt_tokens, "completion_tokens": reply.usage.completion_tokens,
                "root_tokens": reply.usage.total_tokens, "sub_tokens": 0, "calls": 1,
                "seen_chars": len(text), "seen_all": len(text) == len(task.text),
                "evidence_seen": task.kind == "niah" and task.expected in text}

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the direct server's tokenizer."""
        url = f"http://127.0.0.1:{self.servers['direct'].port}/extras/tokenize/count"
        request = urllib.request.Request(url, json.dumps({"input": text}).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as reply:
            return int(json.load(reply)["count"])


def fit(text: str, budget: int, count: Callable[[str], int]) -> str:
    """The longest prefix of ``text`` (within 1%) of at most ``budget`` tokens."""
    end = min(len(text), budget * 6)
    while (got := count(text[:end])) > budget:
        end = int(end * budget / got * 0.995)
    return text[:end]


def plan(sizes: list[str], count_sizes: list[str], n: int) -> Iterator[tuple[str, str, int]]:
    """(kind, size, seed) in run order: S-NIAH by size, then counting by seed (one seed's sizes share
    their first window, so the direct server's prompt cache answers the second from the first)."""
    for size in sizes:
        yield from (("niah", size, seed) for seed in range(n))
    for seed in range(n):
        yield from (("count", size, seed) for size in count_sizes)


def one(methods: Methods, task: gen.Task, method: str) -> dict:
    """One method on one task as a result row; an error is a failed row, not the end of the run."""
    row = {"task": task.name, "kind": task.kind, "size": task.size, "tokens_est": gen.tokens(task.size),
           "seed": task.seed, "method": method, "expected": task.expected, "depth": task.depth,
           "input_tokens": (len(task.question) + len(task.text)) // CHARS_PER_TOKEN}
    began = time.monotonic()
    try:
        row |= getattr(methods, method)(task)
    except Exception as exc:  # a failure is data here: recorded and counted as wrong
        row |= {"answer": "", "stopped": f"error: {type(exc).__name__}: {exc}"[:300], "iterations": 0,
                "wall_s": round(time.monotonic() - began, 1), "prompt_tokens": 0, "completion_tokens": 0,
                "root_tokens": 0, "sub_tokens": 0, "calls": 0}
    row["tokens"] = row["prompt_tokens"] + row["completion_tokens"]
    row["correct"] = task.score(row["answer"])
    row["answer"] = row["answer"][:300]
    return row


def run(methods: Methods, work: list[tuple[str, str, int]], progress: Progress = say,
        checkpoint: Callable[[list[dict]], None] = lambda _rows: None) -> list[dict]:
    """Both methods on each task in turn; ``checkpoint`` gets the rows so far after each task."""
    rows: list[dict] = []
    for i, (kind, size, seed) in enumerate(work, 1):
        task = (gen.niah if kind == "niah" else gen.counting)(size, seed)
        for method in ("rlm", "direct"):
            rows.append(one(methods, task, method))
            r = rows[-1]
            progress(f"[{i}/{len(work)}] {task.name} {method}: {'ok  ' if r['correct'] else 'MISS'} "
                     f"{r['wall_s']:>6.1f} s {r['tokens']:>7,} tokens, {r['stopped']}: "
                     f"{r['answer'][:60]!r} (want {task.expected})")
        checkpoint(rows)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Per task kind, size and method: accuracy, mean tokens and wall time, and the token saving."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["kind"], r["tokens_est"], r["size"], r["method"]), []).append(r)
    out = []
    for (kind, _n, size, method), rs in sorted(groups.items(), key=_order):
        tokens = statistics.mean(r["tokens"] for r in rs)
        whole = statistics.mean(r["input_tokens"] for r in rs)
        out.append({"kind": kind, "size": size, "method": method, "tasks": len(rs),
                    "correct": sum(r["correct"] for r in rs), "accuracy": sum(r["correct"] for r in rs) / len(rs),
                    "tokens_mean": round(tokens), "input_tokens": round(whole),
                    "saving_pct": round(100 * (1 - tokens / whole), 2), "wall_s_mean": round(statistics.mean(
                        r["wall_s"] for r in rs), 1), "errors": sum(r["stopped"].startswith("error") for r in rs),
                    "stops": _stops(rs), "evidence_seen": sum(bool(r.get("evidence_seen")) for r in rs)})
    return out


def _order(group: tuple[tuple, list[dict]]) -> tuple:
    (kind, n, _size, method), _rows = group
    return kind != "niah", n, method != "rlm"


def _stops(rows: list[dict]) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        key = "error" if r["stopped"].startswith("error") else r["stopped"]
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def markdown(report: dict) -> str:
    by = {(s["kind"], s["size"], s["method"]): s for s in report["summary"]}
    lines = ["# Long-context accuracy: RLM on rlm-host against the model read directly", "",
             f"{report['date']} · Qwen2.5-Coder {report['model'].upper()} Q4_K_M (root, sub-calls and direct) · "
             f"window (n_ctx) {N_CTX} tokens · {report['tasks_per_size']} task(s) per size · "
             f"load average {report['load'][0]:.1f} at start, {report['load'][1]:.1f} at end"
             + (" · **partial run**" if report["partial"] else "")
             + (" · **unfinished: results so far**" if report.get("unfinished") else ""), "",
             "| task | size | RLM correct | direct correct | needle in direct window | RLM tokens | "
             "direct tokens | whole input | RLM saving | RLM s | direct s | RLM stops |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for kind, size in dict.fromkeys((s["kind"], s["size"]) for s in report["summary"]):
        if (kind, size, "direct") not in by:
            continue  # a checkpoint taken between the two methods of a task
        rlm, direct = by[(kind, size, "rlm")], by[(kind, size, "direct")]
        seen = f"{direct['evidence_seen']}/{direct['tasks']}" if kind == "niah" else "-"
        lines.append(f"| {'S-NIAH' if kind == 'niah' else 'counting'} | {size} | {rlm['correct']}/{rlm['tasks']} | "
                     f"{direct['correct']}/{direct['tasks']} | {seen} | {rlm['tokens_mean']:,} | "
                     f"{direct['tokens_mean']:,} | {rlm['input_tokens']:,} | {rlm['saving_pct']}% | "
                     f"{rlm['wall_s_mean']} | {direct['wall_s_mean']} | {rlm['stops']} |")
    lines += ["", "Tokens are means per task: prompt + completion of every call as the llama.cpp servers count "
              "them (the RLM's root turns re-send their conversation, and each counts in full). Whole input: "
              f"the question and text at {CHARS_PER_TOKEN} characters per token. RLM saving: 1 - RLM tokens / "
              "whole input. Sizes use the same estimate (8K = 8,192 tokens = 32 KiB of text).", "",
              f"Regenerate: `{report['command']}`."]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (acc, tok) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, marker in (("niah", "o"), ("count", "s")):
        for method, colour in (("rlm", "tab:blue"), ("direct", "tab:orange")):
            pts = [s for s in report["summary"] if s["kind"] == kind and s["method"] == method]
            if not pts:
                continue
            xs = [s["input_tokens"] for s in pts]
            label = f"{'S-NIAH' if kind == 'niah' else 'counting'}, {method}"
            acc.plot(xs, [100 * s["accuracy"] for s in pts], marker=marker, color=colour,
                     linestyle="-" if kind == "niah" else ":", label=label)
            tok.plot(xs, [s["tokens_mean"] for s in pts], marker=marker, color=colour,
                     linestyle="-" if kind == "niah" else ":", label=label)
    whole = sorted({s["input_tokens"] for s in report["summary"]})
    tok.plot(whole, whole, color="grey", linestyle="--", label="whole input (4 chars/token)")
    acc.set(xscale="log", ylim=(-5, 105), xlabel="input tokens", ylabel="correct (%)", title="Accuracy")
    tok.set(xscale="log", yscale="log", xlabel="input tokens", ylabel="tokens per task", title="Tokens used")
    for ax in (acc, tok):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Qwen2.5-Coder {report['model'].upper()}: RLM on rlm-host vs direct (window {N_CTX})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None, progress: Progress = say) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8K,32K,128K,1M,10M", help="S-NIAH sizes (tokens; K=1024)")
    parser.add_argument("--count-sizes", default="32K,1M", help="counting sizes ('' for none)")
    parser.add_argument("--tasks", type=int, default=10, help="tasks per size (seeds 0..N-1)")
    parser.add_argument("--model", choices=sorted(local_lm.MODELS), default="0.5b")
    parser.add_argument("--max-wall", type=float, default=600, help="RLM wall-time limit per task (s)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sizes, counts = _labels(args.sizes), _labels(args.count_sizes)
    # llama_cpp's version from its metadata: importing it opens two /dev/null files it never closes
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "model": args.model,
              "model_file": local_lm.MODELS[args.model].filename, "llama_cpp": version("llama_cpp_python"),
              "n_ctx": N_CTX, "tasks_per_size": args.tasks, "sizes": sizes, "count_sizes": counts,
              "partial": sizes != _labels(parser.get_default("sizes")) or args.tasks < 10,
              "command": " ".join(["python3 bench/accuracy.py", *(argv if argv is not None else sys.argv[1:])]),
              "filler": gen.filler_info(), "cores": os.cpu_count()}
    load, began = os.getloadavg()[0], time.monotonic()
    work = list(plan(sizes, counts, args.tasks))

    def checkpoint(rows: list[dict]) -> None:
        done = len(rows) == 2 * len(work)
        report.update(rows=rows, load=[load, os.getloadavg()[0]], wall_s=round(time.monotonic() - began),
                      summary=summarize(rows), unfinished=not done)
        write_results(args.out, "accuracy", report, markdown(report), plot)

    with Methods(args.model, args.max_wall) as methods:
        run(methods, work, progress, checkpoint)
    progress(markdown(report))
    return 0


def _labels(text: str) -> list[str]:
    return [s.strip().upper() for s in text.split(",") if s.strip()]


if __name__ == "__main__":
    sys.exit(main())
