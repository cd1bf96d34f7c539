"""layout.py: every key and ref name it builds parses back, sorts as the scans need, and is the one
the store writes; nothing outside it spells a sub-database name."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from store_helpers import ROOT, fresh_python

from kitaru_store import InvalidIdError, Repository, layout
from kitaru_store.ids import new_uuid

T0 = dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)


def test_summary_and_flow_keys_take_apart_into_what_built_them() -> None:
    exec_key = layout.uuid_key(new_uuid())
    skey = layout.summary_key(T0, exec_key)
    assert len(skey) == layout.SUMMARY_KEY_BYTES
    assert layout.summary_exec_key(skey) == exec_key
    assert layout.summary_time(skey) == T0
    fkey = layout.flow_key("research", skey)
    assert fkey.startswith(layout.flow_prefix("research"))
    assert layout.flow_summary_key(fkey) == skey
    assert layout.flow_exec_key(fkey) == exec_key
    assert layout.flow_prefix("research") <= fkey < layout.flow_upper("research")
    # Another flow whose name extends this one's sorts outside its range.
    assert (
        not layout.flow_prefix("research")
        <= layout.flow_key("research2", skey)
        < layout.flow_upper("research")
    )


def test_summary_keys_sort_by_start_time() -> None:
    times = [T0 + dt.timedelta(microseconds=n) for n in (5, 0, 10**9, 3)]
    keys = [layout.summary_key(t, bytes(16)) for t in times]
    assert [layout.summary_time(k) for k in sorted(keys)] == sorted(times)


def test_ref_names_build_and_parse() -> None:
    assert layout.pin_ref("keep") == b"pin/keep"
    assert layout.pin_name(layout.pin_ref("keep")) == "keep"
    assert layout.pin_name(b"inflight/x") is None
    ref = layout.inflight_ref(0x1234, b"abc")
    assert ref == b"inflight/0000000000001234/abc"
    assert layout.inflight_stamp(ref) == 0x1234
    assert layout.inflight_stamp(b"pin/inflight/0000000000000000/x") is None
    assert layout.inflight_stamp(layout.INFLIGHT_PREFIX + b"not-a-time-stamp/x") is None
    upper = layout.prefix_upper(layout.PIN_PREFIX)
    assert layout.PIN_PREFIX <= layout.pin_ref("\U0010ffff" * 3) < upper
    assert not layout.PIN_PREFIX <= b"pio" < upper


def test_memory_record_keys_build_and_parse() -> None:
    prefix = layout.memory_scope_prefix("flow", "f")
    key = layout.memory_record_key(prefix, "user/1", 7)
    assert layout.parse_memory_record_key(key) == ("flow", "f", "user/1", 7)
    assert layout.memory_key_in(key, prefix) == b"user/1"
    assert layout.memory_record_version(key) == 7
    lo, hi = layout.memory_versions_range(prefix, b"user/1")
    assert lo <= key < hi
    assert prefix <= key < layout.memory_scope_upper("flow", "f")
    # A longer key of the same scope is not a version of this one.
    assert not lo <= layout.memory_record_key(prefix, "user/10", 1) < hi


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"x" * 20, "is malformed"),
        (b"nname\x00k\x00k\x00" + (1).to_bytes(8, "big"), "is malformed"),
        (b"nname\x00k\x00" + bytes(8), "has version 0"),
    ],
)
def test_a_memory_record_key_that_is_not_one_is_refused(raw: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        layout.parse_memory_record_key(raw)


def test_ids_as_keys_are_checked() -> None:
    assert layout.object_key("ab" * 32) == bytes([0xAB]) * 32
    assert layout.uuid_key("0" * 8 + "-" + "1" * 24) == bytes.fromhex("0" * 8 + "1" * 24)
    for bad in ("ab" * 31, "zz" * 32):
        with pytest.raises(InvalidIdError):
            layout.object_key(bad)
    with pytest.raises(InvalidIdError):
        layout.uuid_key("ab" * 15)


def test_run_lock_names_parse_back() -> None:
    exec_id = new_uuid()
    path = Path(layout.run_lock_path("/s", exec_id))
    assert path.parent == Path(layout.runs_dir("/s"))
    assert layout.run_lock_exec_id(path.name) == exec_id
    assert layout.run_lock_exec_id("notes.txt") is None
    assert layout.run_lock_exec_id(exec_id.upper() + ".lock") is None


def test_the_store_holds_exactly_the_files_and_databases_layout_names(repo: Repository) -> None:
    assert {p.name for p in repo.root.iterdir()} >= {layout.CONFIG_FILE, layout.DB_DIR, layout.LOCK_DIR}
    assert Path(layout.data_file(repo.root)).is_file()
    assert Path(layout.lock_file(repo.root, layout.STORE_LOCK)).is_file()
    with repo._backend().read() as rt:
        assert set(rt._dbs) == set(layout.DATABASES)


def test_no_other_module_spells_a_sub_database_name() -> None:
    names = "|".join(db.decode() for db in layout.DATABASES)
    pattern = re.compile(rf'b"({names})"')
    spelled = [
        f"{path.relative_to(ROOT)}:{n}"
        for package in ("kitaru_store", "kitaru")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "layout.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert spelled == []


def test_layout_imports_nothing_heavy() -> None:
    code = "import sys, kitaru_store.layout; print(' '.join(sorted(sys.modules)))"
    loaded = set(fresh_python(code))
    assert not loaded & {"lmdb", "msgspec", "zstandard", "typing", "dataclasses"}
