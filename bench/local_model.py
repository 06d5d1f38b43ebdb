"""The embedded model on this machine: server start, tokens per second, and RLM success rate.

1. Start time of the llama-cpp-python server with Qwen2.5-Coder 0.5B (median of 3).
2. Prompt reading and generation speed, from two timed requests: a ~1,500-token prompt with one
   output token (reading), and a short prompt asked for a long list (generation).
3. Success rate of full RLM runs through the real sandbox on fixed tasks: needle questions in
   generated haystacks of a few thousand tokens, the clauses example, and the `make demo`
   question over the 40 bundled agreements. A task succeeds when the answer contains the
   expected text. Temperature 0: the same build on the same machine gives the same runs.

    python3 bench/local_model.py [--out bench/results]

Writes ``local_model.json`` and ``local_model.md``. Takes about 5-8 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import tasks as gen  # bench/tasks.py: the filler text
from report import RESULTS, write_results  # bench/report.py

from rlm_host import RLM
from rlm_host.rlm import local_lm
from rlm_host.rlm.lm import LMClient

ROOT = Path(__file__).resolve().parent.parent
NEEDLES = [
    ("The access code for the east vault is 7391-QX.", "What is the access code for the east vault?", "7391-QX"),
    ("The annual budget for the robotics club is 18,750 dollars.",
     "What is the annual budget for the robotics club?", "18,750"),
    ("The keynote speaker at the spring summit is Dr. Amara Okafor.",
     "Who is the keynote speaker at the spring summit?", "Okafor"),
    ("The backup generator is tested every second Thursday at 6 am.",
     "When is the backup generator tested?", "Thursday"),
    ("The warehouse in Leeds stores exactly 4,312 pallets of paper.",
     "How many pallets of paper does the warehouse in Leeds store?", "4,312"),
    ("The project code name for the new billing system is Bluebird.",
     "What is the project code name for the new billing system?", "Bluebird"),
]


def haystack(folder: Path, index: int, needle: str) -> Path:
    """5-12K tokens of filler (bench/tasks.py) with the needle at a seeded depth."""
    rng = random.Random(index)
    path = folder / f"notes-{index}.txt"
    path.write_text(gen.haystack(rng.randrange(22_000, 50_000), needle, rng.random()))
    return path


def tasks(folder: Path) -> list[tuple[str, list[Path], str, str]]:
    found = [(f"needle {i + 1}", [haystack(folder, i, n)], q, want) for i, (n, q, want) in enumerate(NEEDLES)]
    found.append(("clauses", [ROOT / "examples" / "clauses.txt"], "What is the termination fee?", "48,500"))
    found.append(("demo: 40 agreements", [ROOT / "examples" / "agreements"],
                  "What exclusivity bonus does Northwind Traders receive each year?", "12,400"))
    return found


def start_times(path: Path) -> list[float]:
    model, times = local_lm.MODELS["0.5b"], []
    for _ in range(3):
        began = time.monotonic()
        server = local_lm.serve(model, path)
        times.append(time.monotonic() - began)
        local_lm.stop(server)
    return times


def speeds(client: LMClient, model: str) -> dict[str, float]:
    prompt = gen.filler(6000)  # about 1,500 tokens
    began = time.monotonic()
    read = client.chat([{"role": "user", "content": prompt + "\nSay OK."}], model=model, max_tokens=1,
                       temperature=0)
    read_s = time.monotonic() - began
    began = time.monotonic()
    made = client.chat([{"role": "user", "content": "List the numbers from 1 to 150, one per line."}],
                       model=model, max_tokens=300, temperature=0)
    made_s = time.monotonic() - began
    return {"prompt_tokens": read.usage.prompt_tokens, "prompt_tok_per_s": read.usage.prompt_tokens / read_s,
            "completion_tokens": made.usage.completion_tokens,
            "generation_tok_per_s": made.usage.completion_tokens / made_s}


def run_tasks(servers: dict[str, local_lm.Server], folder: Path) -> list[dict]:
    rows = []
    for name, docs, question, want in tasks(folder):
        began = time.monotonic()
        with RLM(local_lm.models_for(servers), generation=local_lm.GENERATION, max_iterations=6) as rlm:
            result = rlm.complete(question, docs)
        rows.append({"task": name, "ok": want in result.answer, "answer": result.answer[:200],
                     "stopped": result.stopped, "iterations": result.iterations,
                     "cited": bool(result.citations), "used_llm_query": result.subcalls.get("calls", 0) > 0,
                     "seconds": round(time.monotonic() - began, 1), "rlm_tokens": result.comparison.rlm_tokens,
                     "input_tokens": result.comparison.input_tokens})
        print(f"{name}: {'ok' if rows[-1]['ok'] else 'MISS'} in {rows[-1]['seconds']} s: {result.answer[:80]!r}",
              flush=True)
    return rows


def markdown(report: dict) -> str:
    sp, rows = report["speeds"], report["tasks"]
    ok = sum(r["ok"] for r in rows)
    lines = ["# Embedded model benchmark", "", f"{report['date']} · Qwen2.5-Coder 0.5B Q4_K_M · "
             f"llama-cpp-python {report['llama_cpp']} · 2 cores", "",
             f"- server start: {statistics.median(report['start_s']):.2f} s (median of 3)",
             f"- prompt reading: {sp['prompt_tok_per_s']:.0f} tokens/s ({sp['prompt_tokens']} tokens)",
             f"- generation: {sp['generation_tok_per_s']:.1f} tokens/s ({sp['completion_tokens']} tokens)",
             f"- RLM tasks answered correctly: {ok} of {len(rows)}", "",
             "| task | result | iterations | llm_query | cited | seconds | RLM tokens | whole input |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {'ok' if r['ok'] else 'miss'} | {r['iterations']} | "
                     f"{'yes' if r['used_llm_query'] else 'no'} | {'yes' if r['cited'] else 'no'} | "
                     f"{r['seconds']} | {r['rlm_tokens']:,} | {r['input_tokens']:,} |")
    return "\n".join(lines) + "\n\nRegenerate: `python3 bench/local_model.py`.\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    import llama_cpp

    path = local_lm.fetch(local_lm.MODELS["0.5b"], progress=print)
    report: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "llama_cpp": llama_cpp.__version__, "start_s": start_times(path)}
    servers = local_lm.start_servers(quality=False)
    try:
        report["speeds"] = speeds(LMClient(base_url=servers["root"].base_url), servers["root"].model)
        with tempfile.TemporaryDirectory(prefix="rlm-bench-") as folder:
            report["tasks"] = run_tasks(servers, Path(folder))
    finally:
        for server in servers.values():
            local_lm.stop(server)
    text = markdown(report)
    write_results(args.out, "local_model", report, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
