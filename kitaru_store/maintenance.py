"""The maintenance part of a Repository: gc (with compaction), fsck and stats.

Each entry point imports its module on first use: opening a store loads none of them.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .fsck import FsckReport
    from .fsck import Progress as FsckProgress
    from .gc import GCReport
    from .gc import Progress as GCProgress
    from .repository import Repository
    from .stats import Stats


class Maintenance:
    """``repo.maintenance``: collect garbage, check integrity, count what is stored."""

    __slots__ = ("_repo",)

    def __init__(self, repo: Repository) -> None:
        self._repo = repo

    def gc(
        self,
        *,
        grace: dt.timedelta | float | None = None,
        dry_run: bool = False,
        compact: bool = False,
        progress: GCProgress | None = None,
    ) -> GCReport:
        """Delete objects nothing has named for ``grace`` (default gc.DEFAULT_GRACE; seconds or a
        timedelta); ``compact`` then rewrites the data file without its free pages (gc.py)."""
        from .gc import collect

        return collect(self._repo, grace=grace, dry_run=dry_run, compact=compact, progress=progress)

    def fsck(
        self,
        *,
        sample: float | int | None = None,
        progress: FsckProgress | None = None,
        seed: int | None = None,
    ) -> FsckReport:
        """Verify the store; repairs nothing (fsck.py). ``sample``: a fraction or count of objects."""
        from .fsck import check

        return check(self._repo, sample=sample, progress=progress, seed=seed)

    def stats(self) -> Stats:
        from .stats import compute

        return compute(self._repo)
