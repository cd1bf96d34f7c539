"""The ``kitaru-store`` command-line tool, a thin layer over :class:`kitaru_store.Repository`.

Modules: ``app`` (the command group and ``main``), ``common`` (global state, ``--json``, the one
error handler, argument resolution and completion), ``output`` (formatting), and the commands:
``history`` (log, show, ls, diff), ``values`` (cat, pin, unpin, pins), ``maintenance`` (init, gc,
fsck, stats, path), ``memory`` (memory) and ``remote`` (remote, push, pull, clone). Nothing here
imports lmdb, zstandard, msgspec or blake3 until a command runs, and a command's module is
imported only when it runs (or when --help lists every command).
"""

from __future__ import annotations

from .app import cli, main

__all__ = ["cli", "main"]
