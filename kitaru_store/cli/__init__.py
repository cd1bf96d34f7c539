"""The ``kitaru-store`` command-line tool, a thin layer over :class:`kitaru_store.Repository`.

Modules: ``app`` (the command group), ``common`` (global state, ``--json``, the one error handler,
argument resolution and completion), ``output`` and ``text`` (formatting), ``quicklog`` (the fast
path of ``log``), and the commands: ``history`` (log, show, ls, diff), ``values`` (cat, pin, unpin,
pins), ``maintenance`` (init, gc, fsck, stats, path), ``memory`` (memory) and ``remote`` (remote,
push, pull, clone). Nothing here imports lmdb, zstandard, msgspec or blake3 until a command runs,
and a command's module is imported only when it runs (or when --help lists every command).
``kitaru-store log`` usually runs without click at all (quicklog.py says why and when).
"""

from __future__ import annotations

import sys

from kitaru_store.lazy import lazy_getattr

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see kitaru_store/__init__.py)
if TYPE_CHECKING:
    from typing import Any

    from .app import cli


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point: ``kitaru-store = "kitaru_store.cli:main"``.

    The fast path of ``log`` takes the command line if it can; otherwise the click group runs it.
    Either way the process ends here with SystemExit and the command's exit code.
    """
    from . import quicklog

    code = quicklog.run(sys.argv[1:] if argv is None else argv)
    if code is not None:
        sys.exit(code)
    from .app import main as click_main

    return click_main(argv)


__getattr__ = lazy_getattr(__name__, {"cli": "app"})  # the click group, imported on first use

__all__ = ["cli", "main"]
