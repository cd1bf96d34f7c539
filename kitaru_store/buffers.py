"""Large, fresh, writable buffers that are cheap to fill.

A fresh buffer of many megabytes costs a page fault for every 4 KiB written into it, and on a
virtual machine that costs more than the copy itself (64 MiB: ~45 ms of faults for ~10 ms of
copying). Large buffers are therefore anonymous memory maps advised to use transparent huge
pages, which fault 2 MiB at a time where the kernel allows it (Linux, ``madvise`` or ``always``
mode); elsewhere they are still maps, which the kernel hands out zeroed, so nothing is zero-filled twice.
"""

from __future__ import annotations

import contextlib
import mmap

# Below this size a bytearray is as fast: huge pages come in 2 MiB units.
MAP_FROM = 4 << 20
_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", None)
_ANONYMOUS = getattr(mmap, "MAP_ANONYMOUS", None)  # None on Windows


def alloc(size: int) -> bytearray | memoryview:
    """A writable buffer of ``size`` bytes, contents unspecified until written."""
    if size < MAP_FROM or _ANONYMOUS is None:
        return bytearray(size)
    try:
        region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | _ANONYMOUS)
    except OSError:  # ENOMEM under a limit, too many maps: the heap may still have it
        return bytearray(size)
    if _HUGEPAGE is not None:
        with contextlib.suppress(OSError):  # no transparent huge pages: plain pages then
            region.madvise(_HUGEPAGE)
    return memoryview(region)
