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
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

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


@st.composite
def mutations(
    draw: st.DrawFn, samples: Sequence[bytes], pieces: Sequence[bytes] = (), *, most: int = 4
) -> bytes:
    """One of ``samples`` (valid encodings) with 1 to ``most`` changes, as damage and hostile
    writers make them: a bit flipped, the tail cut off, random bytes inserted or appended, a byte
    overwritten, or one of ``pieces`` (the format's extreme length and size fields, container
    headers) written over the bytes at some place or inserted there. Random bytes alone rarely get
    past a header; these reach the decoder's inner checks."""
    data = bytearray(draw(st.sampled_from(samples)))
    ops = ["flip", "truncate", "insert", "append", "byte"] + (["overwrite", "put"] if pieces else [])
    for _ in range(draw(st.integers(1, most))):
        op = draw(st.sampled_from(ops))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=256))
        elif op == "byte" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "overwrite":
            piece = draw(st.sampled_from(pieces))
            data[at : at + len(piece)] = piece
        elif op == "put":
            data[at:at] = draw(st.sampled_from(pieces))
    return bytes(data)
