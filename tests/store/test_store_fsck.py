"""fsck: a clean store is ok; damage of each kind is found and described."""

from __future__ import annotations

import datetime as dt
import os

import msgspec
import pytest
from store_helpers import T0, commit_execution, delete_record, tamper

from kitaru_store import CheckpointRecord, Repository, layout
from kitaru_store import manifests as mf


def kinds(report) -> list[str]:
    return sorted(p.kind for p in report.problems)


def test_empty_store_is_ok(repo: Repository) -> None:
    report = repo.fsck()
    assert report.ok and report.problems == []
    assert (report.objects_total, report.objects_checked, report.manifests_checked) == (0, 0, 0)


def test_clean_store_is_ok_and_everything_is_counted(repo: Repository) -> None:
    for i in range(5):
        commit_execution(repo, "flow", {"a": f"value {i}", "b": list(range(i)), "shared": "same"})
    repo.put_bytes(b"x" * 3_000_000)  # a chunked value: its chunks are objects too
    report = repo.fsck()
    assert report.ok, report.problems
    assert report.objects_total == repo.stats().objects
    assert report.objects_checked == report.objects_total
    assert report.manifests_checked == 5
    assert report.entries_checked == 15
    d = report.to_dict()
    assert d["ok"] is True and d["problems"] == []


def test_corrupt_object(repo: Repository) -> None:
    exec_id = commit_execution(repo, "flow", {"a": "will be damaged " * 20, "b": "fine"})
    victim = repo.resolve_name(exec_id, "a").object_id
    tamper(repo, victim)
    report = repo.fsck()
    assert not report.ok
    assert kinds(report) == ["corrupt-object"]
    (problem,) = report.problems
    assert problem.object_id == victim
    assert victim in problem.detail
    assert report.to_dict()["ok"] is False


def test_missing_object(repo: Repository) -> None:
    exec_id = commit_execution(repo, "flow", {"gone": "deleted behind the store's back", "kept": 1})
    entry = repo.resolve_name(exec_id, "gone")
    delete_record(repo, entry.object_id)
    report = repo.fsck()
    assert kinds(report) == ["missing-object"]
    (problem,) = report.problems
    assert (problem.object_id, problem.exec_id, problem.name) == (entry.object_id, exec_id, "gone")
    assert "gone" in problem.detail


def test_missing_touch(repo: Repository) -> None:
    oid = repo.put_value("untouched").object_id
    key = bytes.fromhex(oid)
    repo._backend().update(lambda wt: wt.delete(b"touch", key))
    report = repo.fsck()
    assert kinds(report) == ["missing-touch"]
    assert report.problems[0].object_id == oid


def test_bad_manifest(repo: Repository) -> None:
    exec_id = commit_execution(repo, "flow", {"a": 1})
    key = bytes.fromhex(exec_id)
    repo._backend().update(lambda wt: wt.put(b"manifests", key, b"\xc1 not msgpack"))
    report = repo.fsck()
    assert kinds(report) == ["bad-manifest"]  # and no "time index names a missing execution"
    assert report.problems[0].exec_id == exec_id


def test_newer_manifest_is_reported(repo: Repository) -> None:
    exec_id = commit_execution(repo, "flow", {"a": 1})
    key = bytes.fromhex(exec_id)
    newer = mf.encode(msgspec.structs.replace(repo.get_execution(exec_id), format_version=7))
    repo._backend().update(lambda wt: wt.put(b"manifests", key, newer))
    report = repo.fsck()
    assert kinds(report) == ["bad-manifest"]
    assert "7" in report.problems[0].detail


def test_index_mismatches(repo: Repository) -> None:
    a = commit_execution(repo, "flow", {"x": 1}, started_at=T0)
    b = commit_execution(repo, "flow", {"y": 2}, started_at=T0)
    artifact = repo.get_execution(a).entries[0].artifact_id
    tkey_b = layout.time_key(T0) + bytes.fromhex(b)

    def damage(wt) -> None:
        wt.delete(b"artifacts", bytes.fromhex(artifact))
        wt.delete(b"exec_time", tkey_b)
        wt.put(b"exec_time", layout.time_key(T0) + bytes(16), b"")  # names no execution

    repo._backend().update(damage)
    report = repo.fsck()
    assert kinds(report) == ["index-mismatch"] * 3
    assert {p.exec_id for p in report.problems} == {a, b, "00" * 16}


def test_sample_fraction_and_count(repo: Repository) -> None:
    ids = [repo.put_value(f"object {i}").object_id for i in range(40)]
    assert repo.fsck(sample=0.25, seed=1).objects_checked == 10
    assert repo.fsck(sample=7, seed=1).objects_checked == 7
    assert repo.fsck(sample=1000).objects_checked == 40
    assert repo.fsck(sample=0).objects_checked == 0
    report = repo.fsck(sample=5, seed=3)
    assert report.objects_total == 40 and report.ok
    # A sample finds damage in the objects it checks: with every object damaged, all of them.
    for oid in ids:
        tamper(repo, oid)
    sampled = repo.fsck(sample=6, seed=2)
    assert sampled.objects_checked == 6
    assert kinds(sampled) == ["corrupt-object"] * 6
    assert {p.object_id for p in sampled.problems} <= set(ids)


