"""Sessions: state across cells, documents from the read-only mount, the warm pool."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from rlm_host.errors import ConfigError, SessionClosed
from rlm_host.policy import Policy
from rlm_host.sandbox import DockerSandbox, WarmPool

pytestmark = pytest.mark.docker


def test_state_persists_across_cells(shared_sandbox: DockerSandbox) -> None:
    """Variables, imports and functions defined in one cell are there in the next."""
    shared_sandbox.execute("import math\ndef area(r):\n    return math.pi * r * r\ntotal = 0")
    for _ in range(3):
        shared_sandbox.execute("total += 1")
    result = shared_sandbox.execute("round(area(2), 3), total")
    assert result.status == "ok" and result.result == "(12.566, 3)"


def test_results_errors_and_streams(shared_sandbox: DockerSandbox) -> None:
    """stdout, stderr, the last expression and an exception come back separately."""
    result = shared_sandbox.execute("import sys\nprint('out')\nprint('err', file=sys.stderr)\n40 + 2")
    assert (result.stdout, result.stderr, result.result) == ("out\n", "err\n", "42")
    failed = shared_sandbox.execute("def f():\n    raise ValueError('bad value')\nf()")
    assert failed.status == "error" and failed.error.name == "ValueError"
    assert failed.error.value == "bad value" and any("f()" in line for line in failed.error.traceback)


def test_one_document(policy: Policy, tmp_path: Path) -> None:
    """One file is `context`, with its name and span in `documents`."""
    doc = tmp_path / "contract.txt"
    doc.write_text("Clause 7: the tenant pays on the first day of the month.\n")
    with DockerSandbox.start(policy, [doc]) as sandbox:
        result = sandbox.execute("print(context.find('Clause 7'), len(context), documents[0].name)")
    assert result.stdout == f"0 {len(doc.read_text())} contract.txt\n"


def test_several_documents(policy: Policy, tmp_path: Path) -> None:
    """Several files are joined in order; each document's span selects its own text."""
    texts = {"a.md": "# Alpha\nfirst", "b.json": '{"beta": 2}', "c.txt": "gamma ünïcode"}
    paths = []
    for name, text in texts.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        paths.append(tmp_path / name)
    with DockerSandbox.start(policy, paths) as sandbox:
        code = "import json\nprint(json.dumps({d.name: context[d.start:d.end] for d in documents}))"
        result = sandbox.execute(code)
    assert json.loads(result.stdout) == texts


def test_private_documents_are_copied_readable(policy: Policy, tmp_path: Path) -> None:
    """A document only the host user can read is still readable in the sandbox (copied)."""
    doc = tmp_path / "secret.txt"
    doc.write_text("for your eyes only")
    doc.chmod(0o600)
    with DockerSandbox.start(policy, [doc]) as sandbox:
        assert sandbox.execute("print(context)").stdout == "for your eyes only\n"
    assert doc.stat().st_mode & 0o777 == 0o600  # the original is untouched


def test_200mb_document_is_read_from_the_mount(policy: Policy, tmp_path: Path) -> None:
    """A 200 MB document is readable whole; only the tiny cells cross the kernel protocol."""
    doc = tmp_path / "big.txt"
    line = b"0123456789 the quick brown fox jumps over the lazy dog\n"
    digest = hashlib.sha256()
    with doc.open("wb") as out:
        for _ in range(200 * 1024 * 1024 // len(line)):
            out.write(line)
            digest.update(line)
    big = policy.with_limits(memory_mb=1536, cell_timeout_s=60)
    with DockerSandbox.start(big, [doc]) as sandbox:
        code = "import hashlib\nprint(len(context), hashlib.sha256(context.encode()).hexdigest())"
        result = sandbox.execute(code)
        mounted = sandbox.execute("print(open('/proc/self/mountinfo').read())").stdout
    assert result.status == "ok", result
    assert result.stdout.split() == [str(doc.stat().st_size), digest.hexdigest()]
    docs_mount = next(line for line in mounted.splitlines() if " /docs " in line)
    assert " ro," in docs_mount or " ro " in docs_mount
    doc.unlink()


def test_missing_document_is_refused_before_start(policy: Policy, tmp_path: Path) -> None:
    """A missing document is a ConfigError naming it, and no container is started."""
    with pytest.raises(ConfigError, match=re.escape("nope.txt not found")):
        DockerSandbox.start(policy, [tmp_path / "nope.txt"])


def test_close_is_idempotent_and_final(policy: Policy) -> None:
    """close() removes the container and its directory; a closed session refuses cells."""
    sandbox = DockerSandbox.start(policy)
    session_dir = sandbox.rpc_socket_path.parent.parent
    assert session_dir.is_dir()
    sandbox.close()
    sandbox.close()
    assert not session_dir.exists()
    with pytest.raises(SessionClosed):
        sandbox.execute("1")


def test_restart_api_reloads_documents(policy: Policy, tmp_path: Path) -> None:
    """restart() gives a new container with the same documents and no old variables."""
    doc = tmp_path / "d.txt"
    doc.write_text("persisting text")
    with DockerSandbox.start(policy, [doc]) as sandbox:
        sandbox.execute("old = 1")
        before = sandbox.container_id
        sandbox.restart("test")
        assert sandbox.container_id != before
        assert sandbox.execute("print(context, 'old' in dir())").stdout == "persisting text False\n"


def test_session_directory_is_private(policy: Policy) -> None:
    """The io directory is 0700 and owned by the sandbox uid; docs are read-only to it."""
    with DockerSandbox.start(policy) as sandbox:
        io_dir = sandbox.rpc_socket_path.parent
        st = io_dir.stat()
        assert st.st_mode & 0o777 == 0o700
        if os.geteuid() == 0:
            assert st.st_uid == policy.user


def test_warm_pool_hands_each_sandbox_out_once(policy: Policy, tmp_path: Path) -> None:
    """Acquired sandboxes are distinct, carry their own documents, and the pool refills."""
    doc = tmp_path / "pooled.txt"
    doc.write_text("pooled document")
    with WarmPool(policy, size=2) as pool:
        assert pool.wait_ready(timeout=120)
        first = pool.acquire([doc])
        second = pool.acquire()
        try:
            assert first.session_id != second.session_id
            assert first.execute("print(context)").stdout == "pooled document\n"
            assert second.execute("print(repr(context))").stdout == "''\n"
            assert pool.wait_ready(timeout=120) and pool.ready() == 2
            ids = {first.session_id, second.session_id}
            assert not ids & {s.session_id for s in pool._ready}
        finally:
            first.close()
            second.close()


def test_pages_reach_the_kernel(shared_sandbox: DockerSandbox, tmp_path: Path) -> None:
    """Page starts staged with a document give each search hit its page number."""
    from rlm_host.sandbox import Document

    text = "page one text\n\fpage two has the needle\n\fpage three"
    doc = tmp_path / "paged.txt"
    doc.write_text(text)
    pages = (0, text.index("page two"), text.index("page three"))
    shared_sandbox.attach_documents([Document("report.pdf", doc, pages=pages)])
    result = shared_sandbox.execute("h = search('needle')[0]\nprint(h.document, h.page, documents[0].page_at(0))")
    assert result.stdout == "report.pdf 2 1\n", result


def test_warm_pool_refuses_an_empty_size(policy: Policy) -> None:
    """A pool of no sandboxes is a configuration error that names the value, not a ValueError."""
    with pytest.raises(ConfigError, match=r"size >= 1 \(got 0\)"):
        WarmPool(policy, size=0)
