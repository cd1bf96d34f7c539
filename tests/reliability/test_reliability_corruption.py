"""Flipped bits in object records and manifests: refused with an error naming what is damaged,
never returned as data; listed by fsck; repaired by a later save of the same content."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import harness
import msgspec
import pytest
from click.testing import CliRunner

import kitaru
from kitaru_store import (
    CorruptManifestError,
    CorruptObjectError,
    Repository,
    StoreFormatError,
    codec,
    layout,
    objects,
)
from kitaru_store import manifests as mf
from kitaru_store.cli import cli

SEED = int(os.environ.get("KITARU_RELIABILITY_SEED", "20250101"))
ROUNDS = int(os.environ.get("KITARU_RELIABILITY_CORRUPTIONS", "40"))


def test_random_bit_flips_are_refused_listed_and_repaired(tmp_path: Path) -> None:
    """ROUNDS single-bit flips across every record shape (raw and zstd data records of every size,
    chunks, chunk indexes) and the manifest, each checked through the store, the client and fsck."""
    figures = harness.run_corruption(tmp_path / "store", ROUNDS, seed=SEED)
    assert not figures.violations, "\n".join(figures.violations)
    assert figures.corruptions == ROUNDS
    assert figures.corruptions_detected + figures.corruptions_harmless == ROUNDS
    assert figures.fsck_reported == figures.corruptions_detected
    assert figures.corruptions_detected >= ROUNDS * 0.9
    assert figures.repairs > 0


def _put_record(repo: Repository, key: bytes, raw: bytes) -> None:
    repo._backend().update(lambda wt: wt.put(b"objects", key, raw))


def _record(repo: Repository, key: bytes) -> bytes:
    with repo.kv.read() as rt:
        raw = rt.get(b"objects", key)
    assert raw is not None
    return raw


def _every_flip(raw: bytes) -> list[tuple[int, bytes]]:
    out = []
    for at in range(len(raw)):
        for bit in range(8):
            damaged = bytearray(raw)
            damaged[at] ^= 1 << bit
            out.append((at, bytes(damaged)))
    return out


class _Records:
    """A stand-in for a read transaction over a dict of records: objects.read() is what
    Repository.get_bytes runs, and this lets every flip be read without a commit per flip."""

    def __init__(self, records: dict[bytes, bytes]) -> None:
        self.records = records

    def get_view(self, db: bytes, key: bytes) -> memoryview | None:
        assert db == b"objects"
        raw = self.records.get(key)
        return None if raw is None else memoryview(raw)


@pytest.mark.parametrize("shape", ["raw", "zstd", "chunk-index", "zstd-chunk"])
def test_every_single_bit_flip_of_a_record_is_refused_or_harmless(repo: Repository, shape: str) -> None:
    """Exhaustively: each bit of the record flipped in turn. A read gives the exact bytes or raises
    CorruptObjectError (StoreFormatError where a version number is) naming the object read."""
    rng = random.Random(SEED)
    if shape == "raw":
        data = b"tiny raw record"
    elif shape == "zstd":
        data = b"a compressible record " * 20
    elif shape == "chunk-index":
        data = rng.randbytes(objects.CHUNK_THRESHOLD + (200 << 10))
    else:  # a compressible chunked value: its chunks are zstd records; flip the last one
        words = [b"alpha ", b"beta ", b"gamma ", b"delta "]
        data = b"".join(rng.choices(words, k=250_000))[: objects.CHUNK_THRESHOLD + 4096]
    oid = repo.put_bytes(data)
    key = bytes.fromhex(oid)
    with repo.kv.read() as rt:
        records = dict(rt.items(b"objects"))
    target = key
    if shape == "zstd-chunk":
        target = objects.chunk_keys(records[key], key)[-1]
    raw = records[target]
    assert (
        codec.header(raw)
        == {
            "raw": (codec.KIND_DATA, codec.CODEC_RAW),
            "zstd": (codec.KIND_DATA, codec.CODEC_ZSTD),
            "chunk-index": (codec.KIND_INDEX, codec.CODEC_RAW),
            "zstd-chunk": (codec.KIND_DATA, codec.CODEC_ZSTD),
        }[shape]
    )
    version_bytes = {0, 4} if shape == "chunk-index" else {0}  # 4: after the header and 0x93
    outcomes = {"exact": 0, "refused": 0}
    flips = _every_flip(raw)
    if len(raw) > 400:  # a long record: every flip of its ends (headers, frame), a sample between
        ends = [f for f in flips if f[0] < 40 or f[0] >= len(raw) - 16]
        flips = ends + rng.sample([f for f in flips if 40 <= f[0] < len(raw) - 16], 300)
    for at, damaged in flips:
        rt = _Records({**records, target: damaged})
        try:
            got = objects.read(rt, key)  # type: ignore[arg-type]
        except (CorruptObjectError, StoreFormatError) as exc:
            assert exc.object_id == oid, (at, exc)
            assert isinstance(exc, CorruptObjectError) or at in version_bytes, (at, exc)
            outcomes["refused"] += 1
            continue
        assert got == data, f"flip at byte {at} returned wrong data"
        outcomes["exact"] += 1
    assert outcomes["refused"] > 0.9 * len(flips), outcomes
    # A sample through the store itself: get_bytes and fsck.
    for at, damaged in rng.sample(flips, 6):
        _put_record(repo, target, damaged)
        try:
            assert repo.get_bytes(oid) == data
            assert repo.fsck().ok
        except (CorruptObjectError, StoreFormatError) as exc:
            assert exc.object_id == oid
            assert target.hex() in {p.object_id for p in repo.fsck().problems}, at
    _put_record(repo, target, raw)
    assert repo.get_bytes(oid) == data
    assert repo.fsck().ok


def test_every_single_bit_flip_of_a_manifest_is_refused(repo: Repository) -> None:
    """Manifests carry a BLAKE3 checksum: a flip anywhere, the checksum pair included, is a
    CorruptManifestError naming the execution."""

    @kitaru.checkpoint
    def step(i: int) -> int:
        kitaru.save(f"note-{i}", {"i": i, "text": "n" * i})
        return i

    @kitaru.flow
    def manifest_flow() -> int:
        for i in range(4):
            step(i)
        return 4

    handle = manifest_flow.run()
    exec_id = handle.exec_id
    key = bytes.fromhex(exec_id)
    with repo.kv.read() as rt:
        raw = rt.get(b"manifests", key)
    assert raw is not None
    for at, damaged in _every_flip(raw):
        with pytest.raises(CorruptManifestError) as excinfo:  # what every reader calls
            mf.decode_manifest(damaged, exec_id=exec_id)
        assert excinfo.value.exec_id == exec_id, at
    # And through the store, for a sample: get_execution, the client, name resolution, fsck, gc.
    rng = random.Random(SEED)
    for _at, damaged in rng.sample(_every_flip(raw[: -len(mf.CHECKSUM_TAIL) - 32]), 5):
        repo._backend().update(lambda wt, d=damaged: wt.put(b"manifests", key, d))
        for read in (
            lambda: repo.get_execution(exec_id),
            lambda: kitaru.KitaruClient().executions.get(exec_id),
            lambda: repo.resolve_name(exec_id, "note-1"),
        ):
            with pytest.raises(CorruptManifestError) as excinfo:
                read()
            assert excinfo.value.exec_id == exec_id
        assert [(p.kind, p.exec_id) for p in repo.fsck().problems] == [("bad-manifest", exec_id)]
        with pytest.raises(CorruptManifestError):
            repo.gc(grace=0)  # never sweeps on a root set it could not read
    repo._backend().update(lambda wt: wt.put(b"manifests", key, raw))
    assert repo.fsck().ok


@kitaru.checkpoint
def save_it(name: str, value: Any) -> None:
    kitaru.save(name, value)


@kitaru.flow
def saving(name: str, value: Any) -> None:
    save_it(name, value)


@kitaru.checkpoint
def load_it(exec_id: str, name: str) -> Any:
    return kitaru.load(exec_id, name)


@kitaru.flow
def loading(exec_id: str, name: str) -> Any:
    return load_it(exec_id, name)


@pytest.mark.parametrize("which", ["record", "chunk"])
def test_a_later_save_repairs_instead_of_deduplicating(
    repo: Repository, store_path: Path, which: str
) -> None:
    value = random.Random(1).randbytes(3 << 20 if which == "chunk" else 5000)
    first = saving.run("blob", value)
    oid = repo.resolve_name(first.exec_id, "blob").object_id
    key = bytes.fromhex(oid)
    if which == "chunk":
        key = objects.chunk_keys(_record(repo, key), key)[1]
    raw = _record(repo, key)
    _put_record(repo, key, raw[:-1] + bytes((raw[-1] ^ 0x10,)))

    # Every way of reading it refuses, naming the object it was asked for.
    with pytest.raises(CorruptObjectError) as excinfo:
        repo.get_value(oid)
    assert excinfo.value.object_id == oid
    with pytest.raises(CorruptObjectError) as excinfo:
        kitaru.KitaruClient().executions.get(first.exec_id).artifact("blob").load()
    assert excinfo.value.object_id == oid
    reader = loading.run(first.exec_id, "blob")  # kitaru.load() inside a checkpoint
    assert reader.status == "failed"
    with pytest.raises(kitaru.FlowExecutionError) as flow_error:
        reader.wait()
    assert isinstance(flow_error.value.__cause__, CorruptObjectError)
    assert flow_error.value.__cause__.object_id == oid
    result = CliRunner().invoke(cli, ["--store", str(store_path), "cat", oid, "--json"])
    assert result.exit_code != 0
    doc = json.loads(result.stdout or result.stderr)
    assert doc["error"] == "CorruptObjectError" and doc["object_id"] == oid
    assert key.hex() in {p.object_id for p in repo.fsck().problems}

    # Saving the same value again rewrites the damaged record rather than pointing at it.
    second = saving.run("blob", value)
    assert second.status == "completed"
    assert repo.resolve_name(second.exec_id, "blob").object_id == oid
    assert _record(repo, key) != raw[:-1] + bytes((raw[-1] ^ 0x10,))
    assert repo.get_value(oid) == value
    assert kitaru.KitaruClient().executions.get(first.exec_id).artifact("blob").load() == value
    assert repo.fsck().ok


def test_damaged_manifest_without_a_checksum_is_still_a_corrupt_manifest_error(repo: Repository) -> None:
    """Manifests written before checksums: bad UTF-8 used to escape as a bare UnicodeDecodeError."""
    exec_id = saving.run("x", 1).exec_id
    manifest = repo.get_execution(exec_id)
    legacy = bytearray(mf.encode(msgspec.structs.replace(manifest, format_version=1)))  # no checksum pair
    at = legacy.index(b"saving") + 1
    legacy[at] = 0xFF  # not UTF-8
    repo._backend().update(lambda wt: wt.put(b"manifests", bytes.fromhex(exec_id), bytes(legacy)))
    with pytest.raises(CorruptManifestError) as excinfo:
        repo.get_execution(exec_id)
    assert excinfo.value.exec_id == exec_id
    assert [p.kind for p in repo.fsck().problems] == ["bad-manifest"]


def test_fsck_lists_malformed_ids_instead_of_crashing(repo: Repository) -> None:
    exec_id = saving.run("x", 1).exec_id
    manifest = repo.get_execution(exec_id)
    entry = msgspec.structs.replace(manifest.entries[0], object_id="z" * 64)
    # A format-1 manifest written before checksums (none to fail first)
    damaged = mf.encode(msgspec.structs.replace(manifest, entries=(entry,), format_version=1))
    key = bytes.fromhex(exec_id)

    def as_format1(wt: Any) -> None:  # a format-1 execution has no part records
        for k in [k for k, _ in wt.items(layout.PARTS, *layout.part_exec_range(key))]:
            wt.delete(layout.PARTS, k)
        wt.put(b"manifests", key, damaged)

    repo._backend().update(as_format1)
    problems = repo.fsck().problems
    assert [(p.kind, p.exec_id) for p in problems] == [("bad-manifest", exec_id)], problems
    assert "malformed ids" in problems[0].detail


def test_fsck_lists_a_record_of_a_newer_format_and_goes_on(repo: Repository) -> None:
    """A version byte above 1 (a newer kitaru, or a damaged byte) is listed; fsck checks the rest."""
    newer = repo.put_bytes(b"claims a newer format")
    broken = repo.put_bytes(b"plainly damaged record")
    raw = _record(repo, bytes.fromhex(newer))
    _put_record(repo, bytes.fromhex(newer), bytes((codec.RECORD_VERSION + 1,)) + raw[1:])
    raw = _record(repo, bytes.fromhex(broken))
    _put_record(repo, bytes.fromhex(broken), raw[:-1] + bytes((raw[-1] ^ 1,)))
    problems = {(p.kind, p.object_id) for p in repo.fsck().problems}
    assert problems == {("newer-format", newer), ("corrupt-object", broken)}
    with pytest.raises(StoreFormatError) as excinfo:
        repo.get_bytes(newer)
    assert excinfo.value.object_id == newer  # the format error names the object too


def test_a_flip_in_a_manifests_checksum_pair_is_refused_and_listed(
    repo: Repository, store_path: Path
) -> None:
    """A flip in the checksum key or its bin8 header leaves a manifest without a checksum pair:
    it must not then pass as one written before checksums, unverified."""
    exec_id = saving.run("x", 1).exec_id
    key = bytes.fromhex(exec_id)
    with repo.kv.read() as rt:
        stored = rt.get(b"manifests", key)
    assert stored is not None and stored[-43:-32] == mf.CHECKSUM_TAIL
    pair_at = len(stored) - 43
    # Every flip is refused by decode_manifest (the test above); here one flip in each part of the
    # pair goes through the store, fsck, the CLI and kitaru.load.
    for at in (pair_at, pair_at + 3, pair_at + 9, pair_at + 10, pair_at + 20):
        damaged = bytearray(stored)
        damaged[at] ^= 0x04
        repo._backend().update(lambda wt, d=bytes(damaged): wt.put(b"manifests", key, d))
        with pytest.raises(CorruptManifestError) as excinfo:
            repo.get_execution(exec_id)
        assert excinfo.value.exec_id == exec_id
        assert [(p.kind, p.exec_id) for p in repo.fsck().problems] == [("bad-manifest", exec_id)]
        result = CliRunner().invoke(cli, ["--store", str(store_path), "show", exec_id, "--json"])
        assert result.exit_code != 0
        assert json.loads(result.stdout or result.stderr)["error"] == "CorruptManifestError"
        reader = loading.run(exec_id, "x")
        with pytest.raises(kitaru.FlowExecutionError) as flow_error:
            reader.wait()
        assert isinstance(flow_error.value.__cause__, CorruptManifestError)
    repo._backend().update(lambda wt: wt.put(b"manifests", key, stored))
    assert repo.fsck().ok
