"""Listing executions: newest first, filters, pagination, over a couple of thousand executions."""

from __future__ import annotations

import datetime as dt
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from store_helpers import T0, commit_execution

from kitaru_store import Repository, layout
from kitaru_store import manifests as mf
from kitaru_store.backend import close_backend
from kitaru_store.manifests import STATUSES

N = 2000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
FLOWS = ("ingest", "train", "ingest_v2")


def build(repo: Repository) -> list[tuple[dt.datetime, str, str, str]]:
    """N executions with distinct, shuffled start times, in a few writer transactions; newest first."""
    rng = random.Random(42)
    minutes = list(range(N))
    rng.shuffle(minutes)
    made: list[tuple[dt.datetime, str, str, str]] = []
    for start in range(0, N, 500):
        with repo.writer() as w:
            for i in range(start, start + 500):
                started = T0 + dt.timedelta(minutes=minutes[i], microseconds=i)
                flow = FLOWS[i % 3]
                status = STATUSES[i % len(STATUSES)]
                exec_id = w.create_execution(flow, started_at=started, status=status)  # type: ignore[arg-type]
                made.append((started, exec_id, flow, status))
    made.sort(reverse=True)
    return made


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, list[tuple[dt.datetime, str, str, str]]]]:
    """One store for the tests that only read it (explicit path: the per-test KITARU_STORE differs)."""
    path = tmp_path_factory.mktemp("listing") / "store"
    made = build(Repository.open(path))
    yield path, made
    close_backend(str(path / "db"))


@pytest.fixture
def many(shared) -> list[tuple[dt.datetime, str, str, str]]:
    return shared[1]


@pytest.fixture
def ro(shared) -> Repository:
    return Repository.open(shared[0], readonly=True)


@pytest.fixture
def own(repo: Repository) -> list[tuple[dt.datetime, str, str, str]]:
    """A store of its own, for tests that change it."""
    return build(repo)


def ids(summaries) -> list[str]:
    return [s.exec_id for s in summaries]


def test_count_and_newest_first(ro: Repository, many) -> None:
    assert ro.count_executions() == N
    everything = list(ro.iter_executions())
    assert ids(everything) == [m[1] for m in many]
    starts = [s.started_at for s in everything]
    assert starts == sorted(starts, reverse=True)
    assert ro.latest_execution() is not None
    assert ro.latest_execution().exec_id == many[0][1]


def test_default_limit_and_explicit_limit(ro: Repository, many) -> None:
    assert ids(ro.list_executions()) == [m[1] for m in many[:50]]
    assert ids(ro.list_executions(limit=N + 10)) == [m[1] for m in many]
    assert ro.list_executions(limit=0) == []


def test_pagination_covers_everything_once(ro: Repository, many) -> None:
    pages = []
    for offset in range(0, N, 300):
        page = ro.list_executions(limit=300, offset=offset)
        assert len(page) == min(300, N - offset)
        pages.extend(ids(page))
    assert pages == [m[1] for m in many]
    assert ro.list_executions(limit=10, offset=N) == []
    assert ids(ro.list_executions(limit=5, offset=N - 2)) == [m[1] for m in many[-2:]]


@pytest.mark.parametrize("flow", [None, "train"])
def test_batches_start_at_what_the_caller_takes_and_grow(ro: Repository, many, flow: str | None) -> None:
    """A listing of 20 rows reads about 20 summaries, not a full batch; later batches grow to
    listing.BATCH, and together they are every row, newest first, each once."""
    from kitaru_store import listing

    batches = list(listing.summary_batches(ro._backend(), flow=flow, first=21))
    sizes = [len(b) for b in batches]
    assert sizes[:3] == [21, 84, listing.BATCH]
    assert all(n == listing.BATCH for n in sizes[2:-1]) and sizes[-1] <= listing.BATCH
    expected = [m[1] for m in many if flow is None or m[2] == flow]
    assert [layout.summary_exec_key(k).hex() for b in batches for k, _ in b] == expected
    assert ids(ro.list_executions(flow=flow, limit=20, offset=95)) == expected[95:115]


@pytest.mark.parametrize("flow", FLOWS)
def test_filter_by_flow(ro: Repository, many, flow: str) -> None:
    expected = [m[1] for m in many if m[2] == flow]
    assert len(expected) > 600  # more than one internal batch
    assert ids(ro.iter_executions(flow=flow)) == expected
    assert ids(ro.list_executions(flow=flow, limit=20, offset=100)) == expected[100:120]
    assert ro.latest_execution(flow=flow).exec_id == expected[0]


def test_filter_by_flow_is_exact_not_prefix(ro: Repository, many) -> None:
    assert all(s.flow_name == "ingest" for s in ro.iter_executions(flow="ingest"))
    assert list(ro.iter_executions(flow="ing")) == []
    assert list(ro.iter_executions(flow="no-such-flow")) == []


