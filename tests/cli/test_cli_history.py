"""log, show, ls and diff."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cli_demo import Demo, Run

from kitaru_store import Repository
from kitaru_store.cli import output
from kitaru_store.manifests import CheckpointRecord, Failure, WaitRecord


def test_log_lists_newest_first_with_columns(run: Run, demo: Demo) -> None:
    result = run("log")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "FLOW", "STATUS", "STARTED", "DURATION", "ARTIFACTS"]
    ids = [line.split()[0] for line in lines[1:]]
    assert ids == [demo.running[:12], demo.ingest[:12], demo.replay[:12], demo.research[:12]]
    research = lines[-1].split()
    assert research[1:3] == ["research", "completed"]
    assert research[-2:] == ["7.0s", "6"]
    assert lines[1].split()[-2:] == ["-", "1"]  # running: no duration yet


def test_log_oneline_limit_flow_status(run: Run, demo: Demo) -> None:
    out = run("log", "--oneline").stdout.splitlines()
    assert len(out) == 4
    assert out[0].split()[:3] == [demo.running[:12], "running", "research"]
    assert run("log", "-n", "2", "--oneline").stdout.splitlines() == out[:2]
    flows = run("log", "--flow", "ingest", "--oneline").stdout.splitlines()
    assert [line.split()[0] for line in flows] == [demo.ingest[:12]]
    done = run("log", "--status", "completed", "--oneline").stdout.splitlines()
    assert [line.split()[0] for line in done] == [demo.replay[:12], demo.research[:12]]
    assert run("log", "--flow", "research", "--status", "failed").stdout == ""


def test_log_json(run: Run, demo: Demo) -> None:
    result = run("log", "--json", "-n", "3")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [r["exec_id"] for r in rows] == [demo.running, demo.ingest, demo.replay]
    replay = rows[2]
    assert replay["flow_name"] == "research"
    assert replay["replay_of"] == demo.research
    assert replay["duration_seconds"] == 2.0
    assert replay["artifact_count"] == 5
    assert replay["started_at"].startswith("2025-03-14T09:31:53")
    assert rows[0]["ended_at"] is None and rows[0]["duration_seconds"] is None
    assert set(rows[0]) == set(replay)  # the same keys for every execution


def test_log_empty_store(run: Run, repo: Repository) -> None:
    result = run("log")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no executions yet" in result.stderr
    assert json.loads(run("log", "--json").stdout) == []


def test_log_prints_page_by_page(run: Run, repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    from kitaru_store.cli import text

    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    with repo.writer() as w:
        for i in range(7):  # the oldest has the longest flow name: the last page is wider
            w.create_execution("f" + "x" * (7 - i), started_at=t0 + dt.timedelta(minutes=i))
    monkeypatch.setattr(text, "LOG_PAGE", 3)
    lines = run("log").stdout.splitlines()
    assert len(lines) == 8
    flows = [line.split()[1] for line in lines[1:]]
    assert flows == ["f" + "x" * n for n in range(1, 8)]
    # Where the STATUS column starts: each page is aligned, widened for its longest flow name.
    starts = [line.index(line.split()[2]) for line in lines]
    assert starts == [14 + 4 + 2] * 4 + [14 + 7 + 2] * 3 + [14 + 8 + 2]
    assert len(run("log", "-n", "4", "--oneline").stdout.splitlines()) == 4
    paged = json.loads(run("log", "--json").stdout)
    assert [r["flow_name"] for r in paged] == flows


def test_json_list_written_page_by_page_is_the_same_json() -> None:
    from click.testing import CliRunner

    from kitaru_store.cli import output

    items = [{"a": [1, {"b": "x\ny"}], "c": None}, {}, [], {"d": float("nan")}, "é"]
    for n in range(len(items) + 1):

        def echo(n: int = n) -> None:
            output.echo_json_list(items[:n], page_size=2)

        import click

        result = CliRunner().invoke(click.command()(echo))
        assert result.stdout == output.dumps(items[:n]) + "\n"


def test_log_bad_status_is_a_usage_error(run: Run, demo: Demo) -> None:
    result = run("log", "--status", "finished")
    assert result.exit_code == 2
    assert "'finished' is not one of" in result.stderr


def test_show_completed(run: Run, demo: Demo) -> None:
    result = run("show", demo.research[:6])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"execution {demo.research}" in out
    assert "flow:      research" in out
    assert "status:    completed" in out
    assert "duration:  7.0s" in out
    assert 'metadata:  {"user": "ada"}' in out
    assert "checkpoints (2)" in out and "artifacts (6)" in out
    assert "upstream:  fetch" in out  # lineage
    assert f"inputs:    {demo.objects['pages'][:12]}" in out
    assert "summarize.llm  llm_record         response  51 B   " + demo.objects["llm"][:12] in out


def test_show_failed_and_replay(run: Run, demo: Demo) -> None:
    out = run("show", demo.ingest).stdout
    assert "status:    failed" in out
    assert "ConnectionError: upstream closed the connection (in checkpoint load)" in out
    assert 'File "flow.py", line 12, in load' in out  # the traceback
    assert "load  failed  2 attempts  4.0s" in out
    assert "attempt 2:  failed after 2.0s: ConnectionError" in out
    out = run("show", demo.replay).stdout
    assert f"replay of:  {demo.research}" in out
    assert f"reused from:  {demo.research}" in out


def test_show_json_is_the_whole_manifest(run: Run, demo: Demo) -> None:
    doc = json.loads(run("show", demo.ingest, "--json").stdout)
    assert doc["exec_id"] == demo.ingest
    assert doc["failure"]["type"] == "ConnectionError"
    assert doc["checkpoints"][0]["attempts"][1]["failure"]["checkpoint"] == "load"
    assert doc["entries"][0]["name"] == "batch"
    assert doc["replay_of"] is None  # defaults are present, not omitted


def test_ls(run: Run, demo: Demo) -> None:
    result = run("ls", demo.research)
    assert result.exit_code == 0
    rows = [line.split() for line in result.stdout.splitlines()]
    assert [r[0] for r in rows] == ["question", "fetch", "summarize", "notes", "raw", "summarize.llm"]
    assert rows[4] == ["raw", "manual", "blob", "513", "B", demo.objects["raw"][:12]]
    manual = run("ls", demo.research, "--kind", "manual").stdout.splitlines()
    assert [line.split()[0] for line in manual] == ["question", "notes", "raw"]
    entries = json.loads(run("ls", demo.research, "--json").stdout)
    assert entries[1]["kind"] == "checkpoint_output"
    assert entries[1]["object_id"] == demo.objects["pages"]
    assert entries[3]["tags"] == ["draft"] and entries[3]["metadata"] == {"reviewed": False}


def test_diff(run: Run, demo: Demo) -> None:
    result = run("diff", demo.research, demo.replay)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"--- a {demo.research[:12]} research")
    assert lines[1].startswith(f"+++ b {demo.replay[:12]} research")
    body = {line.split()[1]: line.split() for line in lines[2:-1]}
    assert body["raw"][0] == "-"
    assert body["summarize.llm"][0] == "-"
    assert body["verdict"][0] == "+"
    assert body["summarize"] == [
        "~",
        "summarize",
        "checkpoint_output",
        demo.objects["summary"][:12],
        "->",
        demo.objects["summary2"][:12],
    ]
    assert lines[-1] == "1 added, 2 removed, 1 changed, 3 unchanged"


def test_diff_json_and_exit_code(run: Run, demo: Demo) -> None:
    d = json.loads(run("diff", demo.research, demo.replay, "--json").stdout)
    assert d["a"] == demo.research and d["b"] == demo.replay
    assert [x["name"] for x in d["added"]] == ["verdict"]
    assert [x["name"] for x in d["removed"]] == ["raw", "summarize.llm"]
    assert d["changed"] == [
        {
            "name": "summarize",
            "kind": "checkpoint_output",
            "before": demo.objects["summary"],
            "after": demo.objects["summary2"],
        }
    ]
    assert d["unchanged"] == ["fetch", "notes", "question"]
    assert run("diff", demo.research, demo.replay, "--exit-code").exit_code == 1
    same = run("diff", demo.research, demo.research, "--exit-code")
    assert same.exit_code == 0
    assert same.stdout.splitlines()[-1] == "0 added, 0 removed, 0 changed, 6 unchanged"


HOSTILE_TEXT = "clear\x1b[2Jthen\x9b31mred\u202eevil\x07"


def _hostile_execution(repo: Repository) -> str:
    """An execution whose free text (a pulled one's, say) holds terminal escapes."""
    boom = Failure(type="Error", message=HOSTILE_TEXT, traceback=f"Traceback:\n\t{HOSTILE_TEXT}\n")
    at = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    with repo.writer() as w:
        ex = w.create_execution("hostile", started_at=at, metadata={"note": HOSTILE_TEXT})
        w.set_checkpoint(
            ex,
            CheckpointRecord(
                invocation_id="step",
                name="step",
                status="failed",
                started_at=at,
                failure=boom,
                metadata={"logged": HOSTILE_TEXT},
            ),
        )
        w.set_wait(ex, WaitRecord(name="approve", status="pending", created_at=at, question=HOSTILE_TEXT))
        w.update_execution(ex, status="failed", ended_at=at, failure=boom)
    return ex


@pytest.mark.parametrize("as_json", [False, True])
def test_show_escapes_control_characters_on_a_terminal(
    run: Run, repo: Repository, monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    ex = _hostile_execution(repo)
    args = ("show", ex, "--json") if as_json else ("show", ex)
    piped = run(*args).stdout
    monkeypatch.setattr(output, "isatty", lambda stream: True)
    shown = run(*args).stdout
    for c in ("\x1b", "\x9b", "\u202e", "\x07"):
        assert c not in shown
    assert "clear\\u001b[2Jthen\\u009b31mred\\u202eevil\\u0007" in shown
    assert "\tclear" in shown or as_json  # tabs (and newlines) are printed as they are
    if as_json:  # still JSON, of the same text
        assert json.loads(shown) == json.loads(piped)
        assert json.loads(shown)["failure"]["message"] == HOSTILE_TEXT
    else:  # into a pipe, the text is as stored
        assert "\x9b" in piped
