"""The ``rlm-host`` command line: thin commands, and one place that turns errors into one line."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .settings import LM_TIMEOUT_S, __version__
from .rlm.endpoints import open_rlm, wants_local
from .events import EventHook, ProgressNote
from .errors import ConfigError, ExitCode, RLMHostError
from .sanitize import json_line, safe_text, visible

if TYPE_CHECKING:  # the CLI imports the heavy modules only in the commands that use them
    from .policy import Policy
    from .results import ExecutionResult

app = typer.Typer(name="rlm-host", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False,
                  help="Recursive Language Models on a security-hardened sandbox.")
image_app = typer.Typer(no_args_is_help=True, help="Build and inspect the kernel image.")
app.add_typer(image_app, name="image")
audit_app = typer.Typer(no_args_is_help=True, help="Verify and read audit logs.")
app.add_typer(audit_app, name="audit")
local_app = typer.Typer(no_args_is_help=True, help="The embedded local model (Qwen2.5-Coder via llama-cpp-python).")
app.add_typer(local_app, name="local-lm")
policy_app = typer.Typer(no_args_is_help=True, help="The packaged security policies: list them, print one to copy.")
app.add_typer(policy_app, name="policy")
err = Console(stderr=True, soft_wrap=True)
_state = {"debug": False}


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    log_json: Annotated[bool, typer.Option("--log-json", help="Application logs on stderr as JSON lines.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.",
                                          callback=lambda value: _print_version(value),  # noqa: PLW0108 - defined below
                                          is_eager=True)] = False,
) -> None:
    from .logs import configure

    configure(as_json=log_json)
    _state["debug"] = debug


def _print_version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit(0)


@image_app.command("build")
def image_build(
    offline: Annotated[bool, typer.Option("--offline/--online",
                                          help="Air-gapped debootstrap base (default) or a registry base "
                                               "image.")] = True,
    base_image: Annotated[str, typer.Option(help="Base image for --online.")] = "python:3.11-slim",
    mirror: Annotated[str | None, typer.Option(help="Debian mirror for --offline (or RLM_HOST_DEBIAN_MIRROR).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the content hash matches.")] = False,
) -> None:
    """Build the kernel image (skipped when an image with the same content hash exists)."""
    from .sandbox.image import build_image

    info = build_image(offline=offline, base_image=base_image, mirror=mirror, force=force,
                       progress=lambda msg: _note("image", msg))
    verb = "built" if info.built else "current"
    print(visible(f"{info.tag} {verb}: {info.size_bytes / 1e6:.0f} MB, {info.seconds:.1f}s, "
          f"content hash {info.content_hash[:12]}"))


@app.command()
def doctor(
    reap: Annotated[bool, typer.Option("--reap",
                                       help="Remove containers and session dirs left by crashed runs.")] = False,
    include_live: Annotated[bool, typer.Option("--all",
                                               help="With --reap: also those of rlm-host processes still "
                                                    "running.")] = False,
    cis: Annotated[bool, typer.Option("--cis", help="Start a sandbox per policy and judge its docker inspect against "
                                                    "CIS Docker Benchmark v1.6.0 section 5 (our check); exit 1 on a "
                                                    "fail.")] = False,
    policy: Annotated[list[str] | None, typer.Option(help="With --cis: policy name or YAML file; repeatable "
                                                             "(default: standard and strict).")] = None,
) -> None:
    """Check Docker, runtimes, the image and leftovers; print the command that fixes each problem."""
    from .doctor import reap_all, run_checks

    if cis:
        _doctor_cis(policy or ["standard", "strict"])
        return
    if reap:
        containers, dirs = reap_all(include_live=include_live)
        print(f"reaped {containers} container(s) and {dirs} session dir(s)")
    _print_checks(run_checks())


def _print_checks(checks: list[Any], *, then: str | None = None) -> None:
    """The checks as a table, each fix as a plain line to copy, then ``then``; exit 1 when one fails."""
    table = Table(show_header=True, header_style="bold")
    for column in ("check", "status", "detail"):
        table.add_column(column)
    for check in checks:
        status = (Text("ok", "green") if check.ok
                  else (Text("fail", "red") if check.required else Text("warn", "yellow")))
        table.add_row(safe_text(check.name), status, safe_text(check.detail))
    Console().print(table)
    for check in checks:  # after the table, one unwrapped plain line each: a command to copy as it is
        if check.fix:
            print(visible(f"fix ({check.name}): {check.fix}"))
    if any(not c.ok and c.required for c in checks):
        raise typer.Exit(1)
    if then:
        print(then)


@app.command("ray-node")
def ray_node(
    policy: Annotated[list[str] | None, typer.Option(help="Policy name or YAML file the node's sessions run under; "
                                                          "repeatable (default: standard and strict).")] = None,
    address: Annotated[str, typer.Option(help="The head's address, for the printed ray start line.")] = "HEAD:6379",
) -> None:
    """Check this machine as a Ray node for batches and print how many sessions it can hold.

    Checks Docker, the runtimes the policies need and the kernel image; then prints the ray start line
    with the rlm_sandbox resource set to the sessions of the largest policy this machine's RAM and
    cores hold (batch --ray refuses nodes that fail these checks, naming what they lack).
    """
    from .batches.admission import Admission, Need
    from .doctor import node_checks
    from .policy import load_policy

    policies = [load_policy(name) for name in policy or ["standard", "strict"]]
    largest = max((Need.of(p) for p in policies), key=lambda need: (need.memory_mb, need.cpus))
    slots = Admission().slots(largest)
    resources = json_line({"rlm_sandbox": slots})
    _print_checks(node_checks(sorted({p.runtime for p in policies})),
                  then=f"ray start --address={address} --resources='{resources}'")


_CIS_STATUS = {"pass": "green", "fail": "red", "na": "dim"}


def _doctor_cis(policies: list[str]) -> None:
    """One sandbox per policy, its inspect data judged by ``rlm_host.sandbox.cis``; exit 1 on any fail."""
    from .sandbox.cis import check_container, inspect_policy_sandbox
    from .policy import load_policy

    table = Table(show_header=True, header_style="bold",
                  title="CIS Docker Benchmark v1.6.0, section 5 (rlm-host's own check, from docker inspect)")
    for column in ("policy", "id", "recommendation", "status", "detail"):
        table.add_column(column)
    failed = False
    for name in policies:
        loaded = load_policy(name)
        for finding in check_container(inspect_policy_sandbox(loaded)):
            failed |= finding.status == "fail"
            table.add_row(safe_text(loaded.name), safe_text(finding.id), safe_text(finding.title),
                          safe_text(finding.status, _CIS_STATUS.get(finding.status)), safe_text(finding.detail))
    Console().print(table)
    if failed:
        raise typer.Exit(1)


@app.command("exec")
def exec_cell(
    code_file: Annotated[str, typer.Argument(metavar="CODE_FILE|-", help="Python file to run, or - for stdin.")],
    policy: Annotated[str, typer.Option(help="Policy name (standard, strict) or a policy YAML file.")] = "standard",
    context: Annotated[list[Path] | None, typer.Option(help="File or folder readable in the cell as `context`; "
                                                            "repeatable.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Cell time limit in seconds (default: the policy's).")] = None,
) -> None:
    """Run one cell in a fresh sandbox and print one JSON object with its result.

    The cell's log is sealed however it ends (done, error, Ctrl-C, SIGTERM); its path goes to stderr.
    """
    from .oneshot import run_cell
    from .policy import load_policy

    loaded = load_policy(policy)
    if timeout is not None:
        if timeout <= 0:
            raise ConfigError(f"--timeout must be positive (got {timeout:g})")
        loaded = loaded.with_limits(cell_timeout_s=timeout)
    code = _read_code(code_file)
    with _log_path_said():
        try:
            result, log = run_cell(loaded, code, list(context or []), progress=_dim, skipped=_skipped)
        except BaseException as exc:
            if (known := getattr(exc, "cell_result", None)) is not None:
                _print_exec_result(known, loaded, exc.audit_log)  # type: ignore[attr-defined]
            raise
    _say_log(log)
    _print_exec_result(result, loaded, log)


def _say_log(path: object) -> None:
    """The stderr line every run and exec ends with, whatever ended it."""
    err.print(safe_text(f"audit log: {path}"), soft_wrap=True)


def _print_exec_result(result: ExecutionResult, policy: Policy, audit_path: Path) -> None:
    """The one JSON object `exec` prints: the cell's result, the policy that ran it and where its log is."""
    fields = result.model_dump(mode="json")
    print(json_line({"status": fields.pop("status"), **fields, "policy": policy.name,
                     "policy_sha256": policy.sha256, "audit_log": str(audit_path)}))


