"""Checks ``db/data.mdb`` against LMDB's own header before LMDB maps it.

LMDB maps the data file and reads its pages in place: a page past the end of a truncated file is
SIGBUS, which kills the process (no exception to catch). So before every open the two meta pages
are read with ``pread`` and decoded with bounds, as LMDB 0.9's ``mdb.c`` lays them out
(``MDB_page`` header, then ``MDB_meta``), and the file is checked to hold every page the snapshot
LMDB will use can reach:

* both meta pages: flag ``P_META``, magic ``0xBEEFC0DE``, data version 1, one page size, a power
  of two no larger than LMDB's ``MAX_PAGESIZE`` (32 KiB);
* the meta LMDB picks (the one with the larger transaction id; meta 0 on a tie): in the slot its
  transaction id names (transaction N writes meta page N % 2, and readers look there); sane flags
  and depths for its two trees (free pages, main), roots inside ``2..last_pg`` that are branch or
  leaf pages as their depth says;
* the file length. ``mdb.c`` says of ``mm_last_pg``: "the file may be shorter if the freeDB lists
  the final pages" (a page allocated and freed in one transaction is never written), and that is
  common (most commits of a gc sweep leave such a tail). So a file shorter than
  ``(last_pg + 1) * page size`` is accepted only if every page in the missing tail is listed in
  the free-page tree, which is read with ``pread`` too, each page bounded by the file.

Integers are LMDB's native ones: the platform's byte order and word size (``size_t``: ``pgno_t``,
``txnid_t``, pointers); a data file is not portable between word sizes or byte orders anyway.
This module never imports lmdb (backend.py is the only one that does).
"""

from __future__ import annotations

import errno
import os
import struct
import sys

from .errors import CorruptStoreError
from .layout import DATA_FILE

_E = "<" if sys.byteorder == "little" else ">"
_W = "Q" if struct.calcsize("P") == 8 else "I"  # pgno_t, txnid_t, size_t, void*
_WORD = struct.calcsize(_W)
# MDB_page header: pgno, pad, flags, lower, upper (an overflow page keeps its page count in
# lower/upper as one uint32).
_PAGE = struct.Struct(f"{_E}{_W}HHHH")
PAGEHDRSZ = _PAGE.size
# MDB_db: pad (the page size, in the free tree's copy), flags, depth, branch, leaf and overflow
# page counts, entries, root.
_DB = f"IHH{_W * 5}"
# MDB_meta: magic, version, address, mapsize, the free and main trees, last page, txn id.
_META = struct.Struct(f"{_E}II{_W}{_W}{_DB}{_DB}{_W}{_W}")
_NODE = struct.Struct(f"{_E}HHHH")  # MDB_node: lo, hi (swapped on big-endian), flags, key size

MDB_MAGIC = 0xBEEFC0DE
MDB_DATA_VERSION = 1
MAX_PAGESIZE = 0x8000
NUM_METAS = 2
CURSOR_STACK = 32  # the deepest tree LMDB walks
P_INVALID = (1 << (8 * _WORD)) - 1
P_BRANCH, P_LEAF, P_OVERFLOW, P_META = 0x01, 0x02, 0x04, 0x08
F_BIGDATA = 0x01
MDB_INTEGERKEY = 0x08
_TREE_FLAGS = 0x7E  # REVERSEKEY | DUPSORT | INTEGERKEY | DUPFIXED | INTEGERDUP | REVERSEDUP
_HEADER = PAGEHDRSZ + _META.size
_RETRIES = 5


class _Meta:
    def __init__(self, raw: bytes) -> None:
        f = _META.unpack_from(raw, PAGEHDRSZ)
        self.page_flags = _PAGE.unpack_from(raw, 0)[2]
        self.magic, self.version = f[0], f[1]
        self.psize, self.free_flags, self.free_depth, self.free_root = f[4], f[5], f[6], f[11]
        self.main_flags, self.main_depth, self.main_root = f[13], f[14], f[19]
        self.last_pg, self.txnid = f[20], f[21]


