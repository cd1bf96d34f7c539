"""gc, fsck, stats and path."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from cli_demo import Demo, Run

from kitaru_store import Repository, layout
from kitaru_store.cli import output


def _garbage(repo: Repository, demo: Demo) -> None:
    """Forget the failed run (its input becomes garbage) and add an unreferenced value.

    Eight objects stay referenced.
    """
    repo.delete_execution(demo.ingest)
    repo.put_bytes(os.urandom(2 << 20))  # chunked: an index and its chunks


def test_gc_dry_run_removes_nothing(run: Run, demo: Demo, repo: Repository) -> None:
    _garbage(repo, demo)
    before = repo.stats().objects
    result = run("gc", "--dry-run", "--grace", "0")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"would remove {before - 8} of {before} objects, ")
    assert lines[1] == "kept 8 referenced objects and 0 within the grace period (0)"
    assert lines[2].startswith("file size: ")
    assert repo.stats().objects == before


def test_gc_grace_keeps_recent_objects(run: Run, demo: Demo, repo: Repository) -> None:
    _garbage(repo, demo)
    result = run("gc", "--grace", "2h")
    assert result.exit_code == 0
    assert result.stdout.startswith("removed 0 of ")
    assert "within the grace period (2h)" in result.stdout


def test_gc_removes_and_compacts(run: Run, demo: Demo, repo: Repository) -> None:
    _garbage(repo, demo)
    total = repo.stats().objects
    result = run("gc", "--grace", "0", "--compact", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["objects_total"] == total
    assert report["objects_removed"] == total - 8
    assert report["bytes_removed"] > 2 << 20
    assert report["compacted"] is True and report["compact_error"] is None
    assert report["file_size_after"] < report["file_size_before"]
    assert repo.stats().objects == 8
    assert run("fsck").exit_code == 0
    assert run("cat", f"{demo.research}:notes").stdout.startswith("Looked")


def test_gc_honours_pins(run: Run, demo: Demo, repo: Repository) -> None:
    batch = demo.objects["batch"]
    repo.delete_execution(demo.ingest)
    assert run("pin", "keep", batch[:8]).exit_code == 0
    assert json.loads(run("gc", "--grace", "0", "--json").stdout)["objects_removed"] == 0
    assert run("unpin", "keep").exit_code == 0
    assert json.loads(run("gc", "--grace", "0", "--json").stdout)["objects_removed"] == 1
    assert run("cat", batch).exit_code == 1


@pytest.mark.parametrize("bad", ["5x", "-1", "1h30", "h", ""])
def test_gc_bad_grace_is_a_usage_error(run: Run, demo: Demo, bad: str) -> None:
    result = run("gc", "--grace", bad)
    assert result.exit_code == 2
    assert "Invalid value for '--grace'" in result.stderr


def test_parse_duration() -> None:
    assert output.parse_duration("0") == 0
    assert output.parse_duration("90") == 90
    assert output.parse_duration("30s") == 30
    assert output.parse_duration("10m") == 600
    assert output.parse_duration("2h") == 7200
    assert output.parse_duration("7d") == 7 * 86400
    assert output.parse_duration("1w") == 7 * 86400
    assert output.parse_duration("1h30m") == 5400
    assert output.parse_duration("1.5h") == 5400
    assert output.parse_duration(" 2H ") == 7200


def test_fsck_ok(run: Run, demo: Demo) -> None:
    result = run("fsck")
    assert result.exit_code == 0
    assert result.stdout == "checked 9 of 9 objects, 4 executions, 13 entries: ok\n"
    doc = json.loads(run("fsck", "--json").stdout)
    assert doc["ok"] is True and doc["problems"] == []


def test_fsck_sample(run: Run, demo: Demo) -> None:
    assert run("fsck", "--sample", "3").stdout.startswith("checked 3 of 9 objects")
    assert run("fsck", "--sample", "0.5", "--seed", "1").stdout.startswith("checked 4 of 9 objects")
    assert run("fsck", "--sample", "50%").stdout.startswith("checked 4 of 9 objects")
    assert run("fsck", "--sample", "1.5").exit_code == 2
    assert run("fsck", "--sample", "abc").exit_code == 2


def _corrupt(repo: Repository, object_id: str) -> None:
    key = layout.object_key(object_id)

    def flip(wt):  # type: ignore[no-untyped-def]
        record = bytearray(wt.get(b"objects", key))
        record[-1] ^= 0xFF
        wt.put(b"objects", key, bytes(record))

    repo._backend().update(flip)


def test_fsck_finds_a_corrupt_object(run: Run, demo: Demo, repo: Repository) -> None:
    _corrupt(repo, demo.objects["question"])
    result = run("fsck")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"corrupt-object: object {demo.objects['question']} is corrupt: ")
    assert lines[-1] == "checked 9 of 9 objects, 4 executions, 13 entries: 1 problem"
    doc = json.loads(run("fsck", "--json").stdout)
    assert doc["ok"] is False
    assert doc["problems"][0]["kind"] == "corrupt-object"
    assert doc["problems"][0]["object_id"] == demo.objects["question"]
    assert run("fsck", "--json").exit_code == 1
    # reading it is an error too, never wrong data
    bad = run("cat", f"{demo.research}:question")
    assert bad.exit_code == 1
    assert "is corrupt" in bad.stderr


def test_fsck_finds_a_missing_object(run: Run, demo: Demo, repo: Repository) -> None:
    key = layout.object_key(demo.objects["batch"])
    repo._backend().update(lambda wt: wt.delete(b"objects", key))
    result = run("fsck")
    assert result.exit_code == 1
    assert "missing-object: entry 'batch' names an object that is not stored" in result.stdout
    assert f"execution {demo.ingest[:12]}, name 'batch'" in result.stdout


def test_stats(run: Run, demo: Demo) -> None:
    result = run("stats")
    assert result.exit_code == 0
    out = result.stdout
    assert "executions:         4" in out
    assert "entries:            13" in out
    assert "objects:            9 (" in out
    assert "dedup ratio:" in out and "compression ratio:" in out and "file size:" in out
    doc = json.loads(run("stats", "--json").stdout)
    assert doc["executions"] == 4 and doc["objects"] == 9
    assert doc["logical_bytes"] == 1001
    assert doc["logical_bytes"] > doc["unique_bytes"] >= doc["stored_bytes"] > 0
    assert doc["dedup_ratio"] == round(doc["logical_bytes"] / doc["unique_bytes"], 3)
    assert "logical bytes:      1001 B (1001)" in out


def test_path_env(run: Run, store_path: Path) -> None:
    result = run("path")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == str(store_path)
    assert lines[1].startswith("source:     env")
    assert "does not exist yet" in lines[2]
    assert not store_path.exists()  # path never creates the store
    doc = json.loads(run("path", "--json").stdout)
    assert doc == {
        "path": str(store_path),
        "source": "env",
        "exists": False,
        "looked": [f"$KITARU_STORE={store_path}"],
    }


def test_path_explicit_and_project(
    run: Run, repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = json.loads(run("--store", str(repo.root), "path", "--json").stdout)
    assert doc["source"] == "explicit" and doc["exists"] is True
    project = tmp_path / "proj"
    (project / ".kitaru").mkdir(parents=True)
    (project / "src").mkdir()
    monkeypatch.chdir(project / "src")
    monkeypatch.delenv("KITARU_STORE")
    doc = json.loads(run("path", "--json").stdout)
    assert doc["path"] == str(project / ".kitaru")
    assert doc["source"] == "project"
    assert doc["exists"] is False


def test_path_user(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KITARU_STORE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    doc = json.loads(run("path", "--json").stdout)
    assert doc["source"] == "user"
    assert doc["path"] == str(tmp_path / "data" / "kitaru" / "store")
    assert "(per-user data directory" in run("path").stdout or "per-user" in run("path").stdout


def test_path_not_a_store(run: Run, tmp_path: Path) -> None:
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "something").write_text("x")
    result = run("--store", str(odd), "path")
    assert result.exit_code == 1
    assert "is not a kitaru store" in result.stdout
    assert run("--store", str(odd), "log").exit_code == 1


def test_progress_draws_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    pipe = io.StringIO()
    monkeypatch.setattr("sys.stderr", pipe)
    with output.Progress(minimum=0) as progress:
        progress("scan", 10, 100)
    assert pipe.getvalue() == ""

    tty = Tty()
    monkeypatch.setattr("sys.stderr", tty)
    with output.Progress(minimum=0, labels={"scan": "scanning"}) as progress:
        progress("scan", 10, 100)
        progress("scan", 100, 100)
        progress("sweep", 5, 5)
    drawn = tty.getvalue()
    assert "scanning" in drawn and "100/100" in drawn and "sweep" in drawn

    small = Tty()
    monkeypatch.setattr("sys.stderr", small)
    with output.Progress() as progress:  # below PROGRESS_MIN: no bar
        progress("scan", 10, 100)
    assert small.getvalue() == ""


def test_gc_and_fsck_draw_progress_on_a_terminal(
    run: Run, demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output, "PROGRESS_MIN", 0)
    monkeypatch.setattr(output, "isatty", lambda stream: True)
    result = run("fsck")
    assert result.exit_code == 0
    assert "checking objects" in result.stderr
    assert "checking objects" not in result.stdout
    result = run("gc", "--dry-run")
    assert "scanning" in result.stderr