def _note(source: str, message: object) -> None:
    """A progress line from a build or a server, whose text may echo what a process printed."""
    err.print(Text.assemble((f"{source}: ", "dim"), safe_text(message)))


def _dim(message: object) -> None:
    err.print(safe_text(message, "dim"))


def _skipped(path: object, why: object) -> None:
    """One line for a file left out; its name and the reason may be hostile."""
    err.print(Text.assemble(("skipped", "yellow"), " ", safe_text(f"{path}: {why}")))


@app.command()
def run(
    query: Annotated[str, typer.Option("--query", "-q", help="The question to answer.")],
    context: Annotated[list[Path], typer.Option(help="File or folder to answer from (text, Markdown, JSON, JSONL, CSV, "
                                                     "HTML, PDF); repeatable.")],
    policy: Annotated[str, typer.Option(help="Policy name (standard, strict) or a policy YAML file.")] = "standard",
    model: Annotated[str | None, typer.Option(help="Root model (or RLM_HOST_MODEL); needs an endpoint: --base-url, "
                                                      "OPENAI_BASE_URL or OPENAI_API_KEY.")] = None,
    sub_model: Annotated[str | None,
                         typer.Option(help="Model for llm_query sub-calls (default: the root model).")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint (or OPENAI_BASE_URL).")] = None,
    max_iterations: Annotated[int, typer.Option(min=1, help="Root-model turns before the last-resort answer.")] = 20,
    max_depth: Annotated[int | None, typer.Option(min=1, max=8,
                                                  help="rlm_query recursion depth (default: the policy's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")] = False,
    quality: Annotated[bool, typer.Option("--quality",
                                          help="Local model only: the 1.5B as root (slower, better).")] = False,
    lm_timeout: Annotated[float, typer.Option(min=1,
                                              help="Seconds to wait for one model reply before it counts as failed and "
                                                   "is retried.")] = LM_TIMEOUT_S,
    otlp_endpoint: Annotated[str | None, typer.Option(
        callback=lambda url: _checked_endpoint(url),  # noqa: PLW0108 - defined below
        help="Send the run's OpenTelemetry traces (OTLP/HTTP) to this URL, e.g. http://127.0.0.1:4318/v1/traces "
             "(or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT); spans keep only what the "
             "audit level keeps. Needs the otel extra.")] = None,
) -> None:
    """Answer a question over documents with a Recursive Language Model in the sandbox.

    With no OPENAI_API_KEY, no --base-url and no --model, the embedded local model answers.
    However the run ends, its log is sealed with the reason and its path printed on stderr.
    """
    from .events import fan_out
    from .review.progress import Progress
    from .review.text import render_result

    show = err.is_terminal and not as_json
    wants_local(base_url, model)  # a model named with no endpoint is refused before anything starts
    with _traces(otlp_endpoint) as traces, Progress(enabled=show, console=err) as progress, _log_path_said(), \
            open_rlm(model=model, sub_model=sub_model, base_url=base_url, quality=quality, policy=policy,
                     on_event=fan_out(progress.event, traces), progress=progress.note,
                     max_iterations=max_iterations, max_depth=max_depth, timeout_s=lm_timeout) as rlm:
        result = rlm.complete(query, list(context))
    if as_json:
        print(json_line(result.model_dump(mode="json")))
    else:
        render_result(result, Console(soft_wrap=True))
    _say_log(result.audit_log)


def _checked_endpoint(url: str | None) -> str | None:
    """``--otlp-endpoint`` is an http(s) URL, or a usage error naming what is wrong."""
    if url is None:
        return None
    from .telemetry import endpoint_url

    try:
        return endpoint_url(url)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command("batch")
def batch_cmd(
    tasks: Annotated[Path, typer.Argument(help="Tasks: JSONL, one object per line with id, query and context (a "
                                                "list of paths), optional policy, model, sub_model, max_iterations; "
                                                "or CSV with those columns (context paths separated by ;).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for results.jsonl and every task's audit log; the "
                                                          "same command again resumes.")],
    policy: Annotated[str, typer.Option(help="Policy for tasks that name none.")] = "standard",
    model: Annotated[str | None, typer.Option(help="Root model for tasks that name none.")] = None,
    sub_model: Annotated[str | None, typer.Option(help="Sub-call model for tasks that name none.")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint (or OPENAI_BASE_URL).")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="At most this many runs at once (never more than "
                                                                "the host's memory and cores allow).")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed",
                                               help="Run again the tasks whose last result is a failure.")] = False,
    ray: Annotated[str | None, typer.Option("--ray", metavar="[ADDRESS]",
                                            help="Run the tasks on a Ray cluster: ADDRESS, else RAY_ADDRESS, else "
                                                 "auto (the cluster this machine is a node of).")] = None,
    ray_transfer: Annotated[str, typer.Option(help="With --ray: how documents and logs reach the nodes: shared (a "
                                                   "path every node mounts), object-store, or auto (shared when "
                                                   "every node sees them).")] = "auto",
) -> None:
    """Run many audited RLM runs from a tasks file, as many at once as this host can hold.

    Each task is its own `rlm-host run` (own sandbox, own audit log under OUT/audit/); each result is
    appended to OUT/results.jsonl when its task ends. A bad line is named with its number and the rest
    still run. Exit 0 when every line was a task and every task answered, 1 otherwise; Ctrl-C or
    SIGTERM stop every run cleanly, and running the command again goes on where it stopped. With
    --ray each task is a Ray task on a node that offers the rlm_sandbox resource (docs/batch.md).
    """
    from rich.live import Live

    from .batches import Tally, batch
    from .settings import ray_address

    wants_local(base_url, model)  # a model named with no endpoint is refused before anything starts

    def say(line: str) -> None:
        err.print(Text.assemble(("batch", "cyan"), " ", safe_text(line)))

    tally = Tally()

    class _Status:  # the live line on a terminal: rich renders it again on every refresh
        def __rich__(self) -> Text:
            return Text.assemble(("batch", "bold cyan"), " ", safe_text(tally.line()))

    with Live(_Status(), console=err, refresh_per_second=2, transient=True) if err.is_terminal else nullcontext():
        outcome = batch(tasks, out, concurrency=concurrency, policy=policy, base_url=base_url, model=model,
                        sub_model=sub_model, retry_failed=retry_failed, say=say, tally=tally,
                        ray=None if ray is None else (ray or ray_address()), transfer=ray_transfer)
    say(f"{outcome.tally.line()}; {len(outcome.problems)} bad lines; results: {outcome.results}")
    if not outcome.complete:
        raise typer.Exit(1)


