"""Document ingestion: in the host process (before) against the ingestion sandbox (after).

What it measures, all in one run and on one machine: for each format a file of
realistic content is generated (seeded, so every run writes the same bytes) in a
temporary directory under ``/var/tmp``, then ``ingest([path], workdir)`` is timed
two ways, side by side:

    before   rlm_host/documents.py as of commit BEFORE (e8beb1c), loaded from git into a
             temporary module: the host parses in its own process, as rlm-host did
    after    today's rlm_host.documents.ingest with policy ``standard``: the host copies
             and hashes, one ingestion container (runc) parses, the host copies the text

    format     input
    text       ~256 MiB prose, wrapped, some UTF-8 (“”, é, —)
    text-1g    ~1 GiB of the same (only with --big, 1 run)
    markdown   ~64 MiB: headings, lists, code, tables, links
    json       ~63 MiB array of objects, indented (parsed whole: under 64 MiB)
    jsonl      ~128 MiB, one compact object a line
    csv        ~128 MiB orders table, some quoted fields
    html       ~32 MiB page: tags, scripts, styles, entities
    pdf        500 Letter pages of text (tests/pdf_fixtures)
    cp1252     ~64 MiB Windows-1252 prose (converted to UTF-8)

Each format and path is measured in a fresh subprocess (``--one FORMAT --path
before|after``) that imports the project first, notes ``getrusage(RUSAGE_SELF)
.ru_maxrss``, runs ``ingest`` ``--runs`` times (best time reported; copies removed
between runs, untimed) and notes the high-water mark again: "peak RSS growth" is
how far one ingest raised the host process's peak (the container's memory is its
own, bounded by ``ingest.memory_mb``). Inputs are read from the page cache. "after"
includes starting and removing the ingestion container (about a second).

Run (from the repository, project importable, pypdf installed, Docker and the kernel
image for "after"):

    python3 bench/ingest.py [--big] [--out bench/results]

It prints a table and writes ``ingest.json`` and ``ingest.md`` to ``--out``. A
default run takes a few minutes on 2 cores. Every generated file is removed at the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))            # rlm_host from this checkout
sys.path.insert(1, str(ROOT / "tests"))  # pdf_fixtures, the tests' stdlib PDF writer

from report import RESULTS, md_table, text_table, write_results  # noqa: E402  (bench/report.py)

MiB = 1 << 20
SEED = 20240601
BEFORE = "e8beb1c"  # the last commit that parsed documents in the host process
PATHS = ("before", "after")
BATCH = 256 * 1024  # roughly how much text one generated batch holds


# -- realistic content ---------------------------------------------------------------

VOCAB = ("the of and to a in is that for it as was with be by on not he this are or his from at "
         "which but have an they you were her she there been one all we their has would when if "
         "more can will no other its time into only some could new these two may first then do "
         "any like my now over such our man me even most made after also did many before must "
         "through back years where much your way well down should because each just those people "
         "how too little state good very make world still own see men work long get here between "
         "both life being under never day same another know while last might us great old year "
         "off come since against go came right used take three report agreement section party "
         "payment notice term data model system value result process review contract service "
         "schedule invoice customer account period request records policy analysis evidence "
         "question answer summary chapter figure table market price cost rate growth budget").split()
WEIGHTS = [1.0 / (rank + 8) for rank in range(len(VOCAB))]  # Zipf-like: common words dominate
CUM_WEIGHTS = [sum(WEIGHTS[: i + 1]) for i in range(len(WEIGHTS))]
ACCENTED = ("café", "naïve", "résumé", "façade", "Zürich", "São Paulo", "€120", "déjà vu",
            "coöperate", "señor", "Ångström", "don’t", "it’s", "1–2", "—")
NAMES = ("Alice Martin", "Bob Chen", "Carla Souza", "Dmitri Ivanov", "Eve Müller", "Farid Haddad",
         "Grace Lee", "Hiro Tanaka", "Ines García", "Jon Olsen", "Kofi Mensah", "Lena Novak")
CITIES = ("Berlin", "Lisbon", "Zürich", "Osaka", "Nairobi", "Toronto", "Austin", "Lyon", "Porto")
COUNTRIES = ("DE", "PT", "CH", "JP", "KE", "CA", "US", "FR", "BR")
ENDINGS = (".",) * 6 + ("?", "!")
PRODUCTS = ("Widget", "Gadget Pro", "Cable, 2 m", "Adapter \"USB-C\"", "Licence (annual)", "Support")


def words(rng: random.Random, low: int, high: int) -> list[str]:
    return rng.choices(VOCAB, cum_weights=CUM_WEIGHTS, k=rng.randint(low, high))


def sentence(rng: random.Random) -> str:
    """A sentence of common words; sometimes a non-ASCII word, a number or a “quotation”."""
    parts = words(rng, 6, 22)
    if rng.random() < 0.15:
        parts.insert(rng.randrange(len(parts)), rng.choice(ACCENTED))
    if rng.random() < 0.1:
        parts.insert(rng.randrange(len(parts)), f"{rng.randint(2, 9999):,}")
    if rng.random() < 0.08 and len(parts) > 4:
        start = rng.randrange(len(parts) - 3)
        parts[start] = "“" + parts[start]
        parts[start + 2] += "”"
    text = " ".join(parts)
    return text[0].upper() + text[1:] + rng.choice(ENDINGS)


def paragraph(rng: random.Random, low: int = 3, high: int = 8) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(low, high)))


def wrapped(rng: random.Random, width: int = 78) -> str:
    return textwrap.fill(paragraph(rng), width=width)


def title(rng: random.Random) -> str:
    return " ".join(words(rng, 2, 6)).capitalize()


# -- streaming writers -----------------------------------------------------------------

def write_until(path: Path, target: int, batches: Iterator[str], *, head: str = "", tail: str = "",
                encoding: str = "utf-8") -> None:
    """Write ``head``, then batches until ``target`` bytes are (about) reached, then ``tail``."""
    ending = tail.encode(encoding)
    with path.open("wb") as out:
        written = out.write(head.encode(encoding))
        for batch in batches:
            if written + len(ending) >= target:
                break
            written += out.write(batch.encode(encoding))
        out.write(ending)


def sampled(pool: Sequence[str], rng: random.Random, sep: str = "") -> Iterator[str]:
    """Endless batches of about ``BATCH`` characters drawn from ``pool`` in a seeded order."""
    per_batch = max(1, BATCH * len(pool) // max(1, sum(map(len, pool))))
    while True:
        yield sep.join(rng.choices(pool, k=per_batch)) + sep


def numbered(pool: Sequence[str], rng: random.Random, form: Callable[[int, str], str],
             sep: str, first_sep: str = "") -> Iterator[str]:
    """Like ``sampled``, but each item gets a running number (row id, record id)."""
    per_batch = max(1, BATCH * len(pool) // max(1, sum(map(len, pool))))
    number = 0
    while True:
        items = []
        for body in rng.choices(pool, k=per_batch):
            number += 1
            items.append(form(number, body))
        yield (first_sep if number == len(items) else sep) + sep.join(items)


# -- one generator per format ----------------------------------------------------------

def make_text(path: Path, target: int, rng: random.Random, encoding: str = "utf-8") -> None:
    pool = [wrapped(rng) + "\n\n" for _ in range(4000)]
    write_until(path, target, sampled(pool, rng), encoding=encoding)


def make_cp1252(path: Path, target: int, rng: random.Random) -> None:
    make_text(path, target, rng, encoding="cp1252")


def make_markdown(path: Path, target: int, rng: random.Random) -> None:
    pool = [markdown_section(rng) for _ in range(2000)]
    write_until(path, target, sampled(pool, rng), head=f"# {title(rng)}\n\n")


def markdown_section(rng: random.Random) -> str:
    blocks = [f"## {title(rng)}", wrapped(rng, 100)]
    kind = rng.randrange(5)
    if kind == 0:
        blocks.append("\n".join(f"- {sentence(rng)} See **{title(rng)}** and `cfg_{rng.randint(1, 99)}`."
                                for _ in range(rng.randint(2, 6))))
    elif kind == 1:
        blocks.append("```python\n" + "\n".join(
            f"def step_{i}(value: int) -> int:\n    return value * {rng.randint(2, 9)} + {i}"
            for i in range(rng.randint(1, 4))) + "\n```")
    elif kind == 2:
        rows = [f"| {title(rng)} | {rng.randint(1, 999)} | {rng.random():.3f} |" for _ in range(rng.randint(2, 8))]
        blocks.append("| name | count | share |\n|---|---:|---:|\n" + "\n".join(rows))
    elif kind == 3:
        blocks.append("> " + textwrap.fill(paragraph(rng, 1, 3), 90).replace("\n", "\n> "))
    else:
        blocks.append("\n".join(f"{i}. {sentence(rng)} ([details](https://example.org/{i}/{rng.randint(1, 9999)}))"
                                for i in range(1, rng.randint(3, 7))))
    blocks.append(wrapped(rng, 100))
    return "\n\n".join(blocks) + "\n\n"


def record(rng: random.Random) -> dict[str, Any]:
    """One realistic JSON object (without its id, which the writers number)."""
    name = rng.choice(NAMES)
    return {
        "uuid": f"{rng.getrandbits(128):032x}",
        "name": name,
        "email": name.split()[0].lower() + f"{rng.randint(1, 999)}@example.com",
        "created_at": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
                      f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
        "active": rng.random() < 0.8,
        "score": round(rng.uniform(0, 100), 2),
        "tags": rng.sample(VOCAB[:60], rng.randint(0, 5)),
        "address": {"city": rng.choice(CITIES), "country": rng.choice(COUNTRIES),
                    "zip": f"{rng.randint(1000, 99999)}"},
        "notes": paragraph(rng, 1, 3) + ("\n\"quoted\" line" if rng.random() < 0.1 else ""),
        "parent": None if rng.random() < 0.7 else rng.randint(1, 10**6),
    }


def make_json(path: Path, target: int, rng: random.Random) -> None:
    pool = [textwrap.indent(json.dumps(record(rng), indent=2, ensure_ascii=False), "  ")[len("  {\n"):]
            for _ in range(3000)]  # each object's fields, indented as an array element
    form = lambda n, body: f'  {{\n    "id": {n:d},\n' + body  # noqa: E731
    write_until(path, target, numbered(pool, rng, form, ",\n"), head="[\n", tail="\n]\n")


def make_jsonl(path: Path, target: int, rng: random.Random) -> None:
    pool = [json.dumps(record(rng), ensure_ascii=False) for _ in range(3000)]
    form = lambda n, body: f'{{"id": {n:d}, ' + body[1:]  # noqa: E731
    write_until(path, target, numbered(pool, rng, form, "\n"), tail="\n")


def csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def make_csv(path: Path, target: int, rng: random.Random) -> None:
    pool = [",".join([f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}", csv_field(rng.choice(NAMES)),
                      rng.choice(COUNTRIES), csv_field(rng.choice(PRODUCTS)), str(rng.randint(1, 40)),
                      f"{rng.uniform(1, 500):.2f}", rng.choice(("paid", "open", "refunded")),
                      csv_field(sentence(rng)) if rng.random() < 0.6 else ""])
            for _ in range(20000)]
    head = "order_id,date,customer,country,product,quantity,unit_price,status,notes\n"
    write_until(path, target, numbered(pool, rng, lambda n, body: f"{n},{body}", "\n"),
                head=head, tail="\n")


ENTITIES = ("&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&nbsp;", "&eacute;", "&mdash;", "&#8217;",
            "&#x201C;", "&copy;", "&hellip;")
SCRIPT = """<script>
(function () {
  var items = document.querySelectorAll(".item-%d");
  for (var i = 0; i < items.length && i < 50; i++) {
    if (items[i].dataset.n > 3 && !items[i].hidden) { items[i].classList.add("on"); }
  }
  window.__state = {"page": %d, "html": "<b>x</b> &amp; y"};
})();
</script>"""
STYLE = """<style>
.item-%d { color: #333; margin: 0 auto; font: 14px/1.4 "Helvetica Neue", sans-serif; }
@media (max-width: 600px) { .item-%d > a:hover { text-decoration: underline; } }
</style>"""


def html_text(rng: random.Random) -> str:
    """Prose with inline markup and entities."""
    parts = paragraph(rng, 2, 5).split(" ")
    for _ in range(len(parts) // 12):
        i = rng.randrange(len(parts))
        parts[i] = rng.choice((f"<em>{parts[i]}</em>", f"<strong>{parts[i]}</strong>",
                               f'<a href="/doc/{rng.randint(1, 9999)}?a=1&amp;b=2">{parts[i]}</a>',
                               parts[i] + " " + rng.choice(ENTITIES)))
    return " ".join(parts)


def html_block(rng: random.Random, n: int) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        inner = "\n".join(f"  <li>{html_text(rng)}</li>" for _ in range(rng.randint(2, 5)))
        body = f"<ul>\n{inner}\n</ul>"
    elif kind == 1:
        rows = "\n".join(f"  <tr><td>{title(rng)}</td><td>{rng.randint(1, 999)}</td>"
                         f"<td>&euro;{rng.uniform(1, 99):.2f}</td></tr>" for _ in range(rng.randint(2, 6)))
        body = f"<table>\n  <tr><th>Name</th><th>Count</th><th>Price</th></tr>\n{rows}\n</table>"
    elif kind == 2:
        body = SCRIPT % (n, n)
    elif kind == 3:
        body = STYLE % (n, n)
    elif kind == 4:
        body = f"<pre><code>for i in range({n}):\n    if i &lt; 3 and ok:\n        print(i)</code></pre>"
    else:
        body = f'<div class="item-{n}"><img src="/img/{n}.png" alt="figure {n}"><br>{html_text(rng)}</div>'
    return (f'<section id="s{n}">\n<h2>{title(rng)}</h2>\n<p>{html_text(rng)}</p>\n{body}\n'
            f"<p>{html_text(rng)}</p>\n<!-- end of section {n} -->\n</section>\n")


def make_html(path: Path, target: int, rng: random.Random) -> None:
    pool = [html_block(rng, n) for n in range(1500)]
    head = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{title(rng)}</title>\n{STYLE % (0, 0)}\n{SCRIPT % (0, 0)}\n</head>\n<body>\n"
            f"<header><nav><a href=\"/\">Home</a> | <a href=\"/docs\">Docs</a></nav></header>\n<main>\n")
    write_until(path, target, sampled(pool, rng), head=head, tail="</main>\n</body>\n</html>\n")


PDF_LINES = 46  # 14-point lines between y=720 and the bottom margin of a Letter page


def make_pdf(path: Path, pages: int, rng: random.Random) -> None:
    from pdf_fixtures import text_pdf

    lines: list[str] = []
    while len(lines) < pages * PDF_LINES:
        lines += [*textwrap.wrap(paragraph(rng), 90), ""]
    path.write_bytes(text_pdf([lines[i * PDF_LINES:(i + 1) * PDF_LINES] for i in range(pages)]))


# -- the formats ------------------------------------------------------------------------

@dataclass(frozen=True)
class Format:
    """One row: a name, the file suffix, how much to generate (bytes, or pages for PDF), runs."""

    name: str
    suffix: str
    amount: int
    make: Callable[[Path, int, random.Random], None]
    runs: int = 3


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("text", ".txt", 256 * MiB, make_text),
    Format("markdown", ".md", 64 * MiB, make_markdown),
    Format("json", ".json", 63 * MiB, make_json),  # under documents.BIG, so it is parsed
    Format("jsonl", ".jsonl", 128 * MiB, make_jsonl),
    Format("csv", ".csv", 128 * MiB, make_csv),
    Format("html", ".html", 32 * MiB, make_html),
    Format("pdf", ".pdf", 500, make_pdf),
    Format("cp1252", ".txt", 64 * MiB, make_cp1252),
)}
BIG_TEXT = Format("text-1g", ".txt", 1024 * MiB, make_text, runs=1)


# -- the measuring child ------------------------------------------------------------------

def max_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def measure_one(kind: str, source: Path, workdir: Path, runs: int, path: str) -> dict[str, Any]:
    """In a fresh process: time ``runs`` ingests of ``source`` one way; peak RSS before and after."""
    ingest = _ingest_before() if path == "before" else _ingest_after()
    if kind == "pdf" and path == "before":
        import pypdf  # noqa: F401 - its import is not part of the document's cost

    notes: set[str] = set()
    times: list[float] = []
    gc.collect()
    before = max_rss_kib()
    for _ in range(runs):
        began = time.perf_counter()
        result = ingest([source], workdir, progress=notes.add)
        times.append(time.perf_counter() - began)
        doc = result.documents[0]
        out_bytes = getattr(doc, "text_bytes", 0) or doc.size
        copied, pages = doc.text_path != doc.source, len(doc.pages)
        clear(workdir)
        del result
        gc.collect()
    after = max_rss_kib()
    return {"times_s": times, "rss_before_kib": before, "rss_after_kib": after,
            "out_bytes": out_bytes, "copied": copied, "pages": pages,
            "notes": sorted(n for n in notes if "% of " not in n and not n.startswith("parsing "))}


def _ingest_before() -> Callable[..., Any]:
    """Today's in-process ingestion as it was before the sandbox (commit BEFORE), run from git."""
    import importlib.util

    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{BEFORE}:rlm_host/documents.py"],
                            capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp(prefix="rlm-ingest-before-")) / "documents_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("rlm_host._documents_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)  # its relative imports resolve inside rlm_host
    return module.ingest


