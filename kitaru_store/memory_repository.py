"""A Repository whose data lives in this process's memory (kv_memory.MemoryKV): Repository.open_memory.

Everything the Repository stores goes through its kv.Store, so the same code runs on it: saves
and loads, executions, pins, memory, gc, fsck and stats. What is not data stays files: the
directory ``root`` holds the lock files (one gc at a time, run locks) and nothing else; by
default a new private temporary directory, removed when the Repository is collected. The data
is gone with the object, or at ``close()``; compaction has nothing to do (gc reports it).
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

from . import config, layout
from .kv_memory import MemoryKV
from .repository import Repository

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see kitaru_store/__init__.py)
if TYPE_CHECKING:
    import os

    from .kv import Store


class MemoryRepository(Repository):
    """Repository on a MemoryKV of its own (see the module's docstring)."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *, level: int = 3) -> None:
        self._memory_kv: MemoryKV | None = MemoryKV()
        if root is None:
            root = tempfile.mkdtemp(prefix="kitaru-memory-")
            weakref.finalize(self, shutil.rmtree, root, True)
        path = Path(root).absolute()
        (path / layout.LOCK_DIR).mkdir(mode=0o700, parents=True, exist_ok=True)
        super().__init__(config.Location(path, "memory"), level=level)

    def _connect(self) -> Store:
        assert self._memory_kv is not None  # _backend() refuses a closed Repository first
        return self._memory_kv

    def _release(self) -> None:
        self._memory_kv = None  # the data goes with it