def check(db_dir: str) -> None:
    """Raise CorruptStoreError unless ``db_dir/data.mdb`` is safe for LMDB to map.

    A missing file is left to LMDB (it creates one, or reports it missing).
    """
    path = os.path.join(db_dir, DATA_FILE)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return
        raise
    try:
        for attempt in range(_RETRIES):
            before = _txn_ids(fd)
            try:
                _check_fd(fd, path)
                return
            except CorruptStoreError:
                # A writer in another process committed meanwhile and may have reused a page
                # read above: look again. Damage does not change between two looks.
                if attempt == _RETRIES - 1 or _txn_ids(fd) == before:
                    raise
    finally:
        os.close(fd)


def _txn_ids(fd: int) -> tuple[bytes, bytes]:
    """The raw transaction-id words of both meta pages (for telling a writer from damage)."""
    at = PAGEHDRSZ + _META.size - _WORD
    first = os.pread(fd, _HEADER, 0)
    psize = _Meta(first).psize if len(first) == _HEADER else 0
    return first[at:], os.pread(fd, _WORD, psize + at) if psize else b""


def _check_fd(fd: int, path: str) -> None:
    first = _meta_at(fd, path, 0, 0)
    psize = first.psize
    if psize & (psize - 1) or not _HEADER <= psize <= MAX_PAGESIZE:
        raise _corrupt(path, f"meta page 0 gives an impossible page size {psize}")
    second = _meta_at(fd, path, psize, 1)
    if second.psize != psize:
        raise _corrupt(path, f"the meta pages disagree on the page size ({psize}, {second.psize})")
    meta = second if first.txnid < second.txnid else first  # mdb_env_pick_meta
    slot = int(meta is second)
    if meta.txnid & 1 != slot and meta.txnid:
        # Transaction N writes meta page N % 2, and readers find it there by that rule.
        raise _corrupt(path, f"meta page {slot} claims transaction {meta.txnid}, which belongs in the other")
    size = os.fstat(fd).st_size  # after the metas: the file only grows while a writer commits
    pages = size // psize
    if pages < NUM_METAS:
        raise _truncated(path, size, "the two meta pages")
    if not NUM_METAS - 1 <= meta.last_pg < P_INVALID:
        raise _corrupt(path, f"its last page number {meta.last_pg} is impossible")
    for name, flags, depth, root in (
        ("free-page", meta.free_flags, meta.free_depth, meta.free_root),
        ("main", meta.main_flags, meta.main_depth, meta.main_root),
    ):
        want = MDB_INTEGERKEY if name == "free-page" else 0
        if flags & _TREE_FLAGS != want:
            raise _corrupt(path, f"its {name} tree has flags {flags:#x}")
        empty = root == P_INVALID
        if empty != (depth == 0) or depth > CURSOR_STACK:
            raise _corrupt(path, f"its {name} tree has depth {depth} for root {root}")
        if not empty and not NUM_METAS <= root <= meta.last_pg:
            raise _corrupt(path, f"its {name} tree's root page {root} is outside pages 2..{meta.last_pg}")
        if not empty and root >= pages:
            raise _truncated(path, size, f"page {root}, the root of its {name} tree")
        if not empty:
            _tree_page(fd, path, root, depth, psize, pages, f"the root of its {name} tree")
    if pages > meta.last_pg:
        return
    # Shorter than the last page: only pages the free-page tree lists may be missing.
    free = _free_pages(fd, path, meta, psize, pages)
    if meta.last_pg + 1 - pages > len(free) or any(p not in free for p in range(pages, meta.last_pg + 1)):
        raise _truncated(path, size, f"pages up to {meta.last_pg}, which are in use")


def _meta_at(fd: int, path: str, offset: int, n: int) -> _Meta:
    raw = os.pread(fd, _HEADER, offset)
    if len(raw) < _HEADER:
        raise _truncated(path, os.fstat(fd).st_size, f"meta page {n}")
    meta = _Meta(raw)
    if not meta.page_flags & P_META or meta.magic != MDB_MAGIC:
        raise _corrupt(path, f"meta page {n} is not an LMDB meta page")
    if meta.version != MDB_DATA_VERSION:
        raise _corrupt(path, f"meta page {n} has LMDB data version {meta.version}, not 1")
    return meta


