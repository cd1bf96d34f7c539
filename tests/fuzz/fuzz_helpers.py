"""The contract every decoder of stored or remote bytes is held to, and the fuzzing budget.

Arbitrary bytes given to a decoder give a value or a :class:`kitaru.KitaruError` subclass: never
another exception, never a crash, and never memory beyond a bound derived from the input's size.

The number of examples per property comes from ``KITARU_FUZZ_EXAMPLES`` (default 200, which keeps
the whole suite near a minute in CI); docs/reliability.md records a longer run made with e.g.
``KITARU_FUZZ_EXAMPLES=20000 python -m pytest tests/fuzz -q``.
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings

from kitaru_store.errors import KitaruError

EXAMPLES = int(os.environ.get("KITARU_FUZZ_EXAMPLES", "200"))

FUZZ = settings(
    deadline=None,
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    derandomize=os.environ.get("KITARU_FUZZ_RANDOM", "") == "",
    database=None,
)

# Memory a decoder may use beyond its input: a fixed allowance (interpreter objects, codec
# contexts) plus a multiple of the input's size (a value may legitimately decompress).
FIXED_ALLOWANCE = 8 << 20


def memory_bound(data_len: int, factor: int = 64) -> int:
    return FIXED_ALLOWANCE + factor * data_len


def decode_within_bounds(decode: Callable[[], Any], data_len: int, *, factor: int = 64) -> Any:
    """Run ``decode``; it must return or raise a KitaruError, within the memory bound.

    Returns the value or the KitaruError raised. Any other exception fails the test with the
    exception attached; so does a traced peak above ``memory_bound(data_len, factor)``.
    """
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    outcome: Any
    try:
        outcome = decode()
    except KitaruError as exc:
        outcome = exc
    except BaseException as exc:  # the point is to catch everything else
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise AssertionError(f"decoder raised {type(exc).__name__}, not a KitaruError: {exc!r}") from exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        if started:
            tracemalloc.stop()
    used = peak - base
    bound = memory_bound(data_len, factor)
    assert used <= bound, f"decoder used {used} bytes for {data_len} bytes of input (bound {bound})"
    return outcome
