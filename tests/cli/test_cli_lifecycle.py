"""``kitaru-store cancel`` and ``kitaru-store rm``: text and --json, exit codes, bad input leaves
the store unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
from cli_demo import Run

import kitaru
from kitaru_store import Repository, liveness


@kitaru.checkpoint
def produce(n: int) -> int:
    return n * 2


@kitaru.flow
def asks() -> bool:
    produce(1)
    return bool(kitaru.wait(name="go", schema=bool))


@kitaru.flow
def done() -> int:
    return produce(2).load()


def _snapshot(repo: Repository) -> list[tuple[str, str]]:
    return [(s.exec_id, s.status) for s in repo.list_executions()]


def _live(repo: Repository) -> str:
    """An execution that this (live) process owns, as if it were running here."""
    exec_id = repo.create_execution("busy")
    liveness.claim(repo, exec_id)
    owner = liveness.this_owner()
    with repo.writer() as w:
        w.mutate(exec_id, lambda m: msgspec.structs.replace(m, owner=owner))
    return exec_id


def test_cancel_waiting_then_finished_is_refused_with_exit_2(run: Run, repo: Repository) -> None:
    waiting = asks.run().exec_id
    result = run("cancel", waiting[:8], "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "exec_id": waiting,
        "flow_name": "asks",
        "status": "cancelled",
        "cancel_requested": False,
    }
    before = _snapshot(repo)
    again = run("cancel", waiting)
    assert again.exit_code == 2
    assert again.stderr.startswith(f"error: execution {waiting} is cancelled")
    as_json = run("cancel", waiting, "--json")
    assert as_json.exit_code == 2 and json.loads(as_json.stdout)["error"] == "ExecutionStateError"
    assert _snapshot(repo) == before


def test_cancel_a_running_execution_records_a_request(run: Run, repo: Repository) -> None:
    exec_id = _live(repo)
    try:
        result = run("cancel", exec_id, "--reason", "stop it")
        assert result.exit_code == 0, result.output
        assert "cancel requested" in result.stdout and "next checkpoint boundary" in result.stdout
        m = repo.get_execution(exec_id)
        assert m.status == "running" and m.cancel_request is not None
        assert m.cancel_request.reason == "stop it"
    finally:
        liveness.release(repo, exec_id)


def test_cancel_and_rm_unknown_ids_exit_2_and_change_nothing(run: Run, repo: Repository) -> None:
    kept = done.run().exec_id
    before = _snapshot(repo)
    for args in (["cancel", "0123abcd"], ["rm", kept, "0123abcd"], ["rm", "not-hex"]):
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ")
        as_json = run(*args, "--json")
        assert as_json.exit_code == 2 and "error" in json.loads(as_json.stdout)
    assert _snapshot(repo) == before


def test_rm_deletes_several_and_refuses_a_live_one_without_force(
    run: Run, repo: Repository, store_path: Path
) -> None:
    first, second = done.run().exec_id, done.run().exec_id
    live = _live(repo)
    try:
        before = _snapshot(repo)
        refused = run("rm", first, live, "--json")
        assert refused.exit_code == 2
        assert json.loads(refused.stdout)["error"] == "ExecutionStateError"
        assert _snapshot(repo) == before  # checked before anything was deleted
        result = run("rm", first[:10], second, "--json")
        assert result.exit_code == 0, result.output
        assert [d["exec_id"] for d in json.loads(result.stdout)["deleted"]] == [first, second]
        assert _snapshot(repo) == [(live, "running")]
        forced = run("rm", live, "--force")
        assert forced.exit_code == 0, forced.output
        assert forced.stdout == f"deleted {live[:12]} (busy)\n"
        assert "kitaru-store gc" in forced.stderr
        assert _snapshot(repo) == []
    finally:
        liveness.release(repo, live)
