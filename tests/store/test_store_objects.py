"""Content-addressed objects: ids, prefixes, dedup, compression choice, verified reads, repair."""

from __future__ import annotations

import os
import random

import pytest
from blake3 import blake3
from store_helpers import all_records, delete_record, record, snapshot, tamper

from kitaru_store import (
    AmbiguousIdError,
    CorruptObjectError,
    InvalidIdError,
    ObjectNotFoundError,
    Repository,
    StoreFormatError,
    codec,
    layout,
    objects,
)
from kitaru_store.serialization import serialize


def test_object_id_is_blake3_of_the_serialized_bytes(repo: Repository) -> None:
    for value in ["hello", b"\x00bytes", 12345, [1, 2.5, None], {"k": (1, 2)}]:
        data, serializer = serialize(value)
        sv = repo.put_value(value)
        assert sv.object_id == blake3(bytes(data)).hexdigest()
        assert len(sv.object_id) == 64 and sv.object_id == sv.object_id.lower()
        assert sv.size == len(data)
        assert sv.serializer == serializer
        assert repo.get_bytes(sv.object_id) == bytes(data)
        assert repo.get_value(sv.object_id) == value


def test_put_bytes_id_and_read_back(repo: Repository) -> None:
    data = os.urandom(5000)
    oid = repo.put_bytes(data)
    assert oid == blake3(data).hexdigest()
    assert repo.has_object(oid)
    assert bytes(repo.get_bytes(oid)) == data
    # bytearray and memoryview inputs hash the same.
    assert repo.put_bytes(bytearray(data)) == oid
    assert repo.put_bytes(memoryview(data)) == oid


def test_empty_value(repo: Repository) -> None:
    oid = repo.put_bytes(b"")
    assert oid == blake3(b"").hexdigest()
    assert repo.get_bytes(oid) == b""
    assert repo.get_value(repo.put_value("").object_id) == ""


def test_unique_prefixes_resolve(repo: Repository) -> None:
    oid = repo.put_value("prefix me").object_id
    for n in (4, 5, 12, 63, 64):
        assert repo.resolve_object(oid[:n]) == oid
    assert repo.resolve_object(oid[:10].upper()) == oid
    # Anything that reads an object accepts a unique prefix.
    assert repo.get_value(oid[:8]) == "prefix me"
    assert repo.object_info(oid[:7]).object_id == oid


def test_short_or_malformed_prefixes_are_invalid(repo: Repository) -> None:
    oid = repo.put_value("x").object_id
    for bad in (oid[:3], oid[:1], "", "zzzz", "12g4", "a" * 65):
        with pytest.raises(InvalidIdError) as info:
            repo.resolve_object(bad)
        assert info.value.hint or "longer than" in info.value.message
    with pytest.raises(InvalidIdError):
        repo.get_value(oid[:3])


def test_unknown_prefix_is_not_found(repo: Repository) -> None:
    oid = repo.put_value("x").object_id
    missing = format((int(oid[:6], 16) + 1) % 16**6, "06x")
    with pytest.raises(ObjectNotFoundError) as info:
        repo.resolve_object(missing)
    assert info.value.object_id == missing
    with pytest.raises(ObjectNotFoundError):
        repo.get_bytes("0" * 64 if oid[0] != "0" else "f" * 64)


def test_ambiguous_prefix(repo: Repository) -> None:
    by_prefix: dict[str, str] = {}
    with repo.writer() as w:
        for i in range(5000):
            oid = w.put_bytes(b"value %d" % i)
            if oid[:4] in by_prefix:
                first, second = by_prefix[oid[:4]], oid
                break
            by_prefix[oid[:4]] = oid
        else:  # pragma: no cover - 5,000 values among 65,536 prefixes always collide
            pytest.fail("no shared 4-character prefix")
    with pytest.raises(AmbiguousIdError) as info:
        repo.resolve_object(first[:4])
    err = info.value
    assert sorted(err.candidates) == sorted([first, second])
    assert err.prefix == first[:4]
    assert first in str(err) and second in str(err)
    with pytest.raises(AmbiguousIdError):
        repo.get_bytes(first[:4])
    # One more character (where they differ) resolves each.
    common = next(i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b)
    assert repo.resolve_object(first[: max(common + 1, 4)]) == first
    assert repo.resolve_object(second[: max(common + 1, 4)]) == second


@pytest.mark.parametrize("prefix", ["abc", "abcd", "fff", "ffff", "0000", "00", "7"])
def test_hex_prefix_range_brackets_exactly_the_prefix(prefix: str) -> None:
    lo, hi = layout.hex_prefix_range(prefix)
    rng = random.Random(prefix)
    keys = [bytes(rng.randrange(256) for _ in range(4)) for _ in range(3000)]
    keys += [bytes.fromhex((prefix + "0" * 8)[:8]), bytes.fromhex((prefix + "f" * 8)[:8])]
    for key in keys:
        inside = lo <= key and (hi is None or key < hi)
        assert inside == key.hex().startswith(prefix), key.hex()


