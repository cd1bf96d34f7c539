"""Large values: content-defined chunking, chunk-level dedup, zero-copy loads, map growth."""

from __future__ import annotations

import mmap
import os
import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from blake3 import blake3
from store_helpers import delete_record, record, tamper

from kitaru_store import (
    CorruptObjectError,
    Repository,
    StoreError,
    StoreFormatError,
    StoreFullError,
    buffers,
    codec,
    objects,
)
from kitaru_store.backend import close_backend
from kitaru_store.serialization import serialize

MiB = 1 << 20


def random_bytes(n: int, seed: int = 0) -> bytearray:
    return bytearray(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())


def chunk_ids(repo: Repository, object_id: str) -> list[str]:
    return [k.hex() for k in objects.chunk_keys(record(repo, object_id), bytes.fromhex(object_id))]


def load_buffer(arr: np.ndarray) -> Any:
    """The object that finally owns an array's memory."""
    base: Any = arr
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


def test_threshold_between_single_record_and_chunks(repo: Repository) -> None:
    at = repo.put_bytes(random_bytes(objects.CHUNK_THRESHOLD, 1))
    above = repo.put_bytes(random_bytes(objects.CHUNK_THRESHOLD + 1, 2))
    assert repo.object_info(at).chunks == 0
    info = repo.object_info(above)
    assert info.chunks > 0
    assert info.size == objects.CHUNK_THRESHOLD + 1


def test_chunked_value_layout_and_readback(repo: Repository) -> None:
    data = random_bytes(5 * MiB + 123, 3)
    oid = repo.put_bytes(data)
    assert oid == blake3(data).hexdigest()  # the id is the hash of the whole value
    info = repo.object_info(oid)
    cids = chunk_ids(repo, oid)
    assert info.chunks == len(cids) >= 5
    assert info.size == len(data)
    kind, _ = codec.header(record(repo, oid))
    assert kind == codec.KIND_INDEX
    sizes = []
    for cid in cids:
        chunk = repo.get_bytes(cid)
        assert blake3(chunk).hexdigest() == cid
        assert objects.CHUNK_MIN <= len(chunk) <= objects.CHUNK_MAX or cid == cids[-1]
        sizes.append(len(chunk))
    assert sum(sizes) == len(data)
    assert repo.get_bytes(oid) == data
    stats = repo.stats()
    assert stats.chunked_values == 1
    assert stats.objects == len(cids) + 1


def test_edited_large_value_stores_only_changed_chunks(repo: Repository) -> None:
    data = random_bytes(24 * MiB, 4)
    first = repo.put_bytes(data)
    before = repo.stats()
    for offset in (1 * MiB, 9 * MiB + 5, 17 * MiB, 23 * MiB):
        data[offset : offset + 200] = b"e" * 200  # edits in place
    second = repo.put_bytes(data)
    after = repo.stats()
    assert second != first
    extra_bytes = after.stored_bytes - before.stored_bytes
    new_objects = after.objects - before.objects
    assert new_objects <= 4 * 2 + 1  # at most two new chunks per edit, plus the index
    assert extra_bytes < 0.15 * before.stored_bytes, (extra_bytes, before.stored_bytes)
    shared = set(chunk_ids(repo, first)) & set(chunk_ids(repo, second))
    assert len(shared) >= len(chunk_ids(repo, first)) - 8
    assert repo.get_bytes(second) == data
    assert repo.get_bytes(first) != data


def test_inserted_bytes_shift_but_chunks_resynchronise(repo: Repository) -> None:
    data = random_bytes(8 * MiB, 5)
    first = repo.put_bytes(data)
    before = repo.stats()
    data[3 * MiB : 3 * MiB] = b"inserted in the middle"
    second = repo.put_bytes(data)
    after = repo.stats()
    assert after.objects - before.objects <= 3
    assert after.stored_bytes - before.stored_bytes < 0.2 * before.stored_bytes
    assert repo.get_bytes(second) == data
    assert first != second


def test_chunked_numpy_array_loads_writable_into_the_read_buffer(repo: Repository) -> None:
    arr = np.random.default_rng(6).standard_normal((2048, 1024))  # 16 MiB
    sv = repo.put_value(arr)
    assert sv.serializer == "numpy"
    assert repo.object_info(sv.object_id).chunks > 0
    out = repo.get_value(sv.object_id)
    assert np.array_equal(out, arr)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    assert out.flags.writeable
    owner = load_buffer(out)
    # The one buffer the chunks were read into: a mapped one (buffers.py), as the value is large.
    assert sv.size >= buffers.MAP_FROM
    assert isinstance(owner, mmap.mmap)
    assert len(owner) == sv.size
    assert np.shares_memory(out, np.frombuffer(owner, dtype=np.uint8))
    out[0, 0] = 1.0  # writable in place


