"""Manifest format 1 (whole manifests) in a store written by the code before format 2.

tests/data/store-format1/ was made by tests/data/make_store_format1.py with that code; its
expected.json is every execution as that code read it back.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner
from store_helpers import make_entry

from kitaru_store import Repository, layout
from kitaru_store import manifest_store as ms
from kitaru_store import manifests as mf
from kitaru_store.cli import cli
from kitaru_store.errors import CorruptManifestError

DATA = Path(__file__).parent.parent / "data" / "store-format1"
EXPECTED: dict[str, Any] = json.loads((DATA / "expected.json").read_text())


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    root = tmp_path / "old"
    (root / "db").mkdir(parents=True)
    (root / "locks").mkdir()
    shutil.copy(DATA / "config", root / "config")
    shutil.copy(DATA / "data.mdb", root / "db" / "data.mdb")
    return root


def _stored(repo: Repository) -> dict[str, bytes]:
    with repo.kv.read() as rt:
        return {k.hex(): v for k, v in rt.items(ms.MANIFESTS)}


def _reads_as_expected(repo: Repository) -> None:
    assert sorted(s.exec_id for s in repo.list_executions()) == sorted(EXPECTED)
    for exec_id, want in EXPECTED.items():
        got = json.loads(msgspec.json.encode(repo.get_execution(exec_id, observe=False)))
        assert {**got, "format_version": 0} == {**want, "format_version": 0}, exec_id
        for entry in want["entries"]:
            assert repo.get_value(entry["object_id"]) is not None or entry["size"]
        summary = next(s for s in repo.list_executions() if s.exec_id == exec_id)
        assert (summary.artifact_count, summary.checkpoint_count) == (
            len(want["entries"]),
            len(want["checkpoints"]),
        )
    assert repo.fsck().problems == []


def test_a_format1_store_reads_migrates_and_takes_writes(old_store: Path) -> None:
    repo = Repository.open(old_store)
    before = _stored(repo)
    assert all(ms.is_whole(v, bytes.fromhex(k)) for k, v in before.items())
    _reads_as_expected(repo)
    assert _stored(repo) == before  # reading converts nothing
    assert repo.resolve_name("0f" * 16, "notes").name == "notes"

    result = CliRunner().invoke(cli, ["--store", str(old_store), "migrate"])
    assert result.exit_code == 0, result.output
    assert "converted 3 executions to manifest format 2; 0 had it already" in result.stdout
    assert not any(ms.is_whole(v, bytes.fromhex(k)) for k, v in _stored(repo).items())
    _reads_as_expected(repo)
    again = CliRunner().invoke(cli, ["--store", str(old_store), "migrate", "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout) == {"converted": [], "current": 3, "damaged": []}

    a = "0f" * 16
    old = repo.get_execution(a)
    with repo.writer() as w:
        w.replace_entry(a, make_entry(w.put_value("new"), "notes"))  # dropped, appended last
        w.set_checkpoint(a, msgspec.structs.replace(old.checkpoints[0], status="reused"))  # in place
        w.set_wait(a, msgspec.structs.replace(old.waits[0], status="aborted"))  # in place
    new = repo.get_execution(a)
    assert [e.name for e in new.entries] == [e.name for e in old.entries if e.name != "notes"] + ["notes"]
    assert [c.status for c in new.checkpoints] == ["reused", *(c.status for c in old.checkpoints[1:])]
    assert [w.status for w in new.waits] == ["aborted", "pending"]
    assert repo.fsck().problems == []
    old_notes = next(e.object_id for e in old.entries if e.name == "notes")
    assert repo.gc(grace=0).objects_removed == 2  # that, and the first step_1 output (replaced in 1)
    assert not repo.has_object(old_notes)
    for exec_id in EXPECTED:
        for object_id in mf.referenced_ids(repo.get_execution(exec_id)):
            repo.get_bytes(object_id)


def test_a_write_converts_a_format1_execution_in_its_commit(old_store: Path) -> None:
    repo = Repository.open(old_store)
    b = "1e" * 16
    with repo.writer() as w:
        w.add_entry(b, make_entry(w.put_value(7), "more"))
    stored = _stored(repo)
    assert not ms.is_whole(stored[b], bytes.fromhex(b)) and ms.is_whole(stored["0f" * 16], b"\x0f" * 16)
    got = repo.get_execution(b, observe=False)
    want = EXPECTED[b]
    assert [e.name for e in got.entries] == [e["name"] for e in want["entries"]] + ["more"]
    assert got.cancel_request is not None and got.owner is not None and got.failure is not None
    assert repo.fsck().problems == []


def test_migrate_leaves_a_damaged_execution_as_it_is_and_says_so(old_store: Path) -> None:
    repo = Repository.open(old_store)
    c = "2d" * 16
    damaged = bytearray(_stored(repo)[c])
    damaged[len(damaged) // 2] ^= 0x20
    repo._backend().update(lambda wt: wt.put(ms.MANIFESTS, layout.uuid_key(c), bytes(damaged)))
    result = CliRunner().invoke(cli, ["--store", str(old_store), "migrate"])
    assert result.exit_code == 1
    assert f"damaged: execution {c} was left as it is" in result.stdout
    assert "converted 2 executions" in result.stdout
    assert isinstance(result.exception, SystemExit)
    assert "CorruptManifestError" in result.output or "could not be converted" in result.output
    assert _stored(repo)[c] == bytes(damaged)
    with pytest.raises(CorruptManifestError):
        repo.get_execution(c)
    report = ms.migrate(repo._backend())
    assert (report.converted, report.current, [e for e, _ in report.damaged]) == ([], 2, [c])


def test_wire_form_of_a_migrated_execution_is_its_whole_manifest(old_store: Path) -> None:
    repo = Repository.open(old_store)
    a = "0f" * 16
    legacy = mf.decode_manifest(_stored(repo)[a])
    ms.migrate(repo._backend())
    assert mf.same_content(mf.decode_manifest(mf.encode_manifest(repo.get_execution(a))), legacy)