@contextmanager
def _traces(url: str | None) -> Iterator[EventHook | None]:
    """The OTLP exporter's hook when an endpoint is named (option, then environment), else nothing."""
    from .settings import otlp_endpoint

    url = url or otlp_endpoint()
    if not url:
        yield None
        return
    from .telemetry import endpoint_url, label, otlp_traces

    err.print(Text.assemble(("traces", "cyan"), " ", safe_text(f"to {label(endpoint_url(url))}")))
    with otlp_traces(url, say=lambda line: err.print(Text.assemble(("warning", "yellow"), " ", safe_text(line)))) \
            as hook:
        yield hook


@contextmanager
def _log_path_said() -> Iterator[None]:
    """A run that fails still says where its log is (``exc.audit_log``, set where the log was sealed).

    Our errors keep their one line, which ends with the log's path; Ctrl-C, a signal or a crash get
    the stderr line "audit log: PATH".
    """
    try:
        yield
    except RLMHostError as exc:
        path = getattr(exc, "audit_log", None)
        if path is not None and len(exc.args) == 1:
            exc.args = (f"{exc.args[0]} (audit log: {path})",)
        raise
    except BaseException as exc:
        path = getattr(exc, "audit_log", None)
        if path is not None:
            _say_log(path)
        raise


@app.command()
def report(
    file: Annotated[Path, typer.Argument(help="An audit log (.jsonl), or a folder of them.")],
    output: Annotated[Path, typer.Option("--output", "-o",
                                         help="Where to write the HTML page (for a folder: the index).")],
) -> None:
    """Write one self-contained HTML page for reviewing a run (no network fetches).

    A log that does not verify still gets its page, with a warning first. Exit as `audit verify`: 0 intact,
    1 tampered, 2 unfinished, 3 not an audit log, 4 not found, 5 no key to verify it. For a folder: each
    run's report beside OUTPUT, and OUTPUT an index linking them; the exit code is the gravest log's.
    For a batch's folder (`rlm-host batch --out DIR`): one row per task, with its run's answer.
    """
    from .review.report import render

    if file.is_dir():
        _report_folder(file, output)
    made = render(_existing(file))
    try:
        output.write_text(made.html, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {output}: {exc.strerror}") from exc
    print(visible(f"wrote {output} ({len(made.html) / 1024:.0f} KB)"))
    if made.exit_code:
        print(visible(f"rlm-host: warning: {made.problem}; the page says so first"), file=sys.stderr)
        raise typer.Exit(made.exit_code)


def _report_folder(folder: Path, output: Path) -> None:
    from .review.report_index import write_batch_index, write_index

    if (folder / "results.jsonl").is_file():  # a batch's folder: one row per task
        index = write_batch_index(folder, output)
        print(visible(f"wrote {output}: {len(index.summaries) + index.missing} task(s), "
                      f"{len(index.reports)} report(s) beside it"))
    else:
        index = write_index(folder, output)
        print(visible(f"wrote {output}: {len(index.summaries)} run(s), {len(index.reports)} report(s) beside it"))
    raise typer.Exit(index.exit_code)


@app.command()
def tui(
    replay: Annotated[Path | None, typer.Option(help="Step through the run recorded in this audit log.")] = None,
    query: Annotated[str | None, typer.Option("--query", "-q", help="Run this question live.")] = None,
    context: Annotated[list[Path] | None, typer.Option(help="File or folder for the live run; repeatable.")] = None,
    policy: Annotated[str, typer.Option(help="Policy for the live run.")] = "standard",
    model: Annotated[str | None, typer.Option(help="Root model; needs an endpoint (--base-url, OPENAI_BASE_URL "
                                                      "or OPENAI_API_KEY).")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint (or OPENAI_BASE_URL).")] = None,
    max_iterations: Annotated[int, typer.Option(min=1, help="Root-model turns before the last-resort answer.")] = 20,
    quality: Annotated[bool, typer.Option("--quality", help="Local model only: the 1.5B as root.")] = False,
) -> None:
    """Review a run step by step beside the paper: live (--query/--context) or replayed (--replay).

    Keys: n/p (or down/up) next/previous step, ]/[ next/previous iteration, Home/End first/last
    step, PageUp/PageDown, / search, f full outputs, space play/pause, q quit. Needs a terminal.
    Live, q stops the run at its next step; the log's path is printed when the TUI ends.
    """
    from .audit import events
    from .review.tui import RLMApp
    from .review.tui.live import run_live

    if replay is not None:
        recorded = events(_existing(replay))
        _need_terminal()
        _run_app(RLMApp(recorded, title=replay.name))
        return
    if not query or not context:
        raise ConfigError("tui needs --replay FILE, or --query and --context to run live")
    wants_local(base_url, model)  # a model with no endpoint is refused before the app opens
    _need_terminal()
    app = RLMApp(live=True, title=query)

    def start(hook: Any) -> Any:
        note = lambda message: ProgressNote(message).to(hook)  # noqa: E731
        with open_rlm(model=model, base_url=base_url, quality=quality, policy=policy, on_event=hook,
                      progress=note, max_iterations=max_iterations) as rlm:
            return rlm.complete(query, list(context))

    live = run_live(app, start)
    _run_app(app, after=lambda: _print_log_path(live.log_path()))


def _need_terminal() -> None:
    """The TUI reads keys from a terminal; without one it would draw into a pipe and wait for nothing."""
    if not sys.stdin.isatty() or not (sys.stdout.isatty() or sys.stderr.isatty()):
        raise ConfigError("the TUI needs a terminal (stdin and stdout); without one, read the run with "
                          "`rlm-host audit show FILE` or `rlm-host report FILE -o run.html`")


def _print_log_path(path: Path | None) -> None:
    """The live run's log, once the app is gone: where to review it again."""
    if path is not None:
        print(visible(f"audit log: {path}"), file=sys.stderr)


def _run_app(app: Any, after: Any = None) -> None:
    """Run the TUI; if it failed, one error line and a non-zero exit (never 0 after a crash).

    SIGTERM or SIGHUP end it with 128 + the signal's number and one line saying so. ``after`` runs
    once the app is gone, however it ended (the live TUI prints its log's path there).
    """
    from .review.tui.signals import StopOnSignal

    with StopOnSignal(app) as stop:
        app.run()
    if after is not None:
        after()
    if stop.code:
        print(f"rlm-host: the TUI stopped on {signal.Signals(stop.code - 128).name}", file=sys.stderr)
        sys.exit(stop.code)
    if app.return_code:
        raise RLMHostError(f"the TUI stopped: {app.failure or 'exit code ' + str(app.return_code)}")


@audit_app.command("verify")
def audit_verify(
    path: Annotated[Path, typer.Argument(help="An audit log (.jsonl), or a folder of them.")],
    pubkey: Annotated[Path | None, typer.Option(help="Verify with this public key (or a folder of *.pub) alone: no "
                                                      "HMAC key needed.")] = None,
    manifest: Annotated[Path | None, typer.Option(help="Check the folder against this signed manifest: no run "
                                                        "dropped, added or swapped.")] = None,
) -> None:
    """Check the keyed hash chain and the seal; a folder: every log in it, then a tally.

    With --pubkey: the signed checkpoints and seal instead, with no secret (a log cut after a checkpoint
    verifies up to it: exit 2). With --manifest: the folder's logs against a signed manifest (the host's
    public keys unless --pubkey). Exit 0 intact and sealed, 1 tampered, 2 unfinished, 3 not an audit log,
    4 not found or unreadable, 5 no key to verify with; for a folder, the gravest of its logs'. Reads only.
    """
    from .audit import verify
    from .errors import worst
    from .review.runs import find_logs, summarize_all, tally

    if manifest is not None:
        _verify_manifest(manifest, path, pubkey)
    if pubkey is not None:
        _verify_signed(path, pubkey)
    if not path.is_dir():
        verdict = verify(path)
        print(visible(verdict.summary(path)))
        raise typer.Exit(verdict.exit_code)
    summaries = summarize_all(find_logs(path))
    for summary in summaries:
        print(visible(summary.verdict))
    print(visible(tally(summaries)))
    raise typer.Exit(worst(s.exit_code for s in summaries))


def _verify_signed(path: Path, pubkey: Path) -> None:
    """``audit verify --pubkey``: each log with the public key alone; a folder: each, then the gravest code."""
    from .checkpoints import summary, verify_signed
    from .errors import AuditReadError, worst
    from .signing import load_verifiers

    verifiers = load_verifiers(pubkey)
    if not path.is_dir():
        verdict = verify_signed(path, verifiers)
        print(visible(summary(verdict, path)))
        raise typer.Exit(verdict.exit_code)
    codes = []
    for log in sorted(path.glob("*.jsonl")):
        try:
            verdict = verify_signed(log, verifiers)
        except AuditReadError as exc:
            print(visible(f"{exc}"))
            codes.append(exc.exit_code)
            continue
        print(visible(summary(verdict, log)))
        codes.append(verdict.exit_code)
    print(f"{len(codes)} log(s) checked with the public key")
    raise typer.Exit(worst(codes))


def _verify_manifest(manifest: Path, folder: Path, pubkey: Path | None) -> None:
    from .audit import quoted
    from .checkpoints import compare, read_manifest
    from .signing import load_verifiers

    listed, key = read_manifest(manifest, load_verifiers(pubkey))
    problems = compare(listed, folder)
    for problem in problems:
        print(visible(problem))
    verdict = f"{len(problems)} problem(s)" if problems else "every run present and unchanged"
    print(visible(f"manifest {quoted(manifest)}: {len(listed)} run(s) signed by {key}; {verdict}"))
    raise typer.Exit(ExitCode.TAMPERED if problems else ExitCode.INTACT)


@audit_app.command("keygen")
def audit_keygen(force: Annotated[bool, typer.Option(help="Replace the key; the old public key is kept, so logs "
                                                          "it signed still verify.")] = False) -> None:
    """Make this host's Ed25519 key: from now on each new log's checkpoints and seal are signed with it."""
    from .signing import keygen, private_key_path, public_key_path

    signer = keygen(force=force)
    print(f"key id: {signer.key_id}")
    print(visible(f"private key: {private_key_path()} (0600)"))
    print(visible(f"public key: {public_key_path()}"))


@audit_app.command("pubkey")
def audit_pubkey() -> None:
    """The path of the public key that verifies this host's logs (give it to a reviewer)."""
    from .signing import host_signer, public_key_path

    if host_signer() is None or not public_key_path().exists():
        raise ConfigError("this host has no signing key: make one with `rlm-host audit keygen`")
    print(visible(str(public_key_path())))


@audit_app.command("manifest")
def audit_manifest(
    folders: Annotated[list[Path], typer.Argument(help="Folders of audit logs.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The manifest file to write.")],
) -> None:
    """Sign one list of every run in the folders (file, run id, lines, chain head), for `audit verify --manifest`."""
    from .checkpoints import write_manifest
    from .signing import host_signer

    signer = host_signer()
    if signer is None:
        raise ConfigError("this host has no signing key to sign a manifest: make one with `rlm-host audit keygen`")
    count = write_manifest(folders, output, signer)
    print(visible(f"manifest {output}: {count} run(s), signed by {signer.key_id}"))


@audit_app.command("show")
def audit_show(
    file: Annotated[Path, typer.Argument(help="An audit log (.jsonl).")],
    kind: Annotated[list[str] | None, typer.Option(help="Only events of this kind or family (run, document, "
                                                           "iteration, root, cell, subcall, limit ...); "
                                                           "repeatable.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the events as JSON lines.")] = False,
) -> None:
    """A readable timeline of a run (unfinished logs too); exits with the log's verification (see `verify`).

    A log that is not intact and sealed gets one line on stderr saying so after the timeline.
    """
    from .audit import check_kind, events, of_kind
    from .review.text import render_timeline

    kinds = [check_kind(k) for k in kind or []]
    chosen = [e for e in events(file) if not kinds or of_kind(e, kinds)]
    if as_json:
        for event in chosen:
            print(json_line(event))
    else:
        render_timeline(chosen, Console(soft_wrap=True))
    raise typer.Exit(_verification(file))


def _verification(file: Path) -> int:
    """The log's exit code from the table; anything but intact is one line on stderr."""
    from .audit import verify
    from .errors import NoAuditKey

    try:
        verdict = verify(file)
    except NoAuditKey as exc:
        print(f"rlm-host: {visible(str(exc))}", file=sys.stderr)
        return exc.exit_code
    if verdict.status != "intact":
        print(f"rlm-host: {visible(verdict.summary(file))}", file=sys.stderr)
    return verdict.exit_code


@audit_app.command("list")
def audit_list(
    folder: Annotated[Path | None, typer.Argument(help="A folder of audit logs (default: RLM_HOST_AUDIT_DIR).")] = None,
    status: Annotated[list[str] | None, typer.Option(help="Only runs with this status (answered, last_resort, "
                                                             "failed, exec, unfinished) or verification (intact, "
                                                             "tampered, no-key ...); repeatable.")] = None,
    since: Annotated[str | None, typer.Option(help="Only runs started on or after this date "
                                                   "(YYYY-MM-DD[THH:MM]).")] = None,
    until: Annotated[str | None, typer.Option(help="Only runs started before the end of this date "
                                                   "(YYYY-MM-DD[THH:MM]).")] = None,
    grep: Annotated[str | None, typer.Option(help="Only runs whose query, answer, run id or file name has "
                                                  "this text.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per run.")] = False,
) -> None:
    """One line per run: when, status, verification, cost, denials, limits hit, seal reason, file, query."""
    from .settings import audit_dir
    from .review.runs import HEADER, check_status, find_logs, keep, line, parse_when, summarize_all

    statuses = [check_status(s) for s in status or []]
    start = parse_when(since) if since else None
    end = parse_when(until, end_of_day=True) if until else None
    shown = [s for s in summarize_all(find_logs(folder or audit_dir()))
             if keep(s, statuses=statuses, since=start, until=end, grep=grep)]
    if not as_json:
        print(HEADER)
    for summary in shown:
        print(json_line(summary.to_json()) if as_json else visible(line(summary)))


@audit_app.command("diff")
def audit_diff(
    a: Annotated[Path, typer.Argument(help="An audit log (.jsonl).")],
    b: Annotated[Path, typer.Argument(help="Another run's audit log, of the same query.")],
) -> None:
    """What differs between two runs of the same query: code, sub-calls, answers, costs.

    Exits with the graver of the two logs' verifications (0 when both are intact), not with whether they differ.
    """
    from .review.diff import compare
    from .errors import worst

    for text in compare(a, b):
        print(visible(text))
    raise typer.Exit(worst((_verification(a), _verification(b))))


@audit_app.command("cite")
def audit_cite(
    file: Annotated[Path, typer.Argument(help="An audit log (.jsonl) of a run.")],
    documents: Annotated[list[Path] | None, typer.Option("--documents", help="Look for the documents here: files "
                                                         "(matched by file name) or folders (the document's name "
                                                         "under each); repeatable. Default: the paths recorded "
                                                         "at ingestion.")] = None,
    pubkey: Annotated[Path | None, typer.Option(help="Verify the log with this public key (or folder of *.pub) "
                                                     "instead of the HMAC key.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per citation.")] = False,
) -> None:
    """Check every citation of a verified run against the document files on disk: matched, moved or missing.

    The log must verify (intact and sealed) first. matched: the file's SHA-256 is the ingested one and
    the quote is at its offsets (a PDF: by hash alone, never parsed on the host); moved: the file
    changed but still holds the quote (its new offsets and line are shown); missing: the file is gone,
    or the quote is no longer in it. Exit 0 only when every citation matched (and there is one), 1 otherwise.
    """
    from .review.cite_check import check_all, render, tally

    records = _verified_records(file, pubkey)
    results = check_all(records, documents or [])
    for result in results:
        print(json_line(result.to_json()) if as_json else visible(render(result)))
    if not as_json:
        print(visible(tally(results)) if results else "the run cites nothing: no citation to check")
    raise typer.Exit(0 if results and all(r.status == "matched" for r in results) else 1)


def _verified_records(file: Path, pubkey: Path | None) -> list[dict[str, Any]]:
    """The log's events, once it verifies intact and sealed; else one line and exit 1."""
    from .audit import events, verify
    from .errors import AuditReadError

    try:
        if pubkey is not None:
            from .checkpoints import summary, verify_signed
            from .signing import load_verifiers

            verdict = verify_signed(file, load_verifiers(pubkey))
            said = summary(verdict, file)
        else:
            verdict = verify(file)
            said = verdict.summary(file)
    except AuditReadError as exc:
        _error(f"cannot check citations: the log does not verify: {exc}", 1)
    if verdict.status != "intact":
        _error(f"cannot check citations of an unverified log: {said}", 1)
    return events(file)


def _existing(file: Path) -> Path:
    """The path, once it reads as an audit log (else a one-line error with its exit code, 3 or 4)."""
    from .audit import read_log

    read_log(file)
    return file


@policy_app.command("list")
def policy_list() -> None:
    """The packaged policies (name, runtime, audit level, description) and seccomp profiles."""
    from .policy import available_policies, load_policy, policies_dir

    for name in available_policies():
        loaded = load_policy(name)
        print(visible(f"{name:<24}{loaded.runtime:<7}audit {loaded.audit_level:<10}{loaded.description}"))
    for profile in sorted(policies_dir().glob("*.json")):
        print(visible(f"{profile.name:<24}seccomp profile"))
    print("print one with `rlm-host policy show NAME`; copy and edit it: "
          "`rlm-host policy show standard > my.yaml`, then `--policy my.yaml`")


@policy_app.command("show")
def policy_show(name: Annotated[str, typer.Argument(help="A packaged policy (standard, strict) or profile "
                                                         "(seccomp-standard.json).")]) -> None:
    """Print a packaged policy's YAML (or a profile's JSON) as shipped, to read or to copy and edit."""
    from .policy import packaged_text

    sys.stdout.write(packaged_text(name))


@local_app.command("fetch")
def local_fetch(quality: Annotated[bool, typer.Option("--quality", help="Also the 1.5B root model.")] = False) -> None:
    """Download, join and verify the model weights (cached; a second fetch is instant)."""
    from .rlm import local_lm

    for model in {m.name: m for m in local_lm.choose(quality).values()}.values():
        path = local_lm.fetch(model, progress=lambda msg: _note("local-lm", msg))
        print(visible(f"{model.name}: {path} (sha256 {model.sha256[:16]}... verified)"))


@local_app.command("serve")
def local_serve(quality: Annotated[bool, typer.Option("--quality", help="The 1.5B as root.")] = False) -> None:
    """Start the local model servers and keep them for later runs (stop with `local-lm stop`)."""
    from .rlm import local_lm

    if local_lm.kept():
        raise ConfigError("local model servers are already running: `rlm-host local-lm status`, or stop them first")
    servers = local_lm.start_servers(quality, detach=True, progress=lambda msg: _note("local-lm", msg))
    local_lm.save(servers)
    for role, server in servers.items():
        print(visible(f"{role}: {server.model} at {server.base_url} (pid {server.pid})"))


@local_app.command("status")
def local_status() -> None:
    """Show the kept local model servers; exit 1 when none runs."""
    from .rlm import local_lm

    servers = local_lm.kept()
    if not servers:
        print("no local model server is running (start one with `rlm-host local-lm serve`)")
        raise typer.Exit(1)
    for role, server in servers.items():
        print(visible(f"{role}: {server.model} at {server.base_url} (pid {server.pid}, log {server.log})"))


@local_app.command("stop")
def local_stop() -> None:
    """Stop the kept local model servers (by process id)."""
    from .rlm import local_lm

    servers = local_lm.kept()
    for server in servers.values():
        local_lm.stop(server)
    local_lm.forget()
    print(f"stopped {len(servers)} local model server(s)")


def _read_code(code_file: str) -> str:
    if code_file == "-":
        return sys.stdin.read()
    path = Path(code_file)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"code file {path} not found; pass a Python file or - for stdin") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read code file {path}: {exc}") from exc


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; print our errors, and usage errors, as one line with a non-zero exit."""
    from typer import Abort
    from typer._click.exceptions import ClickException  # typer vendors click; no public name for it

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    # A mask inherited from whoever started us (Ray's node processes block SIGINT, and a Ray task's
    # children inherit it) would keep Ctrl-C, and a batch's stop, from ever reaching the run.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    try:
        code = app(args=_ray_address_optional(sys.argv[1:] if argv is None else argv), prog_name="rlm-host",
                   standalone_mode=False)  # Ctrl-C: typer's Exit(130)
    except RLMHostError as exc:
        if _state["debug"]:
            raise
        _error(str(exc), exc.exit_code)
    except ClickException as exc:  # a usage error can quote the hostile option value
        if not exc.format_message():  # no arguments: the help was the answer
            sys.exit(_click_code(exc))
        _error(f"{exc.format_message()} (see --help)", _click_code(exc))
    except Abort:
        _error("aborted", 1)
    sys.exit(code if isinstance(code, int) else 0)


def _ray_address_optional(args: list[str]) -> list[str]:
    """``batch ... --ray`` with no address (last, or before another option) means RAY_ADDRESS, else auto:
    typer has no option whose value may be left out, so the empty value is filled in here."""
    out = list(args)
    for index, arg in enumerate(args):
        if arg == "--ray" and (index + 1 == len(args) or args[index + 1].startswith("-")):
            out.insert(index + 1 + (len(out) - len(args)), "")
    return out


def _click_code(exc: Exception) -> int:
    """Usage errors exit 64 (EX_USAGE), so that 2 only ever means an unfinished audit log."""
    from typer._click.exceptions import UsageError

    return ExitCode.USAGE if isinstance(exc, UsageError) else getattr(exc, "exit_code", 1)


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM/SIGHUP raise SystemExit(128 + n): the run unwinds, closes its sandboxes and seals its
    log as "terminated". A second signal during that unwinding is ignored, so cleanup is not cut short."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(128 + signum)


def _error(message: str, code: int) -> None:
    """The one error line: its text may quote a file name or a model's words, so it is made visible."""
    print(f"rlm-host: error: {visible(message)}", file=sys.stderr)
    sys.exit(code)
