"""Listing executions: newest first, filters, pagination, over a couple of thousand executions."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import T0

from kitaru_store import Repository
from kitaru_store.backend import close_backend
from kitaru_store.manifests import STATUSES

N = 2000
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
