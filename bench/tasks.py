"""Deterministic long-context tasks: S-NIAH needles in real filler, and OOLONG-style counting.

The one place for filler text in the benchmarks and the real-model tests.

- Filler: the source of the Python standard library this interpreter ships (every ``.py`` file under
  ``sysconfig``'s stdlib folder, tests and ``site-packages`` left out), sorted by path, joined, and
  repeated when a task needs more. Licence: the PSF License Agreement (``LICENSE.txt`` in that
  folder), free to use and redistribute. A task always starts at the beginning of the filler, so a
  truncated prompt's prefix repeats across tasks (llama.cpp reuses it). The same Python build gives
  the same tasks; ``filler_info()`` records its version, size and SHA-256 with the results.
- Sizes are in tokens at the project's estimate of 4 characters per token
  (``rlm_host.results.CHARS_PER_TOKEN``): "8K" is 8,192 tokens (32 KiB of text), "1M" 1,048,576 tokens
  (4 MiB), "10M" 40 MiB.
- S-NIAH (RULER's single needle): "The secret access key for project <Name> is <KEY>." on its own
  line at a seeded random depth; correct when the exact key appears in the answer.
- Counting (in the spirit of OOLONG): generated order records, one per line (about 1,400 at 32K,
  45,000 at 1M); the question asks how many have a given status; correct when the exact count appears as a whole
  number in the answer (no tolerance).
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rlm_host.results import CHARS_PER_TOKEN

SIZES = {"8K": 8 * 1024, "32K": 32 * 1024, "128K": 128 * 1024, "1M": 1024 ** 2, "10M": 10 * 1024 ** 2}
SKIP_DIRS = {"site-packages", "test", "tests", "idle_test", "__pycache__"}
CONTROL = {c: " " for c in [*range(0, 9), 11, *range(13, 32), 127]}  # keep \t, \n, \f
SYLLABLES = ["ka", "ro", "ven", "tal", "mi", "dor", "qu", "zen", "ba", "lis", "tor", "nu", "xa", "fel"]
STATUSES = ("shipped", "delivered", "pending", "cancelled", "returned", "on hold")
REGIONS = ("north", "south", "east", "west", "central")


@dataclass(frozen=True)
class Task:
    """One question over one generated text, with what counts as correct."""

    kind: Literal["niah", "count"]
    size: str
    seed: int
    text: str
    question: str
    expected: str
    depth: float | None = None  # where the needle sits (0 = start, 1 = end); None for counting

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.size}-{self.seed}"

    def score(self, answer: str) -> bool:
        """Exact: the key appears verbatim, or the count appears as a whole number (commas allowed)."""
        if self.kind == "niah":
            return self.expected in answer
        return self.expected in {n.replace(",", "") for n in re.findall(r"\d[\d,]*", answer)}


def tokens(label: str) -> int:
    """Tokens in a size label ("8K", "1M", ...) or a plain number."""
    return SIZES[label.upper()] if label.upper() in SIZES else int(label)


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


@functools.cache
def _corpus() -> str:
    root = stdlib_dir()
    files = sorted(p for p in root.rglob("*.py") if not SKIP_DIRS & set(p.relative_to(root).parts[:-1]))
    text = "".join(p.read_text(encoding="utf-8", errors="replace") for p in files)
    return text.translate(CONTROL)


@functools.cache
def _lowered() -> str:
    return _corpus().lower()


def filler_info() -> dict[str, object]:
    """Where the filler comes from, so a result names the exact text it was measured on."""
    corpus = _corpus()
    return {"source": str(stdlib_dir()), "what": "Python standard library source (*.py, no tests)",
            "licence": "PSF License Agreement (LICENSE.txt in the source folder)", "chars": len(corpus),
            "sha256": hashlib.sha256(corpus.encode()).hexdigest(), "chars_per_token": CHARS_PER_TOKEN}


def filler(chars: int) -> str:
    """The first ``chars`` characters of the filler, repeated as often as needed."""
    corpus = _corpus()
    return (corpus * (chars // len(corpus) + 1))[:chars]


def haystack(chars: int, needle: str, depth: float) -> str:
    """About ``chars`` characters of filler with ``needle`` on its own line at ``depth`` (0..1)."""
    text = filler(chars)
    at = text.rfind("\n", 0, int(depth * len(text))) + 1
    return f"{text[:at]}{needle}\n{text[at:]}"


def _unused(rng: random.Random, make: Callable[[random.Random], str]) -> str:
    """A generated word that the filler does not contain (so only the needle has it)."""
    while True:
        word = make(rng)
        if word.lower() not in _lowered():
            return word


def _project(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize()


def _key(rng: random.Random) -> str:
    letters = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(4))
    return f"{letters}-{rng.randrange(1000, 10000)}"


def niah(size: str, seed: int) -> Task:
    """A needle with a random key at a random depth in ``size`` tokens of filler."""
    rng = random.Random(f"niah-{size}-{seed}")
    project, key, depth = _unused(rng, _project), _unused(rng, _key), rng.random()
    text = haystack(tokens(size) * CHARS_PER_TOKEN, f"The secret access key for project {project} is {key}.", depth)
    return Task("niah", size, seed, text, f"What is the secret access key for project {project}?", key,
                round(depth, 4))


def _record(rng: random.Random, number: int, status: str) -> str:
    return (f"order {number:07d} | 2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d} | "
            f"customer C-{rng.randrange(10000, 100000)} | region {rng.choice(REGIONS)} | "
            f"status {status} | total {rng.randrange(100, 100000) / 100:.2f}\n")


def counting(size: str, seed: int) -> Task:
    """Order records filling ``size`` tokens; how many have the seed's chosen status.

    The records and the status depend on the seed alone: a smaller size is a prefix of a larger
    one, so the truncated direct prompt is the same at every size (and llama.cpp reuses it).
    """
    rng = random.Random(f"count-{seed}")
    target, share = rng.choice(STATUSES), rng.uniform(0.03, 0.12)
    others = [s for s in STATUSES if s != target]
    lines, chars, count = [], 0, 0
    while chars < tokens(size) * CHARS_PER_TOKEN:
        hit = rng.random() < share
        lines.append(_record(rng, len(lines) + 1, target if hit else rng.choice(others)))
        chars, count = chars + len(lines[-1]), count + hit
    question = f"How many orders in the text have status {target}? Give the exact number."
    return Task("count", size, seed, "".join(lines), question, str(count))
