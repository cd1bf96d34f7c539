"""The kv.Store contract, run against both implementations: LMDB (backend.Backend) and MemoryKV.

Whatever the store's modules rely on is stated here once: a test that passes for one store and
fails for the other is a difference the code above the interface would trip on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import lmdb
import pytest

from kitaru_store import kv, layout
from kitaru_store.backend import close_backend, open_backend
from kitaru_store.errors import ReadOnlyStoreError, StoreError
from kitaru_store.kv_memory import MemoryKV

DB = layout.REFS  # any sub-database: the contract is the same for each
OTHER = layout.CACHE
KEYS = [bytes([c]) for c in b"acegikmoqs"]  # b"a", b"c", ... b"s": ten keys

Factory = Callable[..., kv.Store]


@pytest.fixture(params=["lmdb", "memory"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """A factory of empty stores of one implementation: ``make()`` a writable one,
    ``make(readonly=True, databases=...)`` a read-only one holding only ``databases``."""
    opened: list[str] = []

    def lmdb_store(*, readonly: bool = False, databases: tuple[bytes, ...] = layout.DATABASES) -> kv.Store:
        path = str(tmp_path / f"db{len(opened)}")
        Path(path).mkdir()
        if readonly:  # an environment made with only some of the sub-databases
            env = lmdb.open(path, max_dbs=len(layout.DATABASES) + 2, subdir=True)
            for name in databases:
                env.open_db(name)
            env.close()
        opened.append(path)
        return open_backend(path, readonly=readonly)

    def memory_store(*, readonly: bool = False, databases: tuple[bytes, ...] = layout.DATABASES) -> kv.Store:
        return MemoryKV(readonly=readonly, databases=databases)

    yield lmdb_store if request.param == "lmdb" else memory_store
    for path in opened:
        close_backend(path)


@pytest.fixture
def store(make: Factory) -> kv.Store:
    return make()


def fill(store: kv.Store, keys: list[bytes] = KEYS, db: bytes = DB) -> None:
    def txn(wt: kv.WriteTxn) -> None:
        for key in keys:
            wt.put(db, key, b"v" + key)

    store.update(txn)


# --- single keys ---------------------------------------------------------------------------------


def test_put_get_has_delete(store: kv.Store) -> None:
    assert store.update(lambda wt: wt.put(DB, b"k", b"one")) is True
    with store.read() as rt:
        assert rt.get(DB, b"k") == b"one" and isinstance(rt.get(DB, b"k"), bytes)
        assert rt.has(DB, b"k") and not rt.has(DB, b"nope") and rt.get(DB, b"nope") is None
        assert rt.get(OTHER, b"k") is None  # sub-databases are separate
    assert store.update(lambda wt: wt.delete(DB, b"k")) is True
    assert store.update(lambda wt: wt.delete(DB, b"k")) is False
    with store.read() as rt:
        assert rt.get(DB, b"k") is None and rt.count(DB) == 0


def test_overwrite_false_keeps_the_stored_value(store: kv.Store) -> None:
    store.update(lambda wt: wt.put(DB, b"k", b"first"))
    assert store.update(lambda wt: wt.put(DB, b"k", b"second", overwrite=False)) is False
    with store.read() as rt:
        assert rt.get(DB, b"k") == b"first"
    assert store.update(lambda wt: wt.put(DB, b"k", b"third")) is True
    with store.read() as rt:
        assert rt.get(DB, b"k") == b"third"


def test_a_value_is_stored_as_it_was_when_put(store: kv.Store) -> None:
    buf = bytearray(b"abc")
    store.update(lambda wt: wt.put(DB, b"k", memoryview(buf)))
    buf[0] = ord("X")  # the caller's buffer changes after the commit
    with store.read() as rt:
        assert rt.get(DB, b"k") == b"abc"


@pytest.mark.parametrize("key", [b"", b"k" * 512], ids=["empty", "too-long"])
def test_a_key_the_store_cannot_hold_is_refused_and_nothing_is_written(store: kv.Store, key: bytes) -> None:
    def txn(wt: kv.WriteTxn) -> None:
        wt.put(DB, b"fine", b"1")
        wt.put(DB, key, b"2")

    with pytest.raises(StoreError):
        store.update(txn)
    with store.read() as rt:
        assert rt.count(DB) == 0


def test_a_write_transaction_sees_its_own_writes(store: kv.Store) -> None:
    fill(store, KEYS[:3])

    def txn(wt: kv.WriteTxn) -> tuple[bytes | None, list[bytes], int]:
        wt.put(DB, b"b", b"new")
        wt.delete(DB, KEYS[0])
        return wt.get(DB, b"b"), [k for k, _ in wt.items(DB)], wt.count(DB)

    assert store.update(txn) == (b"new", [b"b", KEYS[1], KEYS[2]], 3)


# --- ranges and scans ----------------------------------------------------------------------------


def test_items_are_in_key_order_within_bounds(store: kv.Store) -> None:
    fill(store, list(reversed(KEYS)))
    with store.read() as rt:
        assert [k for k, _ in rt.items(DB)] == KEYS
        assert [k for k, _ in rt.items(DB, reverse=True)] == KEYS[::-1]
        assert [k for k, _ in rt.items(DB, b"b", b"i")] == [b"c", b"e", b"g"]  # lo in, hi out
        assert [k for k, _ in rt.items(DB, b"c", b"i", reverse=True)] == [b"g", b"e", b"c"]
        assert [k for k, _ in rt.items(DB, b"z")] == []
        assert dict(rt.items(DB, b"a", b"b")) == {b"a": b"va"}
        views = dict(rt.view_items(DB, b"e", b"i"))
        assert list(views) == [b"e", b"g"] and all(isinstance(v, memoryview) for v in views.values())
        assert {k: bytes(v) for k, v in views.items()} == {b"e": b"ve", b"g": b"vg"}


def test_scan_takes_a_prefix_a_range_or_both(store: kv.Store) -> None:
    keys = [b"a/1", b"a/2", b"a0", b"b/1", b"b/2", b"\xff\xff", b"\xff\xff\x01"]
    fill(store, keys)
    assert [k for k, _ in store.scan(DB, prefix=b"a/")] == [b"a/1", b"a/2"]
    assert [k for k, _ in store.scan(DB, b"a/2", b"b/2")] == [b"a/2", b"a0", b"b/1"]
    assert [k for k, _ in store.scan(DB, b"a/2", prefix=b"a/")] == [b"a/2"]
    assert [k for k, _ in store.scan(DB, stop=b"b/2", prefix=b"b")] == [b"b/1"]
    assert [k for k, _ in store.scan(DB, prefix=b"\xff\xff")] == [b"\xff\xff", b"\xff\xff\x01"]
    assert [k for k, _ in store.scan(DB, prefix=b"c")] == []
    assert dict(store.scan(DB, prefix=b"b/1")) == {b"b/1": b"vb/1"}


def test_prefix_bounds() -> None:
    assert kv.bounds(prefix=b"ab") == (b"ab", b"ac")
    assert kv.bounds(prefix=b"a\xff") == (b"a\xff", b"b")
    assert kv.bounds(prefix=b"\xff") == (b"\xff", None)
    assert kv.bounds(b"b", b"ax", prefix=b"a") == (b"b", b"ax")  # an empty range stays empty
    assert kv.bounds(b"", b"zz", prefix=b"m") == (b"m", b"n")


@pytest.mark.parametrize("batch", [1, 2, 3, 9, 10, 11, 1000])
def test_batches_cross_their_boundaries_without_losing_or_repeating_a_key(
    store: kv.Store, batch: int
) -> None:
    fill(store)
    assert [k for k, _ in store.scan(DB, batch=batch)] == KEYS
    got = [list(b) for b in store.batches(DB, batch=batch)]
    assert all(0 < len(b) <= batch for b in got)
    assert [k for b in got for k, _ in b] == KEYS
    key_lists = list(store.key_batches(DB, batch=batch))
    assert all(0 < len(b) <= batch for b in key_lists)
    assert [k for b in key_lists for k in b] == KEYS
    assert [k for b in store.key_batches(DB, b"b", b"k", batch=batch) for k in b] == KEYS[1:5]
    for n in range(len(KEYS)):  # a bound inside a batch, at its end, at its start
        assert [k for b in store.key_batches(DB, stop=KEYS[n], batch=batch) for k in b] == KEYS[:n]
        assert [k for b in store.batches(DB, KEYS[n], batch=batch) for k, _ in b] == KEYS[n:]


def test_batch_values_are_views_valid_inside_their_batch(store: kv.Store) -> None:
    fill(store)
    seen = []
    for batch in store.batches(DB, batch=4):
        for key, value in batch:
            assert isinstance(value, memoryview)
            seen.append((key, bytes(value)))
    assert seen == [(k, b"v" + k) for k in KEYS]


def test_what_the_caller_leaves_of_a_batch_is_passed_over(store: kv.Store) -> None:
    fill(store)
    firsts = [next(iter(b))[0] for b in store.batches(DB, batch=3)]
    assert firsts == [KEYS[0], KEYS[3], KEYS[6], KEYS[9]]
    assert len(list(store.batches(DB, batch=3))) == 4  # none of them read at all


def test_a_batch_size_below_one_is_refused(store: kv.Store) -> None:
    fill(store)
    for walk in (store.scan, store.batches, store.key_batches):
        with pytest.raises(ValueError):
            list(walk(DB, batch=0))


def test_a_scan_reads_each_batch_in_a_fresh_transaction(store: kv.Store) -> None:
    """A long scan holds no snapshot: what commits between its batches is seen by the later ones."""
    fill(store, KEYS[:4])
    seen = []
    for n, (key, _) in enumerate(store.scan(DB, batch=2)):
        seen.append(key)
        if n == 0:  # inside the first batch: commit a key past it, and one before the scan's place
            store.update(lambda wt: (wt.put(DB, b"z", b"late"), wt.put(DB, b"0", b"early")))
    assert seen == [*KEYS[:4], b"z"]


def test_empty_and_missing_databases_read_as_empty(make: Factory) -> None:
    writable = make()
    ro = make(readonly=True, databases=(layout.OBJECTS,))
    for store, db in ((writable, DB), (ro, DB), (ro, layout.OBJECTS)):
        with store.read() as rt:
            assert rt.count(db) == 0 and rt.get(db, b"a") is None and rt.get_view(db, b"a") is None
            assert not rt.has(db, b"a") and list(rt.items(db)) == [] and list(rt.view_items(db)) == []
            assert rt.present(db, [b"a"]) == set() and rt.get_many(db, [b"a"]) == {}
        assert (
            list(store.scan(db)) == [] and list(store.batches(db)) == [] and list(store.key_batches(db)) == []
        )


def test_a_read_only_store_refuses_to_write(make: Factory) -> None:
    ro = make(readonly=True)
    assert ro.readonly and not make().readonly
    with pytest.raises(ReadOnlyStoreError):
        ro.update(lambda wt: wt.put(DB, b"k", b"v"))


def test_an_unknown_database_name_is_a_key_error(store: kv.Store) -> None:
    with store.read() as rt, pytest.raises(KeyError):
        rt.get(b"no-such-db", b"k")


# --- lookups in key order ------------------------------------------------------------------------


def test_present_and_get_many_take_keys_in_any_order(store: kv.Store) -> None:
    fill(store)
    asked = [b"s", b"b", b"a", b"s", b"zz", b"g"]
    with store.read() as rt:
        assert rt.present(DB, iter(asked)) == {b"a", b"g", b"s"}
        assert rt.get_many(DB, asked) == {b"a": b"va", b"g": b"vg", b"s": b"vs"}
        assert rt.present(DB, []) == set()


def test_count(store: kv.Store) -> None:
    fill(store)
    store.update(lambda wt: wt.put(OTHER, b"x", b""))  # an empty value is a value
    with store.read() as rt:
        assert rt.count(DB) == len(KEYS) and rt.count(OTHER) == 1 and rt.get(OTHER, b"x") == b""


def test_get_view_is_the_value_without_a_copy_inside_the_transaction(store: kv.Store) -> None:
    fill(store)
    with store.read(buffers=True) as rt:
        view = rt.get_view(DB, b"c")
        assert isinstance(view, memoryview) and view == b"vc" and view.readonly


# --- transactions --------------------------------------------------------------------------------


def test_a_read_transaction_never_sees_a_later_commit(store: kv.Store) -> None:
    fill(store, [b"a"])
    with store.read() as rt:
        before = rt.version()
        writer = threading.Thread(
            target=store.update, args=(lambda wt: (wt.put(DB, b"b", b"2"), wt.delete(DB, b"a")),)
        )
        writer.start()
        writer.join()
        assert rt.get(DB, b"a") == b"va" and rt.get(DB, b"b") is None and rt.count(DB) == 1
        assert [k for k, _ in rt.items(DB)] == [b"a"] and rt.version() == before
    with store.read() as rt:
        assert [k for k, _ in rt.items(DB)] == [b"b"] and rt.version() != before


def test_a_failing_write_transaction_changes_nothing(store: kv.Store) -> None:
    fill(store)
    with store.read() as rt:
        version, before = rt.version(), list(rt.items(DB))

    def txn(wt: kv.WriteTxn) -> None:
        wt.put(DB, b"new", b"1")
        wt.put(DB, KEYS[0], b"changed")
        wt.delete(DB, KEYS[1])
        wt.put(OTHER, b"x", b"y")
        raise RuntimeError("the caller's failure")

    with pytest.raises(RuntimeError, match="the caller's failure"):
        store.update(txn)
    with store.read() as rt:
        assert list(rt.items(DB)) == before and rt.count(OTHER) == 0 and rt.version() == version
    store.update(lambda wt: wt.put(DB, b"after", b"1"))  # the store goes on
    with store.read() as rt:
        assert rt.get(DB, b"after") == b"1"


def test_versions_change_exactly_when_something_commits(store: kv.Store) -> None:
    with store.read() as rt:
        v0 = rt.version()
    with store.read() as rt:
        assert rt.version() == v0  # nothing committed in between

    def txn(wt: kv.WriteTxn) -> tuple[tuple[int, int], tuple[int, int]]:
        wt.put(DB, b"k", b"v")
        return wt.version(), wt.committing()

    seen, committing = store.update(txn)
    assert seen == v0  # a write transaction's version is the state it started from
    with store.read() as rt:
        v1 = rt.version()
    assert v1 == committing and v1 != v0


def test_versions_of_two_stores_differ(make: Factory) -> None:
    a, b = make(), make()
    with a.read() as ra, b.read() as rb:
        assert ra.version() != rb.version()  # a cache keyed by version never mixes two stores


def test_one_writer_at_a_time(store: kv.Store) -> None:
    """Read-modify-write from several threads loses no update: writers never overlap."""

    def bump(wt: kv.WriteTxn) -> None:
        n = int(wt.get(DB, b"n") or b"0")
        wt.put(DB, b"n", b"%d" % (n + 1))

    def worker() -> None:
        for _ in range(50):
            store.update(bump)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with store.read() as rt:
        assert rt.get(DB, b"n") == b"200"


def test_update_returns_what_its_function_returns(store: kv.Store) -> None:
    assert store.update(lambda wt: ("result", wt.put(DB, b"k", b"v"))) == ("result", True)


def test_maintenance_is_there_only_for_a_store_with_a_file(store: kv.Store) -> None:
    fill(store)
    maintenance = store.maintenance()
    if isinstance(store, MemoryKV):
        assert maintenance is None
    else:
        assert maintenance is not None
        assert maintenance.file_size() > 0 and 0 < maintenance.used_bytes() <= maintenance.file_size()
