"""kitaru-store remote add|list|set|remove, push, pull and clone, in-process with CliRunner."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from remote_helpers import good_and_bad, make_execution, remote_keys

from kitaru_store import Repository
from kitaru_store.backend import close_backend
from kitaru_store.cli import cli

Run = Callable[..., Result]


@pytest.fixture
def run() -> Run:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(cli, list(args), prog_name="kitaru-store", catch_exceptions=False)

    return invoke


@pytest.fixture
def two(tmp_path: Path) -> Any:
    paths = (tmp_path / "a", tmp_path / "b")
    yield paths
    for p in paths:
        close_backend(str(p / "db"))


def test_remote_add_list_set_remove(run: Run, two: tuple[Path, Path], url: str, s3_endpoint: str) -> None:
    a = str(two[0])
    result = run("--store", a, "remote", "add", "origin", url + "/", "--endpoint-url", s3_endpoint, "--json")
    assert result.exit_code == 0, result.output
    spec = json.loads(result.stdout)
    assert spec == {
        "name": "origin",
        "url": url,
        "endpoint_url": s3_endpoint,
        "region": None,
        "profile": None,
        "fallback": False,
        "write_through": False,
    }
    assert (two[0] / "config").exists()  # remote add creates the store if there is none
    remotes_file = two[0] / "remotes.json"
    assert oct(remotes_file.stat().st_mode & 0o777) == "0o600"
    assert "testing" not in remotes_file.read_text()  # credentials never reach the disk

    assert (
        run("--store", a, "remote", "add", "backup", "s3://other-bucket/x", "--region", "eu-west-1").exit_code
        == 0
    )
    listed = json.loads(run("--store", a, "remote", "list", "--json").stdout)
    assert [r["name"] for r in listed] == ["backup", "origin"]
    plain = run("--store", a, "remote")
    assert plain.exit_code == 0
    assert plain.stdout.splitlines() == [
        "backup\ts3://other-bucket/x\t(region eu-west-1)",
        f"origin\t{url}\t(endpoint {s3_endpoint})",
    ]

    dup = run("--store", a, "remote", "add", "origin", url, "--json")
    assert dup.exit_code == 1
    assert json.loads(dup.stdout)["error"] == "RemoteError"

    changed = json.loads(run("--store", a, "remote", "set", "origin", "--fallback", "--json").stdout)
    assert changed["fallback"] is True and changed["endpoint_url"] == s3_endpoint
    removed = run("--store", a, "remote", "remove", "backup", "--json")
    assert json.loads(removed.stdout)["removed"] == "backup"
    missing = run("--store", a, "remote", "remove", "backup", "--json")
    assert missing.exit_code == 1
    error = json.loads(missing.stdout)
    assert error["error"] == "RemoteNotFoundError" and "origin" in error["hint"]
    plain = run("--store", a, "remote", "remove", "backup")
    assert plain.exit_code == 1 and plain.stderr.startswith("error: no remote named 'backup'")


@pytest.mark.parametrize(
    "bad", ["http://bucket/x", "s3://UPPER/x", "s3://key:secret@bucket/x", "s3://bucket/../x", "s3://b"]
)
def test_bad_remote_urls_are_refused(run: Run, two: tuple[Path, Path], bad: str) -> None:
    result = run("--store", str(two[0]), "remote", "add", "origin", bad, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"] == "RemoteError"


def test_push_pull_clone(
    run: Run, two: tuple[Path, Path], url: str, s3_endpoint: str, s3: Any, bucket: str
) -> None:
    a_path, b_path = (str(p) for p in two)
    a = Repository.open(a_path)
    e1 = make_execution(a, {"x": 1, "big": bytes(range(256)) * 6000})  # 1.5 MB: chunked
    e2 = make_execution(a, {"y": "two"}, status="running")
    assert (
        run("--store", a_path, "remote", "add", "origin", url, "--endpoint-url", s3_endpoint).exit_code == 0
    )

    result = run("--store", a_path, "push", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sorted(report["pushed"]) == sorted([e1, e2]) and report["ok"] is True
    assert report["objects_uploaded"] > 4 and report["objects_present"] == 0
    assert f"manifests/{e1}" in remote_keys(s3, bucket)

    again = run("--store", a_path, "push")
    assert again.exit_code == 0
    assert again.stdout == f"nothing to push to origin ({url}): 2 executions up to date\n"

    cloned = run("clone", url, b_path, "--endpoint-url", s3_endpoint, "--json")
    assert cloned.exit_code == 0, cloned.output
    data = json.loads(cloned.stdout)
    assert data["path"] == b_path and sorted(data["fetched"]) == sorted([e1, e2])
    assert run("--store", b_path, "fsck").exit_code == 0
    assert run("--store", b_path, "cat", f"{e2[:8]}:y").stdout == "two"
    assert json.loads(run("--store", b_path, "remote", "list", "--json").stdout)[0]["url"] == url

    # a finishes e2 and pushes one execution; b pulls it by prefix, then everything.
    a.update_execution(e2, status="completed", ended_at=a.get_execution(e2).started_at)
    assert run("--store", a_path, "push", e2[:8]).exit_code == 0
    pulled = run("--store", b_path, "pull", e2[:6])
    assert pulled.exit_code == 0, pulled.output
    assert pulled.stdout.startswith("pulled 0 new executions and 1 newer version from origin (")
    everything = json.loads(run("--store", b_path, "pull", "--all", "--json").stdout)
    assert sorted(everything["up_to_date"]) == sorted([e1, e2])
    assert run("--store", b_path, "pull", e1, "--all").exit_code == 2

    again = run("clone", url, b_path, "--endpoint-url", s3_endpoint, "--json")
    assert again.exit_code == 1 and "a kitaru store already" in json.loads(again.stdout)["message"]


def test_diverged_push_exits_1_and_force_settles_it(
    run: Run, two: tuple[Path, Path], url: str, s3_endpoint: str
) -> None:
    a_path, b_path = (str(p) for p in two)
    a = Repository.open(a_path)
    exec_id = make_execution(a, {"x": 1})
    assert (
        run("--store", a_path, "remote", "add", "origin", url, "--endpoint-url", s3_endpoint).exit_code == 0
    )
    assert run("--store", a_path, "push").exit_code == 0
    assert run("clone", url, b_path, "--endpoint-url", s3_endpoint).exit_code == 0
    a.update_execution(exec_id, metadata={"by": "a"})
    Repository.open(b_path).update_execution(exec_id, metadata={"by": "b"})
    assert run("--store", a_path, "push").exit_code == 0

    result = run("--store", b_path, "push", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["conflicts"] == [exec_id] and report["ok"] is False
    plain = run("--store", b_path, "pull")
    assert plain.exit_code == 1
    assert "diverged" in plain.stderr and "--force" in plain.stderr
    forced = run("--store", b_path, "pull", "--force", "--json")
    assert forced.exit_code == 0 and json.loads(forced.stdout)["updated"] == [exec_id]
    assert Repository.open(b_path).get_execution(exec_id).metadata == {"by": "a"}


def test_push_without_a_remote_and_pull_of_an_unknown_execution(
    run: Run, two: tuple[Path, Path], url: str, s3_endpoint: str
) -> None:
    a_path = str(two[0])
    make_execution(Repository.open(a_path), {"x": 1})
    result = run("--store", a_path, "push", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"] == "RemoteNotFoundError"
    assert (
        run("--store", a_path, "remote", "add", "origin", url, "--endpoint-url", s3_endpoint).exit_code == 0
    )
    assert run("--store", a_path, "push").exit_code == 0
    unknown = run("--store", a_path, "pull", "0000abcd", "--json")
    assert unknown.exit_code == 1 and json.loads(unknown.stdout)["error"] == "RemoteNotFoundError"
    other = run("--store", a_path, "push", "--remote", "nope")
    assert other.exit_code == 1 and "no remote named 'nope'" in other.stderr


def test_clone_and_pull_with_bad_executions_exit_1_with_a_summary(
    run: Run, two: tuple[Path, Path], url: str, s3_endpoint: str, s3: Any, bucket: str
) -> None:
    a_path, b_path = (str(p) for p in two)
    a = Repository.open(a_path)
    assert (
        run("--store", a_path, "remote", "add", "origin", url, "--endpoint-url", s3_endpoint).exit_code == 0
    )
    good, bad = good_and_bad(a, s3, bucket, lambda: run("--store", a_path, "push"))

    cloned = run("clone", url, b_path, "--endpoint-url", s3_endpoint, "--json")
    assert cloned.exit_code == 1
    data = json.loads(cloned.stdout)
    assert sorted(data["fetched"]) == sorted(good) and data["ok"] is False
    assert {f["exec_id"]: f["error"] for f in data["failed"]} == bad
    assert run("--store", b_path, "fsck").exit_code == 0

    pulled = run("--store", b_path, "pull")
    assert pulled.exit_code == 1
    assert pulled.stdout.startswith("nothing to pull from origin")
    lines = pulled.stderr.splitlines()
    assert lines[0] == "error: 2 executions could not be pulled (not stored):"
    shown = {line[2:14]: line[16:] for line in lines[1:3]}
    assert sorted(shown) == sorted(e[:12] for e in bad)
    assert len(lines) == 4 and lines[3].startswith("hint: the remote's copy is bad")
    for exec_id, error in bad.items():
        assert ("is corrupt" if error == "CorruptObjectError" else "checksum") in shown[exec_id[:12]]