def _ingest_after() -> Callable[..., Any]:
    """The sandboxed ingestion: the host copies and hashes, the ingestion container parses."""
    from rlm_host.documents import ingest
    from rlm_host.policy import load_policy

    policy = load_policy("standard")
    return lambda inputs, workdir, progress: ingest(inputs, workdir, policy=policy, progress=progress)


def clear(workdir: Path) -> None:
    """Remove the copies one ingest left in ``workdir`` (untimed)."""
    for path in workdir.iterdir():
        path.unlink()


def run_child(fmt: Format, source: Path, workdir: Path, runs: int, path: str) -> dict[str, Any]:
    """``measure_one`` in a fresh interpreter; its JSON is the last line of its output."""
    workdir.mkdir(exist_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--one", fmt.name, "--input", str(source),
               "--workdir", str(workdir), "--runs", str(runs), "--path", path]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{fmt.name}: child failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the parent ------------------------------------------------------------------------------

def measure_format(fmt: Format, tmp: Path, runs: int, seed: int) -> dict[str, Any]:
    """Generate the input, measure it before and after in children, delete it; one row of the report."""
    source = tmp / f"input-{fmt.name}{fmt.suffix}"
    began = time.perf_counter()
    fmt.make(source, fmt.amount, random.Random(f"{seed}-{fmt.name}"))
    generated_s = time.perf_counter() - began
    size = source.stat().st_size
    try:
        count = fmt.runs if fmt.runs == 1 else runs
        measured = {path: run_child(fmt, source, tmp / "work", count, path) for path in PATHS}
    finally:
        source.unlink()
    return {"format": fmt.name, "input_bytes": size, "input_mib": size / MiB, "generate_s": generated_s,
            **{path: _summary(size, child) for path, child in measured.items()}}


