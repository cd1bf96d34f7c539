"""Large values on two threads (parallel.py), framing at write time and mapped buffers (buffers.py)."""

from __future__ import annotations

import mmap
import random
import threading
from collections.abc import Callable

import numpy as np
import pytest
from blake3 import blake3
from store_helpers import delete_record, record, tamper

from kitaru_store import CorruptObjectError, Repository, buffers, codec, objects, parallel

MiB = 1 << 20


def compressible(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    words = [b"alpha ", b"beta ", b"gamma ", b"delta %d " % rng.randrange(10**6), b"\n"]
    return b"".join(rng.choices(words, k=size // 5))[:size].ljust(size, b".")


def incompressible(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


# --- parallel.for_each ---------------------------------------------------------------------------


def test_for_each_calls_every_item_exactly_once() -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def fn(i: int) -> None:
        with lock:
            seen.append(i)

    parallel.for_each(fn, range(1000))
    assert sorted(seen) == list(range(1000))


def test_for_each_items_produced_by_main_first_and_helper_first_runs_once() -> None:
    order: list[str] = []
    done: list[int] = []

    def produce() -> list[int]:
        order.append("main_first")
        return [1, 2, 3, 4, 5]

    helper_first = lambda: order.append("helper_first")  # noqa: E731
    parallel.for_each(done.append, [99], helper_first=helper_first, main_first=produce)
    assert sorted(order) == ["helper_first", "main_first"]
    assert sorted(done) == [1, 2, 3, 4, 5]  # the produced items, never the placeholder


@pytest.mark.parametrize("where", ["item", "helper_first", "main_first"])
def test_for_each_raises_the_first_error_of_either_thread(where: str) -> None:
    calls: list[int] = []

    def fn(i: int) -> None:
        calls.append(i)
        if where == "item" and i == 7:
            raise ValueError("item 7")

    def helper_first() -> None:
        if where == "helper_first":
            raise KeyError("helper")

    def main_first() -> list[int]:
        if where == "main_first":
            raise RuntimeError("main")
        return list(range(20))

    expected = {"item": ValueError, "helper_first": KeyError, "main_first": RuntimeError}[where]
    with pytest.raises(expected):
        parallel.for_each(fn, [], helper_first=helper_first, main_first=main_first)
    if where == "main_first":
        assert calls == []  # the helper never starts on items nobody produced
    assert all(t.name != "kitaru-store-helper" for t in threading.enumerate())  # the helper stopped


def test_for_each_without_threads_runs_in_order_on_this_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_THREADS", "1")
    assert not parallel.enabled()
    where: list[tuple[str, int]] = []
    parallel.for_each(
        lambda i: where.append((threading.current_thread().name, i)),
        [],
        helper_first=lambda: where.append((threading.current_thread().name, -1)),
        main_first=lambda: [0, 1, 2],
    )
    me = threading.current_thread().name
    assert where == [(me, -1), (me, 0), (me, 1), (me, 2)]


# --- large values on two threads ------------------------------------------------------------------


@pytest.mark.parametrize("make", [compressible, incompressible], ids=["compressible", "incompressible"])
def test_large_value_is_the_same_with_and_without_threads(
    repo: Repository, make: Callable[[int, int], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make(9 * MiB + 12345, 3)
    assert len(data) >= objects.PARALLEL_FROM
    threaded = objects.prepare(data)
    monkeypatch.setenv("KITARU_THREADS", "1")
    single = objects.prepare(data)
    monkeypatch.delenv("KITARU_THREADS")
    # Same id, same chunks in the same order: where the work ran changes nothing stored.
    assert threaded.key == single.key == blake3(data).digest()
    pieces = [(p.key, bytes(p.data)) for p in threaded.pieces]
    assert pieces == [(p.key, bytes(p.data)) for p in single.pieces]
    for piece in threaded.pieces[:-1]:
        assert piece.key == blake3(piece.data).digest()

    oid = repo.put_bytes(data)
    assert oid == threaded.object_id
    assert repo.get_bytes(oid) == data
    info = repo.object_info(oid)
    assert info.chunks == len(threaded.pieces) - 1
    codecs = {codec.stored_codec_name(record(repo, p.key.hex())) for p in threaded.pieces[:-1]}
    assert codecs == ({"zstd"} if make is compressible else {"raw"})


def test_corrupt_chunk_of_a_large_value_is_named(repo: Repository) -> None:
    data = compressible(8 * MiB, 4)
    oid = repo.put_bytes(data)
    chunks = objects.prepare(data).pieces[:-1]
    victim = chunks[len(chunks) // 2].key.hex()
    tamper(repo, victim, at=len(record(repo, victim)) // 2)
    with pytest.raises(CorruptObjectError) as err:
        repo.get_bytes(oid)
    assert err.value.object_id == oid
    assert victim in str(err.value)


def test_missing_chunk_of_a_large_value_is_named(repo: Repository) -> None:
    data = incompressible(6 * MiB, 5)
    oid = repo.put_bytes(data)
    victim = objects.prepare(data).pieces[-2].key.hex()
    delete_record(repo, victim)
    with pytest.raises(CorruptObjectError, match=f"chunk {victim} is missing"):
        repo.get_value(oid)


def test_large_numpy_value_is_saved_from_a_mapped_buffer_and_loads_into_one(repo: Repository) -> None:
    arr = np.random.default_rng(8).standard_normal(1 << 20)  # 8 MiB
    sv = repo.put_value(arr)
    assert sv.size > arr.nbytes
    out = repo.get_value(sv.object_id)
    assert np.array_equal(out, arr)
    base = out
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    assert isinstance(base.obj if isinstance(base, memoryview) else base, mmap.mmap)
    # get_bytes keeps its type: a bytearray holding the serialized form.
    raw = repo.get_bytes(sv.object_id)
    assert isinstance(raw, bytearray) and len(raw) == sv.size


def test_value_changed_after_a_save_does_not_change_what_was_stored(repo: Repository) -> None:
    arr = np.arange(1 << 20, dtype=np.float64)  # 8 MiB: serialized into a mapped buffer
    with repo.writer() as w:
        sv = w.put_value(arr)
        arr[:] = -1.0  # before the commit: the staged copy is the serializer's, not the array
    assert np.array_equal(repo.get_value(sv.object_id), np.arange(1 << 20, dtype=np.float64))


# --- framing and buffers --------------------------------------------------------------------------


def test_frame_at_write_time_equals_encode() -> None:
    for payload in (b"", b"x", incompressible(300_000, 6)):
        assert bytes(codec.frame(codec.KIND_DATA, codec.CODEC_RAW, payload)) == codec.encode(payload, level=0)
    packed = codec.compress(compressible(200_000, 7))
    assert packed is not None
    framed = bytes(codec.frame(codec.KIND_DATA, codec.CODEC_ZSTD, packed))
    assert codec.decode(framed) == (codec.KIND_DATA, compressible(200_000, 7))


def test_compress_refuses_what_does_not_pay() -> None:
    assert codec.compress(incompressible(1 * MiB, 8)) is None
    assert codec.compress(b"a" * 63) is None  # too small to try
    assert codec.compress(compressible(100_000, 9), level=0) is None


def test_alloc_small_is_a_bytearray_large_is_a_writable_map() -> None:
    small = buffers.alloc(buffers.MAP_FROM - 1)
    assert isinstance(small, bytearray) and len(small) == buffers.MAP_FROM - 1
    large = buffers.alloc(buffers.MAP_FROM)
    assert isinstance(large, memoryview) and len(large) == buffers.MAP_FROM
    assert not large.readonly
    large[-3:] = b"end"
    assert bytes(large[-3:]) == b"end"


def test_for_each_waits_for_the_helper_even_when_interrupted_while_joining() -> None:
    import signal
    import time

    helper_done = threading.Event()

    def slow_helper() -> None:
        time.sleep(0.3)
        helper_done.set()

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)  # fires while this thread waits for the helper
        with pytest.raises(KeyboardInterrupt):
            parallel.for_each(lambda i: None, [], helper_first=slow_helper, main_first=lambda: [])
        assert helper_done.is_set()  # it did not return while the helper was still working
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_for_each_without_a_thread_to_start_runs_here(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    done: list[int] = []
    parallel.for_each(done.append, [], helper_first=lambda: done.append(-1), main_first=lambda: [1, 2])
    assert done == [-1, 1, 2]


def test_a_failed_stage_leaves_nothing_behind_and_a_retry_stores_the_value(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = compressible(6 * MiB, 10)
    real = codec.compress
    calls = {"n": 0}

    def fail_once(*args: object, **kwargs: object) -> bytes | None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise MemoryError("simulated")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(codec, "compress", fail_once)
    with repo.writer() as w:
        with pytest.raises(MemoryError):
            w.put_bytes(data)
        oid = w.put_bytes(data)  # the same writer: staged afresh, not taken for staged already
    assert repo.get_bytes(oid) == data
    assert repo.fsck().problems == []


def test_alloc_falls_back_to_the_heap_when_no_map_is_had(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_map(*args: object, **kwargs: object) -> mmap.mmap:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(mmap, "mmap", no_map)
    out = buffers.alloc(buffers.MAP_FROM)
    assert isinstance(out, bytearray) and len(out) == buffers.MAP_FROM
