"""This CPU's own limits for each shipped model: llama.cpp's prompt-reading and generation rates.

Measured the way llama.cpp's ``llama-bench`` measures them (wall time around ``llama_decode``, random
tokens, median of 3), through llama-cpp-python's bindings to the same library the server runs:

- ``pp512``: a 512-token prompt read in one batch from an empty context;
- ``pp512@1536``: the same 512 tokens read after 1,536 already in the context (a root prompt's later
  part: attention over what is there makes each token dearer);
- ``tg128``: 128 tokens decoded one at a time (one sequence);
- ``tg32xB``: B sequences decoded together, one token of each per batch, B = 1, 2, 4, 8: the rate
  llama.cpp's multi-slot batched decoding would give parallel sub-calls on this CPU.

    python3 bench/llama_rates.py [--models 0.5b,1.5b] [--out bench/results]

Writes ``llama_rates.json`` and ``llama_rates.md``; ``bench/time_to_answer.py`` calls ``rates()`` in its
own run to set each run's time against the time these rates predict for its tokens.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from report import RESULTS, write_results  # bench/report.py

from rlm_host.rlm import local_lm

BATCHES = (1, 2, 4, 8)
REPS = 3


class Bench:
    """One model loaded through llama.cpp's C API, with room for ``max(BATCHES)`` sequences."""

    def __init__(self, path: Path, threads: int) -> None:
        import llama_cpp

        self.ll = llama_cpp
        llama_cpp.llama_backend_init()
        self.model = llama_cpp.llama_model_load_from_file(os.fsencode(path), llama_cpp.llama_model_default_params())
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch, params.n_seq_max = 4096, 512, 512, max(BATCHES)
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = True  # one cache for all sequences: one sequence may use the whole context
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not self.model or not self.ctx:
            raise SystemExit(f"llama.cpp could not load {path}")
        self.vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model))
        self.batch = llama_cpp.llama_batch_init(512, 0, max(BATCHES))
        self.rng = random.Random(0)

    def close(self) -> None:
        self.ll.llama_batch_free(self.batch)
        self.ll.llama_free(self.ctx)
        self.ll.llama_model_free(self.model)

    def _decode(self, items: list[tuple[int, int, int, bool]]) -> float:
        """Decode (token, position, sequence, wants logits) items as one batch; its wall time."""
        b = self.batch
        b.n_tokens = len(items)
        for i, (token, pos, seq, logits) in enumerate(items):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, 1, logits
            b.seq_id[i][0] = seq
        began = time.perf_counter()
        if self.ll.llama_decode(self.ctx, b) != 0:
            raise SystemExit("llama_decode failed")
        return time.perf_counter() - began

    def _token(self) -> int:
        return self.rng.randrange(self.vocab)

    def _clear(self) -> None:
        self.ll.llama_memory_clear(self.ll.llama_get_memory(self.ctx), True)

    def pp(self, n: int, depth: int = 0) -> float:
        """Tokens per second reading ``n`` prompt tokens after ``depth`` already read."""
        self._clear()
        for start in range(0, depth, 512):
            self._decode([(self._token(), p, 0, False) for p in range(start, min(start + 512, depth))])
        items = [(self._token(), depth + i, 0, i == n - 1) for i in range(n)]
        return n / self._decode(items)

    def tg(self, n: int, sequences: int = 1) -> float:
        """Tokens per second (all sequences together) decoding ``n`` tokens in each of ``sequences``."""
        self._clear()
        prompt = 16  # a short prompt per sequence first, as a sub-call has
        self._decode([(self._token(), p, s, p == prompt - 1) for s in range(sequences) for p in range(prompt)])
        seconds = sum(self._decode([(self._token(), prompt + step, s, True) for s in range(sequences)])
                      for step in range(n))
        return n * sequences / seconds


def rates(name: str, threads: int | None = None, *, progress=print) -> dict:
    """The median rates of model ``name`` (a key of ``local_lm.MODELS``) on this CPU."""
    model = local_lm.MODELS[name]
    threads = threads or os.cpu_count() or 2
    bench = Bench(local_lm.fetch(model), threads)
    try:
        bench.pp(64)  # warm the weights into memory
        out = {"model": model.name, "threads": threads,
               "pp512": statistics.median(bench.pp(512) for _ in range(REPS)),
               "pp512@1536": statistics.median(bench.pp(512, 1536) for _ in range(REPS)),
               "tg128": statistics.median(bench.tg(128) for _ in range(REPS))}
        for b in BATCHES:
            out[f"tg32x{b}"] = statistics.median(bench.tg(32, b) for _ in range(REPS))
    finally:
        bench.close()
    progress(f"{model.name}: pp512 {out['pp512']:.0f} tok/s, pp512@1536 {out['pp512@1536']:.0f}, "
             f"tg128 {out['tg128']:.1f}, batched " + ", ".join(f"x{b} {out[f'tg32x{b}']:.1f}" for b in BATCHES))
    return out


def markdown(report: dict) -> str:
    lines = ["# This CPU's rates for the shipped models (llama.cpp, tokens/s)", "",
             f"{report['date']} · llama-cpp-python {report['llama_cpp']} · {report['cores']} cores · "
             f"median of {REPS}", "",
             "| model | threads | pp512 | pp512 at depth 1536 | tg128 | "
             + " | ".join(f"tg, {b} seq" for b in BATCHES) + " |",
             "|---|---|---|---|---|" + "---|" * len(BATCHES)]
    for r in report["models"]:
        lines.append(f"| {r['model']} | {r['threads']} | {r['pp512']:.0f} | {r['pp512@1536']:.0f} | {r['tg128']:.1f} | "
                     + " | ".join(f"{r[f'tg32x{b}']:.1f}" for b in BATCHES) + " |")
    return "\n".join(lines) + "\n\nRegenerate: `python3 bench/llama_rates.py`.\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="0.5b,1.5b", help="comma-separated keys of local_lm.MODELS")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    import llama_cpp

    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "llama_cpp": llama_cpp.__version__,
              "cores": os.cpu_count(), "models": [rates(name) for name in args.models.split(",")]}
    text = markdown(report)
    write_results(args.out, "llama_rates", report, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
