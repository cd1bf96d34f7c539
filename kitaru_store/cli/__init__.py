"""The ``kitaru-store`` command-line tool, a thin layer over :class:`kitaru_store.Repository`.

Modules: ``app`` (the command group and ``main``), ``common`` (global state, ``--json``, the one
error handler, argument resolution and completion), ``output`` (formatting), and the commands:
``history`` (log, show, ls, diff), ``values`` (cat, pin, unpin, pins) and ``maintenance`` (gc,
fsck, stats, path). Nothing here imports lmdb, zstandard, msgspec or blake3 until a command runs.
"""

from __future__ import annotations

from .app import cli, main

__all__ = ["cli", "main"]