def test_sample_is_reproducible_with_a_seed(repo: Repository) -> None:
    ids = [repo.put_value(i).object_id for i in range(30)]
    for oid in ids[::2]:
        tamper(repo, oid)
    first = repo.fsck(sample=10, seed=42)
    second = repo.fsck(sample=10, seed=42)
    assert [p.object_id for p in first.problems] == [p.object_id for p in second.problems]


def test_progress_callback(repo: Repository) -> None:
    for i in range(300):
        repo.put_value(i)
    seen: list[tuple[str, int, int]] = []
    repo.fsck(progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert seen[-1] == ("objects", 300, 300)


@pytest.mark.parametrize("where", ["gc", "stats"])
def test_undecodable_manifest_stops_gc_but_not_stats_of_objects(repo: Repository, where: str) -> None:
    """gc never sweeps on an incomplete root set."""
    exec_id = commit_execution(repo, "flow", {"a": "referenced only by the broken manifest"})
    oid = repo.resolve_name(exec_id, "a").object_id
    key = bytes.fromhex(exec_id)
    newer = mf.encode(msgspec.structs.replace(repo.get_execution(exec_id), format_version=9))
    repo._backend().update(lambda wt: wt.put(b"manifests", key, newer))
    if where == "gc":
        with pytest.raises(Exception, match="newer"):
            repo.gc(grace=0)
        assert repo.has_object(oid)
    else:
        with pytest.raises(Exception, match="newer"):
            repo.stats()


# --- sampling manifests and indexes, without listing every key ------------------------------------


def test_sample_picks_what_a_sample_of_the_key_list_would(repo: Repository) -> None:
    """The positions are random.sample's over the objects in key order: a seed picks the same
    objects as it did when fsck listed every key first."""
    import random

    ids = sorted(repo.put_value(f"value {i}").object_id for i in range(50))
    for oid in ids:
        tamper(repo, oid)
    report = repo.fsck(sample=7, seed=11)
    assert [p.object_id for p in report.problems] == sorted(random.Random(11).sample(ids, 7))


def test_keys_at_walks_to_the_picked_positions(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    from kitaru_store import fsck

    keys = sorted(bytes.fromhex(repo.put_value(i).object_id) for i in range(40))
    backend = repo._backend()
    for walk in (1, 3, 64):  # keys a read transaction passes: several transactions, or one
        monkeypatch.setattr(fsck, "WALK_BATCH", walk)
        for positions in ([], [0], [39], [0, 1, 2], [5, 17, 18, 30, 39], list(range(40))):
            assert list(fsck._keys_at(backend, b"objects", positions)) == [keys[i] for i in positions]
        assert list(fsck._keys_at(backend, b"objects", [38, 39, 40, 99])) == keys[38:]  # past the end


def test_sample_checks_that_fraction_of_the_manifests(repo: Repository) -> None:
    exec_ids = [commit_execution(repo, "flow", {"a": f"a {i}", "b": f"b {i}"}) for i in range(10)]
    assert repo.fsck(sample=0.5, seed=1).manifests_checked == 5
    assert repo.fsck(sample=0.01).manifests_checked == 1  # at least one
    assert repo.fsck(sample=0).manifests_checked == 0
    assert repo.fsck(sample=1.0).manifests_checked == 10
    # Every entry's object gone: a sample lists the missing objects of the manifests it checked.
    for exec_id in exec_ids:
        for entry in repo.get_execution(exec_id).entries:
            delete_record(repo, entry.object_id)
    report = repo.fsck(sample=0.3, seed=5)
    assert report.manifests_checked == 3 and report.entries_checked == 6
    assert kinds(report) == ["missing-object"] * 6
    assert len({p.exec_id for p in report.problems}) == 3
    again = repo.fsck(sample=0.3, seed=5)
    assert again.problems == report.problems


def _damage_indexes(repo: Repository) -> list[str]:
    """Index keys that name nothing, a time key moved, a missing artifact index entry."""
    a = commit_execution(repo, "flow", {"x": 1}, started_at=T0)
    b = commit_execution(repo, "flow", {"y": 2}, started_at=T0)
    c = commit_execution(repo, "other", {"z": 3}, started_at=T0)
    tkey_b = layout.time_key(T0) + bytes.fromhex(b)
    artifact = repo.get_execution(a).entries[0].artifact_id
    elsewhere = layout.time_key(T0 + dt.timedelta(seconds=5)) + bytes.fromhex(c)

    def damage(wt) -> None:
        wt.delete(b"artifacts", bytes.fromhex(artifact))
        wt.delete(b"exec_time", tkey_b)
        wt.put(b"exec_time", layout.time_key(T0) + bytes(16), b"")  # names no execution
        wt.put(b"exec_time", elsewhere, b"")  # c's execution, at a time it did not start at
        wt.put(b"exec_flow", b"flow\x00" + layout.time_key(T0) + bytes(16), b"")
        wt.put(
            b"exec_flow", b"renamed\x00" + layout.time_key(T0) + bytes.fromhex(a), b""
        )  # last 24 bytes fine
        wt.put(b"artifacts", bytes(16), bytes.fromhex(c))  # c has no such artifact
        wt.put(b"artifacts", b"\x01" * 16, bytes(16))  # an execution that does not exist

    repo._backend().update(damage)
    return [a, b, c]


def test_full_fsck_reads_the_indexes_against_the_manifests_when_the_counts_differ(repo: Repository) -> None:
    a, b, c = _damage_indexes(repo)
    report = repo.fsck()
    found = sorted((p.kind, p.detail, p.exec_id) for p in report.problems)
    assert found == sorted(
        [
            ("index-mismatch", "artifact missing from the artifact index", a),
            ("index-mismatch", "execution missing from the time index", b),
            ("index-mismatch", "time index names a missing execution", "00" * 16),
            ("index-mismatch", "time index names a missing execution", c),
            ("index-mismatch", "flow index names a missing execution", "00" * 16),
            ("index-mismatch", f"artifact index names a missing artifact {'00' * 16}", None),
            ("index-mismatch", f"artifact index names a missing artifact {'01' * 16}", None),
        ]
    )


def test_a_sample_of_every_index_key_finds_what_a_full_fsck_finds(repo: Repository) -> None:
    _damage_indexes(repo)
    full = repo.fsck()
    sampled = repo.fsck(sample=0.99, seed=3)  # below 1: sampled, yet every index key is picked
    assert sampled.objects_checked < sampled.objects_total
    assert sorted(map(repr, sampled.problems)) == sorted(map(repr, full.problems))


def test_flow_index_key_with_another_flow_name_is_not_reported(repo: Repository) -> None:
    """As before: only the last 24 bytes of a flow index key are checked (the counts differ, and
    the indexes are then read against the manifests)."""
    a = commit_execution(repo, "flow", {"x": 1}, started_at=T0)
    key = b"renamed\x00" + layout.time_key(T0) + bytes.fromhex(a)
    repo._backend().update(lambda wt: wt.put(b"exec_flow", key, b""))
    assert repo.fsck().ok


# --- sampling -------------------------------------------------------------------------------------


def test_fsck_sample_fraction_and_count(repo: Repository) -> None:
    for i in range(20):
        repo.put_bytes(b"object %d" % i)
    full = repo.fsck(sample=1.0)
    assert full.objects_total == 20
    assert full.objects_checked == full.objects_total
    assert repo.fsck().objects_checked == 20
    assert repo.fsck(sample=0.5, seed=1).objects_checked == 10
    assert repo.fsck(sample=3, seed=1).objects_checked == 3
    assert repo.fsck(sample=1, seed=1).objects_checked == 1  # an int is a count, even 1
    assert repo.fsck(sample=500).objects_checked == 20


# --- dangling indexes and references --------------------------------------------------------------


def test_fsck_finds_artifact_index_key_without_entry(repo: Repository) -> None:
    exec_id = commit_execution(repo, "flow", {"a": 1})
    stray = os.urandom(16)
    repo._backend().update(lambda wt: wt.put(b"artifacts", stray, bytes.fromhex(exec_id)))
    report = repo.fsck()
    assert kinds(report) == ["index-mismatch"]
    assert stray.hex() in report.problems[0].detail


def test_fsck_finds_pin_to_deleted_object(repo: Repository) -> None:
    oid = repo.put_value("pinned").object_id
    repo.pin("keep", oid)
    delete_record(repo, oid)
    report = repo.fsck()
    assert kinds(report) == ["missing-object"]
    assert report.problems[0].object_id == oid
    assert "pin/keep" in report.problems[0].detail


@pytest.mark.parametrize("what", ["checkpoint", "result", "input"])
def test_fsck_finds_checkpoint_output_or_result_deleted(repo: Repository, what: str) -> None:
    with repo.writer() as w:
        exec_id = w.create_execution("flow")
        oid = w.put_value(f"{what} value").object_id
        if what == "checkpoint":
            w.set_checkpoint(
                exec_id,
                CheckpointRecord(
                    invocation_id="step", name="step", status="completed", started_at=T0, output_object_id=oid
                ),
            )
        else:
            w.update_execution(exec_id, **{f"{what}_object_id": oid})
    assert repo.fsck().ok
    delete_record(repo, oid)
    report = repo.fsck()
    assert kinds(report) == ["missing-object"]
    (problem,) = report.problems
    assert (problem.object_id, problem.exec_id) == (oid, exec_id)


def test_fsck_finds_flow_index_naming_a_missing_execution(repo: Repository) -> None:
    commit_execution(repo, "flow", {"a": 1}, started_at=T0)
    ghost = os.urandom(16)
    fkey = b"flow\x00" + layout.time_key(T0) + ghost
    repo._backend().update(lambda wt: wt.put(b"exec_flow", fkey, b""))
    report = repo.fsck()
    assert kinds(report) == ["index-mismatch"]
    assert report.problems[0].exec_id == ghost.hex()