def _free_pages(fd: int, path: str, meta: _Meta, psize: int, pages: int) -> set[int]:
    """The page numbers the free-page tree lists."""
    free: set[int] = set()
    if meta.free_root == P_INVALID:
        return free
    stack = [(meta.free_root, meta.free_depth)]
    visited = 0
    while stack:
        pgno, level = stack.pop()
        visited += 1
        if visited > meta.last_pg:
            raise _corrupt(path, "its free-page tree has a cycle")
        page = _tree_page(fd, path, pgno, level, psize, pages, "a page of its free-page tree")
        _, _, flags, lower, _ = _PAGE.unpack_from(page, 0)
        leaf = bool(flags & P_LEAF)
        count = (lower - PAGEHDRSZ) >> 1
        for off in struct.unpack_from(f"{_E}{count}H", page, PAGEHDRSZ):
            if off + _NODE.size > psize:
                raise _corrupt(path, f"page {pgno} of its free-page tree has a node outside it")
            a, b, nflags, ksize = _NODE.unpack_from(page, off)
            lo, hi = (a, b) if _E == "<" else (b, a)
            if not leaf:
                child = lo | hi << 16 | (nflags << 32 if _WORD == 8 else 0)
                if not NUM_METAS <= child <= meta.last_pg:
                    raise _corrupt(path, f"page {pgno} of its free-page tree names page {child}")
                stack.append((child, level - 1))
                continue
            dsize, start = lo | hi << 16, off + _NODE.size + ksize
            if nflags & F_BIGDATA:
                if start + _WORD > psize:
                    raise _corrupt(path, f"page {pgno} of its free-page tree has a node outside it")
                (ov,) = struct.unpack_from(f"{_E}{_W}", page, start)
                data = _overflow(fd, path, ov, dsize, psize, pages, meta.last_pg)
            else:
                data = page[start : start + dsize]
            if len(data) < _WORD or len(data) != dsize:
                raise _corrupt(path, f"page {pgno} of its free-page tree has a record outside it")
            (n,) = struct.unpack_from(f"{_E}{_W}", data, 0)
            if (n + 1) * _WORD > dsize:
                raise _corrupt(path, f"page {pgno} of its free-page tree lists more pages than it holds")
            free.update(struct.unpack_from(f"{_E}{n}{_W}", data, _WORD))
    return free


def _tree_page(fd: int, path: str, pgno: int, level: int, psize: int, pages: int, what: str) -> bytes:
    """A branch or leaf page at ``level`` (1: leaf) of a tree, its header within bounds."""
    page = _page(fd, path, pgno, psize, pages)
    _, _, flags, lower, upper = _PAGE.unpack_from(page, 0)
    kind = flags & (P_BRANCH | P_LEAF | P_OVERFLOW | P_META)
    if kind != (P_LEAF if level == 1 else P_BRANCH) or not PAGEHDRSZ <= lower <= upper <= psize:
        raise _corrupt(path, f"page {pgno}, {what}, is not a tree page at depth {level}")
    return page


def _page(fd: int, path: str, pgno: int, psize: int, pages: int, n: int = 1) -> bytes:
    if pgno + n > pages:
        raise _truncated(path, pages * psize, f"page {pgno + n - 1}, which its free-page tree uses")
    raw = os.pread(fd, psize * n, pgno * psize)
    if len(raw) < psize * n:
        raise _truncated(path, os.fstat(fd).st_size, f"page {pgno + n - 1}")
    if _PAGE.unpack_from(raw, 0)[0] != pgno:
        raise _corrupt(path, f"page {pgno} carries another page's number")
    return raw


def _overflow(fd: int, path: str, pgno: int, dsize: int, psize: int, pages: int, last: int) -> bytes:
    n = (PAGEHDRSZ - 1 + dsize) // psize + 1  # OVPAGES
    if not NUM_METAS <= pgno <= last - n + 1:
        raise _corrupt(path, f"its free-page tree names overflow page {pgno}")
    raw = _page(fd, path, pgno, psize, pages, n)
    if not _PAGE.unpack_from(raw, 0)[2] & P_OVERFLOW:
        raise _corrupt(path, f"page {pgno} of its free-page tree is not an overflow page")
    return raw[PAGEHDRSZ : PAGEHDRSZ + dsize]


def _corrupt(path: str, detail: str) -> CorruptStoreError:
    return CorruptStoreError(path, f"its header is damaged: {detail}")


def _truncated(path: str, size: int, needed: str) -> CorruptStoreError:
    return CorruptStoreError(path, f"it is truncated: {size} bytes do not hold {needed}")