@pytest.mark.parametrize("status", STATUSES)
def test_filter_by_status(ro: Repository, many, status: str) -> None:
    expected = [m[1] for m in many if m[3] == status]
    assert ids(ro.iter_executions(status=status)) == expected
    assert ids(ro.list_executions(status=status, limit=7, offset=3)) == expected[3:10]


def test_filter_by_flow_and_status(ro: Repository, many) -> None:
    expected = [m[1] for m in many if m[2] == "train" and m[3] == "failed"]
    assert expected
    assert ids(ro.iter_executions(flow="train", status="failed")) == expected


def test_status_change_shows_in_listing(repo: Repository, own) -> None:
    newest = own[0][1]
    repo.update_execution(newest, status="cancelled")
    assert repo.list_executions(limit=1)[0].status == "cancelled"
    assert newest in ids(repo.iter_executions(status="cancelled"))


def test_deleted_executions_leave_the_listing(repo: Repository, own) -> None:
    gone = {m[1] for m in own[::20]}
    for exec_id in gone:
        repo.delete_execution(exec_id)
    remaining = [m[1] for m in own if m[1] not in gone]
    assert ids(repo.iter_executions()) == remaining
    assert ids(repo.iter_executions(flow="train")) == [
        m[1] for m in own if m[1] not in gone and m[2] == "train"
    ]
    assert repo.count_executions() == len(remaining)
    assert repo.fsck().ok


def test_iterator_is_lazy(ro: Repository, many) -> None:
    it = ro.iter_executions()
    first = next(it)
    assert first.exec_id == many[0][1]
    assert next(it).exec_id == many[1][1]


def test_empty_store_lists_nothing(repo: Repository) -> None:
    assert repo.list_executions() == []
    assert repo.latest_execution() is None
    assert repo.count_executions() == 0


def test_same_start_time_is_stable(repo: Repository) -> None:
    made = [repo.create_execution("flow", started_at=T0) for _ in range(5)]
    listed = ids(repo.iter_executions())
    assert sorted(listed) == sorted(made)
    assert listed == ids(repo.iter_executions())  # a fixed order among equals


# --- damaged summaries -----------------------------------------------------------------------


def damage_summaries(repo: Repository, n: int, *, seed: int, legacy: bool = False) -> dict[str, bytes]:
    """2n executions of two flows; the summaries of n of them damaged at a random byte each (set to
    another random value). ``legacy``: every summary rewritten first as written before checksums.
    Returns the damaged executions' exec_time keys by id."""
    rng = random.Random(seed)
    with repo.writer() as w:
        made = [
            w.create_execution(FLOWS[i % 2], started_at=T0 + dt.timedelta(minutes=i), status="completed")
            for i in range(2 * n)
        ]
    with repo.kv.read() as rt:
        stored = dict(rt.items(b"exec_time"))
    if legacy:
        stored = {k: mf.encode(mf.decode_summary(v)) for k, v in stored.items()}
    victims = dict(zip(rng.sample(made, n), rng.sample(range(1 << 30), n), strict=True))
    for key, value in stored.items():
        if key[8:].hex() in victims:
            raw = bytearray(value)
            at = victims[key[8:].hex()] % len(raw)
            raw[at] ^= rng.randrange(1, 256)
            stored[key] = bytes(raw)

    def put(wt: Any) -> None:
        for key, value in stored.items():
            wt.put(b"exec_time", key, value)

    repo._backend().update(put)
    return {key[8:].hex(): key for key in stored if key[8:].hex() in victims}


def test_damaged_summaries_are_rows_of_their_own_and_fsck_names_each(repo: Repository) -> None:
    damaged = damage_summaries(repo, 40, seed=12)
    expected = {s.exec_id: s for s in repo.iter_executions() if s.status != mf.DAMAGED}
    rows = list(repo.iter_executions())
    assert len(rows) == 80  # every row, in key order, the damaged ones too
    bad = {s.exec_id: s for s in rows if s.status == mf.DAMAGED}
    assert set(bad) == set(damaged)
    for exec_id, row in bad.items():
        assert isinstance(row, mf.DamagedSummary) and row.problem
        assert layout.time_key(row.started_at) + bytes.fromhex(exec_id) == damaged[exec_id]
        assert repo.get_execution(exec_id).exec_id == exec_id  # the manifest is intact
    assert len(expected) == 40
    # Filters: a flow's listing names its flow; a damaged row's status is unknown, so it is listed.
    for flow in FLOWS[:2]:
        in_flow = list(repo.iter_executions(flow=flow))
        assert len(in_flow) == 40
        assert all(s.flow_name == flow for s in in_flow)
    assert {s.exec_id for s in repo.iter_executions(status="failed")} == set(damaged)
    assert len(repo.list_executions(limit=100)) == 80
    # fsck names each damaged summary, and nothing else.
    problems = repo.fsck().problems
    assert sorted((p.kind, p.exec_id) for p in problems) == sorted(("bad-summary", e) for e in damaged)
    # The next write of an execution writes its summary afresh.
    for exec_id in damaged:
        repo.update_execution(exec_id, status="completed")
    assert not [s for s in repo.iter_executions() if s.status == mf.DAMAGED]
    assert repo.fsck().ok


