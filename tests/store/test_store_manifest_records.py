"""Manifest format 2: an execution is a head plus one record per entry, checkpoint and wait."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
from store_helpers import make_entry

from kitaru_store import Repository, layout, reachability
from kitaru_store import manifest_store as ms
from kitaru_store import manifests as mf
from kitaru_store.errors import CorruptManifestError, ExecutionNotFoundError, ManifestTooLargeError

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
INDEXED = (ms.MANIFESTS, ms.PARTS, b"exec_time", b"exec_flow", b"artifacts")


def _checkpoint(n: int, status: str = "completed") -> mf.CheckpointRecord:
    return mf.CheckpointRecord(invocation_id=f"step_{n}", name="step", status=status, started_at=T0, seq=n)


def _flow(repo: Repository, checkpoints: int) -> str:
    exec_id = repo.create_execution("flow", started_at=T0)
    for n in range(checkpoints):
        with repo.writer() as w:
            w.add_entry(exec_id, make_entry(w.put_value(n), "output", invocation_id=f"step_{n}"))
            w.set_checkpoint(exec_id, _checkpoint(n))
    return exec_id


def _state(repo: Repository) -> dict[tuple[bytes, bytes], bytes]:
    with repo.kv.read() as rt:
        return {(db, k): v for db in INDEXED for k, v in rt.items(db)}


@pytest.mark.parametrize("length", [3, 60])
def test_a_checkpoint_commit_writes_the_same_few_keys_whatever_the_flows_length(
    repo: Repository, length: int
) -> None:
    exec_id = _flow(repo, length)
    before = _state(repo)
    with repo.writer() as w:
        w.add_entry(exec_id, make_entry(w.put_value("last"), "output", invocation_id="last"))
        w.set_checkpoint(exec_id, _checkpoint(length))
        w.set_checkpoint(exec_id, _checkpoint(0, status="overridden"))  # one replaced in place
    after = _state(repo)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    # The head, the summary; the new entry's record, identity key and artifact key; the new
    # checkpoint's record and identity key; the replaced checkpoint's record.
    assert sorted(db for db, _ in changed) == sorted(
        [ms.MANIFESTS, b"exec_time", ms.PARTS, ms.PARTS, b"artifacts", ms.PARTS, ms.PARTS, ms.PARTS]
    )
    m = repo.get_execution(exec_id)
    assert [c.invocation_id for c in m.checkpoints] == [f"step_{n}" for n in range(length + 1)]
    assert m.checkpoints[0].status == "overridden" and len(m.entries) == length + 1


def test_parts_keep_the_order_of_the_whole_manifest(repo: Repository) -> None:
    """replace_entry drops the earlier entries of its (name, kind, invocation) and appends;
    set_checkpoint and set_wait replace in place."""
    exec_id = _flow(repo, 3)
    wait = mf.WaitRecord(name="w1", status="pending", created_at=T0)
    with repo.writer() as w:
        w.set_wait(exec_id, wait)
        w.set_wait(exec_id, msgspec.structs.replace(wait, name="w2"))
    with repo.writer() as w:
        w.replace_entry(exec_id, make_entry(w.put_value("again"), "output", invocation_id="step_1"))
        w.set_checkpoint(exec_id, _checkpoint(1, status="failed"))
        w.set_wait(exec_id, msgspec.structs.replace(wait, status="answered"))
    m = repo.get_execution(exec_id)
    assert [e.invocation_id for e in m.entries] == ["step_0", "step_2", "step_1"]
    assert [(c.invocation_id, c.status) for c in m.checkpoints][1] == ("step_1", "failed")
    assert [(x.name, x.status) for x in m.waits] == [("w1", "answered"), ("w2", "pending")]
    assert repo.fsck().problems == []


def _part_keys(repo: Repository, exec_id: str, family: bytes) -> list[bytes]:
    with repo.kv.read() as rt:
        return [k for k, _ in rt.items(ms.PARTS, *ms.family_range(layout.uuid_key(exec_id), family))]


def test_a_damaged_part_record_is_a_corrupt_manifest_and_fsck_names_each(repo: Repository) -> None:
    exec_id = _flow(repo, 4)
    keys = _part_keys(repo, exec_id, ms.CHECKPOINT)
    with repo.kv.read() as rt:
        records = [bytearray(rt.get(ms.PARTS, k) or b"") for k in keys[1:3]]
    for key, record in zip(keys[1:3], records, strict=True):
        record[len(record) // 2] ^= 0x01
        repo._backend().update(lambda wt, k=key, r=bytes(record): wt.put(ms.PARTS, k, r))
    with pytest.raises(CorruptManifestError, match="damaged checkpoint record 1") as info:
        repo.get_execution(exec_id)
    assert info.value.exec_id == exec_id
    assert repo.get_execution_head(exec_id).status == "running"  # the head alone still reads
    problems = repo.fsck().problems
    assert [(p.kind, p.exec_id) for p in problems] == [("bad-manifest", exec_id)] * 2
    assert "checkpoint record 1" in problems[0].detail and "checkpoint record 2" in problems[1].detail


def test_a_missing_part_record_is_a_corrupt_manifest(repo: Repository) -> None:
    exec_id = _flow(repo, 2)
    key = _part_keys(repo, exec_id, ms.ENTRY)[0]
    repo._backend().update(lambda wt: wt.delete(ms.PARTS, key))
    with pytest.raises(CorruptManifestError, match="has 1 stored entries where its head counts 2"):
        repo.get_execution(exec_id)
    assert [p.kind for p in repo.fsck().problems] == ["bad-manifest"]


def test_an_execution_is_bounded_in_total_and_a_refused_commit_stores_nothing(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mf, "MAX_MANIFEST_SIZE", 8 << 10)
    exec_id = repo.create_execution("flow", started_at=T0)
    with pytest.raises(ManifestTooLargeError) as info:
        for n in range(1000):
            with repo.writer() as w:
                w.set_checkpoint(exec_id, msgspec.structs.replace(_checkpoint(n), metadata={"x": "y" * 100}))
    assert info.value.exec_id == exec_id
    stored = repo.get_execution(exec_id)
    assert 0 < len(stored.checkpoints) < 1000
    assert len(mf.encode_manifest(stored)) <= mf.MAX_MANIFEST_SIZE  # its whole form fits a remote's cap
    assert repo.fsck().problems == []


def test_deleting_an_execution_deletes_every_record(repo: Repository) -> None:
    keep = _flow(repo, 2)
    exec_id = _flow(repo, 3)
    repo.delete_execution(exec_id)
    with pytest.raises(ExecutionNotFoundError):
        repo.get_execution(exec_id)
    with repo.kv.read() as rt:
        assert [k for k, _ in rt.items(ms.PARTS, *ms.exec_range(layout.uuid_key(exec_id)))] == []
        assert rt.count(ms.PARTS) == 2 * (2 + 2)  # the other's records and identity keys
    assert len(repo.get_execution(keep).entries) == 2
    assert repo.fsck().problems == []


def test_load_by_name_serves_a_cached_manifest_only_while_its_head_is_unchanged(repo: Repository) -> None:
    exec_id = _flow(repo, 3)
    first = repo.get_execution(exec_id)
    assert repo.get_execution(exec_id) is first  # the head is unchanged: the cached copy
    other = Repository.open(repo.path)  # another handle, as another process holds one
    with other.writer() as w:
        w.add_entry(exec_id, make_entry(w.put_value("new"), "late"))
    assert repo.resolve_name(exec_id, "late").object_id == other.resolve_name(exec_id, "late").object_id
    assert repo.get_execution(exec_id) == other.get_execution(exec_id) != first


def test_the_parts_a_commit_adds_are_one_record_per_family_with_one_group_key(repo: Repository) -> None:
    exec_id = repo.create_execution("flow", started_at=T0)
    with repo.writer() as w:
        for n in range(300):
            w.replace_entry(exec_id, make_entry(w.put_value(n), f"v{n}", invocation_id="step_0"))
        w.set_checkpoint(exec_id, _checkpoint(0))
    ekey = layout.uuid_key(exec_id)
    with repo.kv.read() as rt:
        assert [k for k, _ in rt.items(ms.PARTS, *ms.exec_range(ekey))] == [
            layout.part_key(ekey, ms.CHECKPOINT, 0),
            layout.part_key(ekey, ms.ENTRY, 0),
            layout.part_group_key(ms.group_prefix(ekey, ms.CHECKPOINT, b"step_0"), 0),
            layout.part_group_key(ms.group_prefix(ekey, ms.ENTRY, b"istep_0"), 0),
        ]
    # A retry of the invocation replaces some of its saves: the record is rewritten without them.
    with repo.writer() as w:
        for n in (5, 7):
            w.replace_entry(exec_id, make_entry(w.put_value(-n), f"v{n}", invocation_id="step_0"))
    m = repo.get_execution(exec_id)
    names = [e.name for e in m.entries]
    assert len(names) == 300 and names[-2:] == ["v5", "v7"] and names.count("v5") == 1
    assert repo.resolve_name(exec_id, "v5").object_id == m.entries[-2].object_id
    assert repo.fsck().problems == []


def test_entries_of_no_invocation_are_replaced_by_their_identity(repo: Repository) -> None:
    exec_id = repo.create_execution("flow", started_at=T0)
    for n in range(3):
        with repo.writer() as w:
            w.replace_entry(exec_id, make_entry(w.put_value(n), "same"))
            w.replace_entry(exec_id, make_entry(w.put_value(n), f"other{n}"))
    assert [e.name for e in repo.get_execution(exec_id).entries] == ["other0", "other1", "same", "other2"]
    assert repo.fsck().problems == []


def _put(repo: Repository, db: bytes, key: bytes, value: bytes | None) -> None:
    if value is None:
        repo._backend().update(lambda wt: wt.delete(db, key))
    else:
        repo._backend().update(lambda wt: wt.put(db, key, value))


def _get(repo: Repository, db: bytes, key: bytes) -> bytes:
    with repo.kv.read() as rt:
        value = rt.get(db, key)
    assert value is not None
    return value


def test_a_record_swapped_with_another_does_not_verify(repo: Repository) -> None:
    exec_id = _flow(repo, 3)
    ekey = layout.uuid_key(exec_id)
    first, second = (layout.part_key(ekey, ms.CHECKPOINT, n) for n in (0, 1))
    a, b = _get(repo, ms.PARTS, first), _get(repo, ms.PARTS, second)
    _put(repo, ms.PARTS, first, b)
    _put(repo, ms.PARTS, second, a)
    with pytest.raises(CorruptManifestError, match="damaged checkpoint record 0") as info:
        repo.get_execution(exec_id)
    assert info.value.exec_id == exec_id
    problems = repo.fsck().problems
    assert [(p.kind, p.exec_id) for p in problems] == [("bad-manifest", exec_id)] * 2
    assert "checkpoint record 0" in problems[0].detail and "checkpoint record 1" in problems[1].detail


def test_a_record_or_head_copied_to_another_execution_does_not_verify(repo: Repository) -> None:
    source, target = _flow(repo, 2), _flow(repo, 2)
    skey, tkey = layout.uuid_key(source), layout.uuid_key(target)
    _put(
        repo,
        ms.PARTS,
        layout.part_key(tkey, ms.ENTRY, 1),
        _get(repo, ms.PARTS, layout.part_key(skey, ms.ENTRY, 1)),
    )
    with pytest.raises(CorruptManifestError, match="damaged entry record 1") as info:
        repo.get_execution(target)
    assert info.value.exec_id == target
    assert [(p.kind, p.exec_id) for p in repo.fsck().problems] == [("bad-manifest", target)]

    other = _flow(repo, 1)
    _put(repo, ms.MANIFESTS, layout.uuid_key(other), _get(repo, ms.MANIFESTS, skey))
    with pytest.raises(CorruptManifestError, match="damaged head") as info:
        repo.get_execution_head(other)
    assert info.value.exec_id == other
    assert ("bad-manifest", other) in [(p.kind, p.exec_id) for p in repo.fsck().problems]


def test_fsck_finds_the_part_keys_no_reader_looks_at(repo: Repository) -> None:
    gone, kept = _flow(repo, 2), _flow(repo, 3)
    gkey, kkey = layout.uuid_key(gone), layout.uuid_key(kept)
    _put(repo, ms.MANIFESTS, gkey, None)  # parts whose head is gone
    group = ms.group_prefix(kkey, ms.CHECKPOINT, b"step_1")
    _put(repo, ms.PARTS, layout.part_group_key(group, 1), None)  # a record missing from the index
    _put(repo, ms.PARTS, layout.part_group_key(group, 9), b"")  # a group key naming no record
    _put(repo, ms.PARTS, layout.part_group_key(group, 2), b"")  # ... naming a record of another group
    problems = repo.fsck().problems
    found = sorted(
        (p.kind, p.exec_id, p.detail.split(":")[0])
        for p in problems
        if p.kind != "index-mismatch" or p.exec_id == kept
    )
    assert found == sorted(
        [
            (
                "index-mismatch",
                kept,
                "a group key names checkpoint record 2, which holds no part of its group",
            ),
            ("index-mismatch", kept, "checkpoint record 1 is missing from the group index"),
            ("orphan-part", gone, "8 part records and group keys of an execution with no head"),
            ("orphan-part", kept, "a group key names checkpoint record 9, which is not stored"),
        ]
    )
    assert all("every commit is one transaction" in p.detail for p in problems if p.kind == "orphan-part")


def test_a_record_beyond_its_heads_counter_is_a_corrupt_manifest(repo: Repository) -> None:
    exec_id = _flow(repo, 2)
    ekey = layout.uuid_key(exec_id)
    key = layout.part_key(ekey, ms.WAIT, 5)
    _put(repo, ms.PARTS, key, ms.seal_record(key, [mf.WaitRecord(name="w", status="pending", created_at=T0)]))
    with pytest.raises(CorruptManifestError, match=r"wait record 5 beyond its head's counter \(0\)"):
        repo.get_execution(exec_id)
    assert [(p.kind, p.exec_id) for p in repo.fsck().problems] == [("bad-manifest", exec_id)]


def _rich_flow(repo: Repository, n: int) -> tuple[str, dict[str, str]]:
    """An execution naming a value of its own by each kind of root; its id and {kind: object id}."""
    with repo.writer() as w:
        exec_id = w.create_execution("rich", started_at=T0)
        values = {k: w.put_value(f"{k}-{n}") for k in ("entry", "output", "wait", "result", "inputs")}
        roots = {k: v.object_id for k, v in values.items()}
        w.add_entry(exec_id, make_entry(values["entry"], "output", invocation_id="s"))
        w.set_checkpoint(exec_id, msgspec.structs.replace(_checkpoint(0), output_object_id=roots["output"]))
        wait = mf.WaitRecord(name="w", status="answered", created_at=T0, value_object_id=roots["wait"])
        w.set_wait(exec_id, wait)
        w.update_execution(exec_id, result_object_id=roots["result"], input_object_id=roots["inputs"])
    return exec_id, roots


@pytest.mark.parametrize("batch", [1, 2, 3, 256])
def test_one_ordered_pass_gives_each_execution_its_own_part_keys(repo: Repository, batch: int) -> None:
    """ms.joined merges MANIFESTS and PARTS batch by batch: whatever the batch boundaries, each
    execution comes with exactly the keys of its own range, and the part keys of a head that is
    gone come once, with no head (before, between and after the others)."""
    exec_ids = sorted(_rich_flow(repo, n)[0] for n in range(6))
    gone = {exec_ids[0], exec_ids[3], exec_ids[5]}
    for exec_id in gone:
        _put(repo, ms.MANIFESTS, layout.uuid_key(exec_id), None)
    with repo.kv.read() as rt:
        want = {e: [k for k, _ in rt.items(ms.PARTS, *ms.exec_range(layout.uuid_key(e)))] for e in exec_ids}
    assert all(len(keys) == 6 for keys in want.values())  # three records, three group keys
    seen: list[tuple[str, bool, list[bytes]]] = []
    for _, rows in ms.joined(repo.kv, batch=batch):
        for key, head, keys in rows:
            got = [k for f in ms.FAMILIES for k, _ in keys.rows(f)]
            got += [k for f in ms.FAMILIES for k in keys.group_keys(f)]
            assert keys.n == len(got)
            seen.append((key.hex(), head is not None, sorted(got)))
    assert seen == [(e, e not in gone, want[e]) for e in exec_ids]


def test_gc_marks_every_kind_of_root_and_keeps_the_roots_of_headless_records(repo: Repository) -> None:
    """gc's mark reads each record once, as far as its roots: it finds every root that
    manifest_roots names. Part records whose head is gone (written outside kitaru) still keep
    their objects (conservative); what only the head named goes; fsck reports the records."""
    made = [_rich_flow(repo, n) for n in range(3)]
    named = {layout.object_key(oid) for _, roots in made for oid in roots.values()}
    with repo.kv.read() as rt:
        listed = {
            layout.object_key(oid)
            for e, _ in made
            for oid, _, _ in reachability.manifest_roots(ms.load(rt, layout.uuid_key(e), e))
        }
    assert reachability.root_keys(repo.kv) == listed == named
    exec_id, roots = made[1]
    _put(repo, ms.MANIFESTS, layout.uuid_key(exec_id), None)
    head_only = {layout.object_key(roots["result"]), layout.object_key(roots["inputs"])}
    assert reachability.root_keys(repo.kv) == named - head_only
    assert repo.gc(grace=0).objects_removed == 2
    assert all(repo.has_object(oid) for oid in (roots["entry"], roots["output"], roots["wait"]))
    problems = repo.fsck().problems  # the records, and the index keys the head left behind
    assert [p.exec_id for p in problems if p.kind == "orphan-part"] == [exec_id]
    assert {p.kind for p in problems} == {"orphan-part", "index-mismatch"}


def test_gc_stops_at_a_damaged_part_record(repo: Repository) -> None:
    """A record that does not verify may name a root gc cannot read: gc raises, removes nothing."""
    exec_id, roots = _rich_flow(repo, 0)
    garbage = repo.put_value("garbage").object_id
    key = _part_keys(repo, exec_id, ms.ENTRY)[0]
    record = bytearray(_get(repo, ms.PARTS, key))
    record[-40] ^= 0x01
    _put(repo, ms.PARTS, key, bytes(record))
    with pytest.raises(CorruptManifestError, match="damaged entry record 0") as info:
        repo.gc(grace=0)
    assert info.value.exec_id == exec_id
    assert repo.has_object(garbage) and repo.has_object(roots["entry"])
