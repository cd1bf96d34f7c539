"""Compaction: rewrite the LMDB file without its free pages and swap the copy in (docs/design.md 10.2).

The store's kv.Maintenance (backend.Backend.compact) does the coordination (this process's
threads wait at its gate; other processes must not have the store open). This module owns the
files: the space check before anything is written, the copy in ``db.compact/``, its sync and
rename, and removing the copy after any failure, an interrupt included, so that a failed
compaction never keeps the space it took.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

from . import layout
from .errors import StoreFullError

if TYPE_CHECKING:
    from .repository import Repository

COMPACT_DIR = "db.compact"
# Room asked for beyond the pages the copy holds: its two meta pages, the directory, and slack
# for the file system's own blocks.
HEADROOM = 4 << 20


def free_bytes(path: str) -> int:
    return shutil.disk_usage(path).free


def discard_leftover_copy(repo: Repository) -> None:
    """Remove a copy left by a compaction that was killed before its rename.

    Safe whenever this process has the store open: every process with it open holds the store
    lock shared, so no other process is compacting; gc's lock keeps this process's own gc out.
    """
    shutil.rmtree(repo.root / COMPACT_DIR, ignore_errors=True)


def compact_store(repo: Repository) -> bool:
    """Rewrite the LMDB file without free pages and swap it in atomically.

    StoreLockedError while another process has the store open; StoreFullError, before anything
    is written, if the disk cannot hold the copy next to the current file. False (and nothing
    done) for a store without a file (kv_memory.MemoryKV); True once compacted.
    """
    maintenance = repo.kv.maintenance()
    if maintenance is None:
        return False
    db_dir = repo.root / layout.DB_DIR
    tmp_dir = repo.root / COMPACT_DIR
    discard_leftover_copy(repo)
    need = maintenance.used_bytes() + HEADROOM
    free = free_bytes(str(repo.root))
    if free < need:
        raise StoreFullError(
            f"compacting the store {repo.root} needs about {need >> 20} MiB free for the copy,"
            f" but the disk has {free >> 20} MiB",
            hint="free disk space and run `kitaru-store gc --compact` again; gc without --compact"
            " already made the space it freed reusable inside the store",
        )

    def prepare() -> None:
        fd = os.open(tmp_dir / layout.DATA_FILE, os.O_RDONLY)
        try:
            os.fchmod(fd, 0o600)  # LMDB creates the copy with 0o666 & ~umask; the store is owner-only
            os.fsync(fd)
        finally:
            os.close(fd)

    def install() -> None:
        os.replace(tmp_dir / layout.DATA_FILE, db_dir / layout.DATA_FILE)
        dfd = os.open(db_dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    try:
        maintenance.compact(str(tmp_dir), prepare=prepare, install=install)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return True