def test_chunked_numpy_load_makes_no_second_copy(repo: Repository) -> None:
    arr = np.arange(3 * MiB, dtype=np.float64)  # 24 MiB
    oid = repo.put_value(arr).object_id
    del arr
    tracemalloc.start()
    try:
        out = repo.get_value(oid)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.nbytes == 24 * MiB
    # The value is read into a mapped buffer (buffers.py), which tracemalloc does not see, and the
    # array views it: nothing near the value's size may be allocated on the Python heap.
    assert isinstance(load_buffer(out), mmap.mmap)
    assert peak < 0.1 * out.nbytes, peak / out.nbytes


def test_fortran_ordered_large_array(repo: Repository) -> None:
    arr = np.asfortranarray(np.random.default_rng(7).integers(0, 1000, (1500, 700), dtype=np.int32))
    out = repo.get_value(repo.put_value(arr).object_id)
    assert np.array_equal(out, arr)
    assert out.flags.f_contiguous and out.flags.writeable


def test_corrupted_chunk_is_detected_and_named(repo: Repository) -> None:
    data = random_bytes(4 * MiB, 8)
    oid = repo.put_bytes(data)
    cids = chunk_ids(repo, oid)
    victim = cids[len(cids) // 2]
    tamper(repo, victim, at=-100)
    with pytest.raises(CorruptObjectError) as info:
        repo.get_bytes(oid)
    assert info.value.object_id == oid
    assert victim in info.value.message
    with pytest.raises(CorruptObjectError) as info:
        repo.get_bytes(victim)
    assert info.value.object_id == victim
    problems = {(p.kind, p.object_id) for p in repo.fsck().problems}
    assert ("corrupt-object", victim) in problems
    assert ("corrupt-object", oid) in problems
    # Saving the value again rewrites the damaged chunk only.
    assert repo.put_bytes(data) == oid
    assert repo.get_bytes(oid) == data
    assert repo.fsck().ok


def test_missing_chunk_is_detected_and_named(repo: Repository) -> None:
    data = random_bytes(3 * MiB, 9)
    oid = repo.put_bytes(data)
    victim = chunk_ids(repo, oid)[0]
    delete_record(repo, victim)
    with pytest.raises(CorruptObjectError, match=f"chunk {victim} is missing") as info:
        repo.get_bytes(oid)
    assert info.value.object_id == oid
    repo.put_bytes(data)
    assert repo.get_bytes(oid) == data


def test_chunks_are_shared_between_values(repo: Repository) -> None:
    common = random_bytes(4 * MiB, 10)
    a = repo.put_bytes(bytes(common) + b"tail A" * 1000)
    b = repo.put_bytes(bytes(b"head B" * 1000) + common)
    shared = set(chunk_ids(repo, a)) & set(chunk_ids(repo, b))
    assert len(shared) >= 5
    assert repo.get_bytes(a)[: len(common)] == common
    assert repo.get_bytes(b)[-len(common) :] == common


def test_compressible_chunks_are_compressed(repo: Repository) -> None:
    text = ("lorem ipsum dolor sit amet " * 100_000)[: 3 * MiB]
    sv = repo.put_value(text)
    info = repo.object_info(sv.object_id)
    assert info.chunks > 0
    assert info.stored_size < sv.size / 10
    assert repo.get_value(sv.object_id) == text


def test_large_value_inside_a_msgpack_tree(repo: Repository) -> None:
    value = {"blob": bytes(random_bytes(2 * MiB, 11)), "arr": np.ones((600, 600)), "n": 1}
    out = repo.get_value(repo.put_value(value).object_id)
    assert out["blob"] == value["blob"]
    assert np.array_equal(out["arr"], value["arr"]) and out["arr"].flags.writeable


# --- map growth -------------------------------------------------------------------------------


@pytest.fixture
def small_map_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "small-map"
    monkeypatch.setenv("KITARU_MAP_SIZE", str(MiB))
    yield path
    close_backend(str(path / "db"))


def test_map_grows_as_data_arrives(small_map_store: Path) -> None:
    repo = Repository.open(small_map_store)
    assert repo._backend().stat()["map_size"] == MiB
    written: dict[str, bytes] = {}
    for i in range(10):  # ten 1 MiB-ish values, each in its own transaction
        data = bytes(random_bytes(MiB - 1000, 100 + i))
        written[repo.put_bytes(data)] = data
    big = bytes(random_bytes(10 * MiB, 99))  # and one value larger than the map has grown to
    written[repo.put_bytes(big)] = big
    assert repo._backend().stat()["map_size"] >= 20 * MiB
    for oid, data in written.items():
        assert repo.get_bytes(oid) == data
    assert repo.fsck().ok
    assert os.path.getsize(small_map_store / "db" / "data.mdb") >= 20 * MiB


def test_map_limit_is_a_store_full_error_and_changes_nothing(
    small_map_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITARU_MAP_LIMIT", str(2 * MiB))
    repo = Repository.open(small_map_store)
    kept = repo.put_value("small and safe").object_id
    before = repo.stats()
    with pytest.raises(StoreFullError) as info, repo.writer() as w:
        w.put_bytes(bytes(random_bytes(4 * MiB, 12)))
        w.create_execution("too-big")
    assert info.value.hint and "KITARU_MAP_LIMIT" in info.value.hint
    assert repo.get_value(kept) == "small and safe"
    after = repo.stats()
    assert (after.objects, after.stored_bytes) == (before.objects, before.stored_bytes)
    assert repo.count_executions() == 0


def test_serialized_size_matches_stored_value_size(repo: Repository) -> None:
    arr = np.zeros((700, 700))
    data, _ = serialize(arr)
    sv = repo.put_value(arr)
    assert sv.size == len(data) == repo.object_info(sv.object_id).size


def _index_variants(index: objects.ChunkIndex) -> dict[str, objects.ChunkIndex]:
    """A chunk index with one size or count field damaged, each way a reader could trust it."""
    chunks = list(index.chunks)
    first_id, first_size = chunks[0]
    return {
        "huge total": objects.ChunkIndex(index.version, 1 << 62, chunks),
        "total past any value": objects.ChunkIndex(index.version, objects.MAX_VALUE_SIZE + 1, chunks),
        "negative total": objects.ChunkIndex(index.version, -5, chunks),
        "zero total": objects.ChunkIndex(index.version, 0, chunks),
        "total off by one": objects.ChunkIndex(index.version, index.size + 1, chunks),
        "negative chunk": objects.ChunkIndex(
            index.version, index.size, [(first_id, -first_size), *chunks[1:]]
        ),
        "huge chunk": objects.ChunkIndex(index.version, index.size, [(first_id, 1 << 62), *chunks[1:]]),
        "chunk larger than a record": objects.ChunkIndex(
            index.version,
            index.size - first_size + codec.MAX_DATA_SIZE + 1,
            [(first_id, codec.MAX_DATA_SIZE + 1), *chunks[1:]],
        ),
        "sizes moved between chunks": objects.ChunkIndex(
            index.version,
            index.size,
            [(first_id, first_size + 1), (chunks[1][0], chunks[1][1] - 1), *chunks[2:]],
        ),
        "no chunks": objects.ChunkIndex(index.version, index.size, []),
        "short chunk id": objects.ChunkIndex(
            index.version, index.size, [(first_id[:5], first_size), *chunks[1:]]
        ),
        "version 0": objects.ChunkIndex(0, index.size, chunks),
    }


@pytest.mark.parametrize("damage", list(_index_variants(objects.ChunkIndex(1, 3, [(b"x" * 32, 1)] * 3))))
def test_damaged_chunk_index_sizes_are_corruption_and_fsck_goes_on(repo: Repository, damage: str) -> None:
    data = random_bytes(3 * MiB, 11)
    oid = repo.put_bytes(data)
    other = repo.put_bytes(random_bytes(3 * MiB, 12))
    _, payload = codec.decode(record(repo, oid))
    index = msgspec.msgpack.decode(payload, type=objects.ChunkIndex)
    damaged = codec.encode(msgspec.msgpack.encode(_index_variants(index)[damage]), kind=codec.KIND_INDEX)
    repo._backend().update(lambda wt: wt.put(b"objects", bytes.fromhex(oid), damaged))
    for mapped in (False, True):
        with pytest.raises(CorruptObjectError) as info, repo.kv.read() as rt:
            objects.read(rt, bytes.fromhex(oid), mapped=mapped)
        assert info.value.object_id == oid
        assert "chunk" in info.value.message
    report = repo.fsck()
    assert [(p.kind, p.object_id) for p in report.problems] == [("corrupt-object", oid)]
    assert report.objects_checked == report.objects_total  # it went on past the damaged index
    assert repo.get_bytes(other) == random_bytes(3 * MiB, 12)
    # Saving the value again repairs the index.
    assert repo.put_bytes(data) == oid
    assert repo.get_bytes(oid) == data


def test_a_chunk_index_record_cannot_expand_far_beyond_its_size(repo: Repository) -> None:
    """A few kilobytes of zstd could declare (and expand to) up to 256 MiB of index: a reader
    refuses more than codec.INDEX_RATIO times the stored payload plus INDEX_SLACK, before it
    allocates, and a writer never stores an index it would refuse."""
    import zstandard

    big = bytes(8 << 20)  # compresses about 30,000 times
    record = codec.encode(big, kind=codec.KIND_INDEX)
    assert not codec.is_compressed(record)  # stored raw: a reader would refuse the zstd form
    assert codec.decode(record)[1] == big
    bomb = bytes((1, codec.KIND_INDEX, codec.CODEC_ZSTD)) + zstandard.ZstdCompressor().compress(
        bytes(64 << 20)
    )
    oid = repo.put_bytes(random_bytes(3 * MiB, 13))
    repo._backend().update(lambda wt: wt.put(b"objects", bytes.fromhex(oid), bomb))
    tracemalloc.start()
    try:
        with pytest.raises(CorruptObjectError, match="declares 67108864") as info:
            repo.get_bytes(oid)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.object_id == oid
    assert peak < 4 << 20
    assert [(p.kind, p.object_id) for p in repo.fsck().problems] == [("corrupt-object", oid)]


@pytest.mark.parametrize("junk", ["zeros", "second-frame"])
@pytest.mark.parametrize("which", ["value", "chunk"])
def test_bytes_after_a_zstd_frame_are_damage(repo: Repository, which: str, junk: str) -> None:
    """A zstd record holds one frame and nothing after it. Reads stop at the end of the frame
    (the value is still verified against its id), but fsck lists such a record, and a save of the
    same value rewrites it."""
    words = np.random.default_rng(7).choice([b"alpha ", b"kitaru ", b"store ", b"chunk "], 600_000)
    data = b"".join(words.tolist())[: 3 * MiB if which == "chunk" else 1000]
    oid = repo.put_bytes(data)
    key = bytes.fromhex(oid) if which == "value" else bytes.fromhex(chunk_ids(repo, oid)[1])
    raw = record(repo, key.hex())
    assert codec.is_compressed(raw)
    extra = bytes(64) if junk == "zeros" else codec.encode(b"another frame " * 20)[codec.HEADER_SIZE :]
    repo._backend().update(lambda wt: wt.put(b"objects", key, raw + extra))
    assert repo.get_bytes(oid) == data
    problems = repo.fsck().problems
    assert [(p.kind, p.object_id) for p in problems] == [("corrupt-object", key.hex())], problems
    assert f"{len(extra)} bytes follow the zstd frame" in problems[0].detail
    assert repo.put_bytes(data) == oid
    assert record(repo, key.hex()) == raw
    assert repo.fsck().ok


# --- a newer chunk index version ------------------------------------------------------------------


def test_newer_chunk_index_version_is_a_format_error(repo: Repository) -> None:
    data = random.Random(8).randbytes(objects.CHUNK_THRESHOLD + (512 << 10))
    oid = repo.put_bytes(data)
    repo.pin("big", oid)
    key = bytes.fromhex(oid)
    kind, payload = codec.decode(record(repo, oid))
    assert kind == codec.KIND_INDEX
    index = msgspec.msgpack.decode(bytes(payload), type=objects.ChunkIndex)
    assert index.version == objects.INDEX_VERSION and len(index.chunks) > 1
    newer = objects.ChunkIndex(objects.INDEX_VERSION + 1, index.size, index.chunks)
    rewritten = codec.encode(msgspec.msgpack.encode(newer), kind=codec.KIND_INDEX)
    repo._backend().update(lambda wt: wt.put(b"objects", key, rewritten))

    with pytest.raises(StoreFormatError) as excinfo:
        repo.get_bytes(oid)
    assert excinfo.value.object_id == oid
    assert str(objects.INDEX_VERSION + 1) in excinfo.value.message
    with pytest.raises(StoreFormatError):
        repo.object_info(oid)
    # A live value whose chunk list gc cannot read: gc refuses rather than sweep its chunks.
    with pytest.raises(StoreFormatError):
        repo.gc(grace=0)
    assert all(repo.has_object(c.hex()) for c, _ in index.chunks)


# --- a bad KITARU_MAP_LIMIT -----------------------------------------------------------------------


def test_bad_map_limit_is_a_store_error(small_map_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_MAP_LIMIT", "a lot")
    repo = Repository.open(small_map_store)
    small = repo.put_value("fits").object_id
    too_big = random.Random(13).randbytes(2 << 20)
    with pytest.raises(StoreError) as excinfo:
        repo.put_bytes(too_big)
    assert not isinstance(excinfo.value, ValueError)
    assert "KITARU_MAP_LIMIT" in excinfo.value.message
    assert repo.get_value(small) == "fits"
    assert repo.stats().objects == 1

    monkeypatch.setenv("KITARU_MAP_LIMIT", "1048576")  # a number, but reached already
    with pytest.raises(StoreFullError):
        repo.put_bytes(too_big)
    assert repo.get_value(small) == "fits"