def _summary(size: int, child: dict[str, Any]) -> dict[str, Any]:
    best = min(child["times_s"])
    return {
        "runs": len(child["times_s"]), "best_s": best, "mib_per_s": size / MiB / best, "times_s": child["times_s"],
        "pages": child["pages"] or None, "pages_per_s": child["pages"] / best if child["pages"] else None,
        "out_mib": child["out_bytes"] / MiB, "copied": child["copied"],
        "rss_before_mib": child["rss_before_kib"] / 1024,
        "peak_rss_growth_mib": max(0, child["rss_after_kib"] - child["rss_before_kib"]) / 1024,
        "notes": child["notes"],
    }


def machine_info(tmp_root: Path) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "memory_gib": round(_meminfo_kib("MemTotal") / MiB, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pypdf": metadata.version("pypdf"),
        "tmp_dir": str(tmp_root),
    }


def _meminfo_kib(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


# -- output ------------------------------------------------------------------------------------

HEADERS = ["format", "input MiB", "before s", "after s", "after/before", "before MiB/s", "after MiB/s",
           "before peak RSS +MiB", "after peak RSS +MiB"]


def fmt_num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def rows(results: list[dict[str, Any]]) -> list[list[str]]:
    return [[r["format"], fmt_num(r["input_mib"]), fmt_num(r["before"]["best_s"], 3), fmt_num(r["after"]["best_s"], 3),
             f"{r['after']['best_s'] / r['before']['best_s']:.2f}x", fmt_num(r["before"]["mib_per_s"]),
             fmt_num(r["after"]["mib_per_s"]), fmt_num(r["before"]["peak_rss_growth_mib"]),
             fmt_num(r["after"]["peak_rss_growth_mib"])] for r in results]


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    notes = [f"- {r['format']}: {n}" for r in report["results"] for n in r["after"]["notes"]]
    parts = [
        "# Ingestion: in-process (before) against the ingestion sandbox (after)", "",
        f"{m['date']} — {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}, pypdf {m['pypdf']}; load average {report['loadavg_before'][0]:.1f} at the start", "",
        f"`ingest([path], workdir)` per format, best of {report['parameters']['runs']} runs (1 for 1 GiB), "
        "inputs in the page cache; each format and each path in a fresh process. \"before\": the host "
        f"parsed in its own process (`rlm_host/documents.py` at {BEFORE}); \"after\": the host copies and "
        "hashes, one ingestion container (runc, policy `standard`) parses. \"peak RSS +MiB\" is how far "
        "the ingest raised the host process's peak RSS (the container's memory is not the host's).", "",
        md_table(HEADERS, rows(report["results"])), "",
    ]
    if notes:
        parts += ["Progress notes from `ingest`:", "", *notes, ""]
    parts += ["Regenerate: `python3 bench/ingest.py [--big] [--out bench/results]` "
              "(see the module docstring).", ""]
    return "\n".join(parts)


# -- main ------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--big", action="store_true", help="also measure a 1 GiB text file (1 run)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--formats", default=",".join(FORMATS), help="comma-separated subset to run")
    ap.add_argument("--runs", type=int, default=2, help="runs per format and path; the best is reported")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--tmp", type=Path, default=Path("/var/tmp"), help="where inputs are generated")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child mode: a kind, with --input/--workdir
    ap.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--path", choices=PATHS, default="after", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    unknown = set(args.formats.split(",")) - set(FORMATS)
    if unknown or args.runs < 1:
        ap.error(f"unknown formats {sorted(unknown)} (known: {', '.join(FORMATS)}), or --runs < 1")
    return args


def selected(args: argparse.Namespace) -> list[Format]:
    chosen = [FORMATS[name] for name in args.formats.split(",")]
    return [*chosen, BIG_TEXT] if args.big else chosen


def run(args: argparse.Namespace) -> dict[str, Any]:
    began = time.monotonic()
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="rlm-ingest-bench-", dir=args.tmp) as tmp_name:
        for fmt in selected(args):
            print(f"{fmt.name}: generating and measuring ...", flush=True)
            results.append(measure_format(fmt, Path(tmp_name), args.runs, args.seed))
            r = results[-1]
            for path in PATHS:
                print(f"  {path}: {r['input_mib']:,.1f} MiB in {r[path]['best_s']:.3f} s, "
                      f"peak RSS +{r[path]['peak_rss_growth_mib']:,.1f} MiB", flush=True)
    return {
        "machine": machine_info(args.tmp),
        "parameters": {"runs": args.runs, "seed": args.seed, "big": args.big,
                       "formats": [f.name for f in selected(args)]},
        "results": results,
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "wall_time_s": round(time.monotonic() - began, 1),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one, args.input, args.workdir, args.runs, args.path)))
        return 0
    report = run(args)
    print()
    print(text_table(HEADERS, rows(report["results"])))
    print(f"\nwall time {report['wall_time_s']} s")
    written = write_results(args.out, "ingest", report, markdown(report))
    print("wrote " + ", ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
