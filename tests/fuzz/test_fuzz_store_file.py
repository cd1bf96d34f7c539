"""Fuzz the LMDB data file's header: random and mutated meta pages give an open store or a
KitaruError, never a crash.

kitaru_store.datafile checks the header with pread before LMDB maps the file, so the examples
run in one process, fast. That process is a child of the test, not pytest itself: a header that
passes the check and still makes LMDB's C code abort (seen once in about 40,000 mutated headers,
a root that names a real page of another tree) fails the test with the header that did it,
instead of killing the test session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_helpers import FUZZ, decode_within_bounds
from hypothesis import given
from hypothesis import strategies as st

from kitaru_store import Repository
from kitaru_store.backend import close_backend

PSIZE = 4096
HEADER = 2 * PSIZE  # the two meta pages


@pytest.fixture(scope="module")
def template() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="kitaru-fuzz-store-"))
    repo = Repository.open(root / "store")
    for i in range(20):
        repo.put_value(os.urandom(50 + i * 700))
    repo.gc(grace=0)
    close_backend(str(root / "store" / "db"))
    yield root / "store"
    shutil.rmtree(root, ignore_errors=True)


def _open_with_header(template: Path, header: bytes, last: Path) -> object:
    last.write_bytes(header)  # what the parent reports if this process dies
    work = Path(tempfile.mkdtemp(prefix="kitaru-fuzz-open-"))
    store = work / "store"
    try:
        shutil.copytree(template, store)
        with open(store / "db" / "data.mdb", "r+b") as f:
            f.write(header)
        repo = Repository.open(store)
        try:
            return (repo.count_executions(), repo.fsck().ok)
        finally:
            close_backend(str(store / "db"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    flips = st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(1, 255)), min_size=1, max_size=8)

    def flip(edits: list[tuple[int, int]]) -> bytes:
        out = bytearray(valid)
        for at, mask in edits:
            out[at] ^= mask
        return bytes(out)

    # Words of the meta (page number, sizes, roots, last page, txn id) set to chosen values.
    words = st.lists(
        st.tuples(
            st.sampled_from([0, PSIZE]),
            st.integers(0, 152 // 8 - 1),
            st.sampled_from([0, 1, 2, 3, 7, 255, 4096, 1 << 31, (1 << 64) - 1]),
        ),
        min_size=1,
        max_size=4,
    )

    def put_words(edits: list[tuple[int, int, int]]) -> bytes:
        out = bytearray(valid)
        for page, index, value in edits:
            at = page + index * 8
            out[at : at + 8] = value.to_bytes(8, "little")
        return bytes(out)

    return st.one_of(flips.map(flip), words.map(put_words), st.binary(min_size=0, max_size=HEADER))


def run_property(template: Path, last: Path) -> None:
    """The property, run in the child process."""
    valid = (template / "db" / "data.mdb").read_bytes()[:HEADER]

    @FUZZ
    @given(_mutations(valid))
    def check(header: bytes) -> None:
        decode_within_bounds(lambda: _open_with_header(template, header, last), len(header), factor=1024)

    check()


CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import test_fuzz_store_file as t
t.run_property(Path(sys.argv[2]), Path(sys.argv[3]))
"""


def test_random_and_mutated_headers(template: Path, tmp_path: Path) -> None:
    last = tmp_path / "last-header.bin"
    here = str(Path(__file__).resolve().parent)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, here, str(template), str(last)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    header = last.read_bytes().hex() if child.returncode and last.exists() else ""
    assert child.returncode == 0, f"exit {child.returncode}; last header {header}\n{child.stderr[-3000:]}"
