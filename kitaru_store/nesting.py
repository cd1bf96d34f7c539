"""How deeply stored trees may nest, and decoding that does not depend on the caller's stack.

Values (the ``m`` serializer) and manifest metadata are written at most ``MAX_DEPTH`` containers
deep; a deeper tree is refused with a typed error when it is written. Decoding a stored tree uses
the C decoder's recursion guard, which counts the caller's frames too: ``on_fresh_stack`` runs a
decode that ran out of stack again on a new thread, whose stack is empty, so that reading works
at any call depth; a tree that cannot be decoded even there is a typed error, not RecursionError.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

from .errors import NestingTooDeepError

MAX_DEPTH = 100  # containers (list, dict, tuple, set, objects), counting the outermost as 1

T = TypeVar("T")


def depth_exceeds(tree: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether a tree of plain containers nests more than ``limit`` levels; iterative, no recursion."""
    stack: list[tuple[Any, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list, tuple)))
    return False


def require_within(tree: Any, what: str, *, exec_id: str | None = None, name: str | None = None) -> None:
    """NestingTooDeepError if ``tree`` nests more than MAX_DEPTH levels (metadata, before it is stored)."""
    if depth_exceeds(tree):
        raise NestingTooDeepError(
            f"{what} nests more than {MAX_DEPTH} levels deep",
            exec_id=exec_id,
            name=name,
            hint=f"store at most {MAX_DEPTH} levels of lists and dicts",
        )


def on_fresh_stack(decode: Callable[[], T]) -> T:
    """``decode()``; if it runs out of stack, once more on a new thread (an empty stack).

    RecursionError from the retry propagates: the data itself nests too deeply to decode.
    The thread runs in a copy of the caller's context; KeyboardInterrupt still reaches the caller.
    """
    try:
        return decode()
    except RecursionError:
        pass
    outcome: list[tuple[bool, Any]] = []
    context = contextvars.copy_context()

    def run() -> None:
        try:
            outcome.append((True, context.run(decode)))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="kitaru-decode", daemon=True)
    thread.start()
    thread.join()
    ok, result = outcome[0]
    if ok:
        return cast(T, result)
    raise result