def test_summaries_written_before_checksums_read_and_their_damage_is_found(repo: Repository) -> None:
    damaged = damage_summaries(repo, 40, seed=13, legacy=True)
    # Never an exception, whatever the damage; damage that still decodes (a letter of the status,
    # a digit of a count) cannot be seen without a checksum: fsck compares such a summary with
    # its manifest.
    rows = list(repo.iter_executions())
    assert len(rows) == 80
    intact = [s for s in rows if s.exec_id not in damaged]
    assert len(intact) == 40 and all(s.status == "completed" for s in intact)
    problems = repo.fsck().problems
    assert sorted((p.kind, p.exec_id) for p in problems) == sorted(("bad-summary", e) for e in damaged)


def test_a_summary_under_another_key_is_damaged(repo: Repository) -> None:
    with repo.writer() as w:
        a = w.create_execution("ingest", started_at=T0)
        b = w.create_execution("ingest", started_at=T0 + dt.timedelta(minutes=1))
    with repo.kv.read() as rt:
        (_, va), (kb, _) = sorted(rt.items(b"exec_time"))
    repo._backend().update(lambda wt: wt.put(b"exec_time", kb, va))  # b's row holds a's summary
    rows = {s.exec_id: s for s in repo.iter_executions()}
    assert rows[a].status != mf.DAMAGED
    assert rows[b].status == mf.DAMAGED and a in rows[b].problem  # type: ignore[attr-defined]
    assert [(p.kind, p.exec_id) for p in repo.fsck().problems] == [("bad-summary", b)]


# --- exact time keys ------------------------------------------------------------------------------


def exact_ns(d: dt.datetime) -> int:
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return ((d - EPOCH) // dt.timedelta(microseconds=1)) * 1000


def tk(d: dt.datetime) -> int:
    key = layout.time_key(d)
    assert len(key) == 8
    return int.from_bytes(key, "big")


def test_time_key_is_exact_integer_nanoseconds() -> None:
    rng = random.Random(20240101)
    float_was_off = 0
    samples = [
        dt.datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC),
        dt.datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=dt.UTC),
        dt.datetime(2554, 7, 21, 23, 34, 33, 709551, tzinfo=dt.UTC),  # the last microsecond that fits
        EPOCH,
        EPOCH + dt.timedelta(microseconds=1),
    ]
    for _ in range(5000):
        micros = rng.randrange(0, (2**64 - 1) // 1000)
        tz = dt.timezone(dt.timedelta(minutes=rng.randrange(-14 * 60, 14 * 60 + 1)))
        samples.append((EPOCH + dt.timedelta(microseconds=micros)).astimezone(tz))
    for d in samples:
        expected = exact_ns(d)
        assert tk(d) == expected, d
        if int(d.timestamp() * 1e9) != expected:
            float_was_off += 1
    assert float_was_off > 100  # the sample really covers times that float arithmetic gets wrong
    assert tk(EPOCH + dt.timedelta(microseconds=1)) == 1000
    # Key order is time order.
    ordered = sorted(samples)
    assert [layout.time_key(d) for d in ordered] == sorted(layout.time_key(d) for d in ordered)


def test_time_key_naive_is_utc_and_pre_epoch_clamps_to_zero() -> None:
    naive = dt.datetime(2024, 5, 6, 7, 8, 9, 123456)
    assert layout.time_key(naive) == layout.time_key(naive.replace(tzinfo=dt.UTC))
    assert tk(naive) == exact_ns(naive.replace(tzinfo=dt.UTC))
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert tk(naive.replace(tzinfo=plus_two)) == tk(naive) - 2 * 3600 * 10**9
    for before in [
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(1900, 1, 1, tzinfo=dt.UTC),
        dt.datetime(1969, 12, 31, 12, 0),  # naive
        dt.datetime.min.replace(tzinfo=dt.UTC),
    ]:
        assert layout.time_key(before) == bytes(8)


def test_time_key_naive_is_utc_whatever_the_local_zone() -> None:
    naive = dt.datetime(2024, 5, 6, 7, 8, 9, 123456)
    expected = exact_ns(naive.replace(tzinfo=dt.UTC))
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "KIT-07"  # local time is UTC+7: a local reading of naive times is off by 7 h
    time.tzset()
    try:
        assert naive.astimezone(dt.UTC).hour != naive.hour  # the zone really is in effect
        assert tk(naive) == expected
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


def test_executions_list_in_exact_start_order(repo: Repository) -> None:
    base = dt.datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC)
    starts = [base + dt.timedelta(microseconds=i) for i in (3, 0, 2, 1)]
    by_start = {commit_execution(repo, "flow", {}, started_at=s): s for s in starts}
    listed = [s.exec_id for s in repo.list_executions()]
    assert [by_start[e] for e in listed] == sorted(starts, reverse=True)