def test_same_bytes_twice_writes_nothing_new(repo: Repository) -> None:
    text = "deduplicate me " * 200
    first = repo.put_value(text)
    before_stats = repo.stats()
    before = all_records(repo)
    second = repo.put_value(text)
    assert second == first
    assert all_records(repo) == before
    after_stats = repo.stats()
    assert after_stats.objects == before_stats.objects == 1
    assert after_stats.stored_bytes == before_stats.stored_bytes
    # The same content inside one writer is staged once.
    with repo.writer() as w:
        assert w.put_value(text) == w.put_value(text) == first
        w.put_value("new")
    assert repo.stats().objects == 2


def test_dedup_refreshes_touch_time(repo: Repository) -> None:
    oid = repo.put_value("touch me").object_id
    t1 = repo.object_info(oid).touched_at
    repo.put_value("touch me")
    t2 = repo.object_info(oid).touched_at
    assert t1 is not None and t2 is not None and t2 > t1


def test_incompressible_data_is_stored_raw(repo: Repository) -> None:
    for size in (100, 5000, 200_000):
        oid = repo.put_bytes(os.urandom(size))
        info = repo.object_info(oid)
        assert info.codec == "raw"
        assert info.size == size
        assert info.stored_size == size + codec.HEADER_SIZE
        assert info.chunks == 0


def test_compressible_data_is_stored_zstd(repo: Repository) -> None:
    for text in ["the same words again and again " * 50, "a" * 300_000]:
        oid = repo.put_value(text).object_id
        info = repo.object_info(oid)
        assert info.codec == "zstd"
        assert info.stored_size < info.size / 2
        assert repo.get_value(oid) == text


def test_tiny_values_are_not_compressed(repo: Repository) -> None:
    oid = repo.put_value("aaaaaaaaaa").object_id
    assert repo.object_info(oid).codec == "raw"


def test_level_zero_disables_compression(store_path) -> None:
    repo = Repository.open(store_path, level=0)
    oid = repo.put_value("compressible " * 1000).object_id
    assert repo.object_info(oid).codec == "raw"
    assert repo.get_value(oid) == "compressible " * 1000


def test_codec_is_a_storage_detail_not_part_of_the_id(store_path) -> None:
    text = "same content, different levels " * 100
    raw_repo = Repository.open(store_path, level=0)
    oid = raw_repo.put_value(text).object_id
    assert raw_repo.object_info(oid).codec == "raw"
    zrepo = Repository.open(store_path, level=19)
    assert zrepo.put_value(text).object_id == oid
    assert zrepo.get_value(oid) == text


@pytest.mark.parametrize("where", ["zstd-payload", "raw-payload", "header"])
def test_corrupt_record_raises_and_never_returns_wrong_data(repo: Repository, where: str) -> None:
    if where == "raw-payload":
        value: object = os.urandom(3000)
    else:
        value = "corruptible text " * 100
    oid = repo.put_value(value).object_id
    assert repo.object_info(oid).codec == ("raw" if where == "raw-payload" else "zstd")
    tamper(repo, oid, at=1 if where == "header" else -5)
    for read in (repo.get_value, repo.get_bytes):
        with pytest.raises(CorruptObjectError) as info:
            read(oid)
        assert info.value.object_id == oid
        assert oid in str(info.value)
        assert info.value.hint and "again" in info.value.hint


def test_record_rewritten_with_other_content_is_detected(repo: Repository) -> None:
    oid = repo.put_value("genuine").object_id
    other = repo.put_value("impostor").object_id
    key = bytes.fromhex(oid)
    swapped = record(repo, other)
    repo._backend().update(lambda wt: wt.put(b"objects", key, swapped))
    with pytest.raises(CorruptObjectError, match="does not match its id"):
        repo.get_value(oid)


def test_newer_record_format_is_refused(repo: Repository) -> None:
    from kitaru_store import StoreFormatError

    oid = repo.put_value("from the future").object_id
    key = bytes.fromhex(oid)
    raw = record(repo, oid)
    repo._backend().update(lambda wt: wt.put(b"objects", key, bytes([codec.RECORD_VERSION + 1]) + raw[1:]))
    with pytest.raises(StoreFormatError):
        repo.get_value(oid)


def test_a_later_put_of_the_same_content_repairs(repo: Repository) -> None:
    value = {"precious": list(range(500))}
    oid = repo.put_value(value).object_id
    good = record(repo, oid)
    tamper(repo, oid)
    with pytest.raises(CorruptObjectError):
        repo.get_value(oid)
    assert not repo.fsck().ok
    assert repo.put_value(value).object_id == oid
    assert repo.get_value(oid) == value
    assert record(repo, oid) == good
    assert repo.fsck().ok


def test_repair_inside_a_writer_too(repo: Repository) -> None:
    oid = repo.put_value("fix me in a writer").object_id
    delete_record(repo, oid)
    with pytest.raises(ObjectNotFoundError) as info:
        repo.get_value(oid)
    assert info.value.object_id == oid
    with repo.writer() as w:
        w.put_value("fix me in a writer")
    assert repo.get_value(oid) == "fix me in a writer"


def test_object_info(repo: Repository) -> None:
    sv = repo.put_value("info " * 100)
    info = repo.object_info(sv.object_id)
    assert info.object_id == sv.object_id
    assert info.size == sv.size
    assert info.stored_size == len(record(repo, sv.object_id))
    assert info.touched_at is not None and info.touched_at.tzinfo is not None
    with pytest.raises(ObjectNotFoundError):
        repo.object_info("ab" * 32)


# --- a newer record format version is never overwritten; damage is repaired -----------------------


def set_record(repo: Repository, object_id: str, raw: bytes) -> None:
    key = bytes.fromhex(object_id)
    repo._backend().update(lambda wt: wt.put(b"objects", key, raw))


@pytest.mark.parametrize("size", [100, objects.CHUNK_THRESHOLD + (256 << 10)], ids=["small", "chunked"])
def test_put_refuses_to_overwrite_a_newer_record_format(repo: Repository, size: int) -> None:
    data = random.Random(size).randbytes(size)
    oid = repo.put_bytes(data)
    newer = bytes((codec.RECORD_VERSION + 1,)) + record(repo, oid)[1:]
    set_record(repo, oid, newer)
    before = snapshot(repo)

    with pytest.raises(StoreFormatError):
        repo.put_bytes(data)
    with pytest.raises(StoreFormatError), repo.writer() as w:
        w.put_bytes(bytearray(data))
    assert record(repo, oid) == newer
    assert snapshot(repo) == before
    with pytest.raises(StoreFormatError):
        repo.get_bytes(oid)


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: bytes((codec.RECORD_VERSION, codec.KIND_DATA, codec.CODEC_ZSTD)) + b"\x00garbage" * 8,
        lambda raw: raw[:-1] + bytes((raw[-1] ^ 1,)),
        lambda raw: bytes((codec.RECORD_VERSION, 9, codec.CODEC_RAW)) + raw[3:],
        lambda raw: raw[:2],
        lambda raw: bytes((codec.RECORD_VERSION, codec.KIND_INDEX, codec.CODEC_RAW)) + raw[3:],
    ],
    ids=["garbage-zstd", "flipped-bit", "unknown-kind", "truncated", "wrong-kind"],
)
def test_put_repairs_a_damaged_record(repo: Repository, damage) -> None:
    data = b"repair me " * 50
    oid = repo.put_bytes(data)
    set_record(repo, oid, damage(record(repo, oid)))
    assert not repo.fsck().ok
    assert repo.put_bytes(data) == oid
    assert repo.get_bytes(oid) == data
    assert codec.decode(record(repo, oid))[0] == codec.KIND_DATA
    assert repo.fsck().ok


# --- put_bytes copies a caller's mutable buffer ---------------------------------------------------


@pytest.mark.parametrize("stored_before", [False, True], ids=["new", "swept-dedup-hit"])
@pytest.mark.parametrize("size", [1000, objects.CHUNK_THRESHOLD + (300 << 10)], ids=["small", "chunked"])
@pytest.mark.parametrize(
    "wrap", [bytearray, lambda b: memoryview(bytearray(b))], ids=["bytearray", "memoryview"]
)
def test_put_bytes_of_a_mutable_buffer_stores_the_original(
    repo: Repository, size: int, wrap, stored_before: bool
) -> None:
    original = random.Random(size).randbytes(size)
    if stored_before:
        repo.put_bytes(original)  # staging finds it stored: nothing is encoded until the commit
    buf = wrap(original)
    with repo.writer() as w:
        oid = w.put_bytes(buf)
        buf[:] = b"\xff" * size  # the caller reuses its buffer before the commit
        if stored_before:
            # The stored copy is swept before the commit, which must then write the value itself.
            assert repo.gc(grace=0).objects_removed >= 1
            assert not repo.has_object(oid)
    assert oid == objects.hashing.hexdigest(original)
    assert repo.get_bytes(oid) == original
    assert repo.fsck().ok
