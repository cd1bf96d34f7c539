"""``kitaru-store memory``: ls, get, history, set, rm and redact."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_demo import Run

from kitaru_store import Repository
from kitaru_store.cli import output
from kitaru_store.ids import new_uuid
from kitaru_store.manifests import Entry
from kitaru_store.memory import current_user, make_scope

NS = make_scope("namespace", "default")


def add_entry(repo: Repository, flow: str, name: str, value: object) -> str:
    """A new execution of ``flow`` holding ``value`` under ``name``; returns its id."""
    with repo.writer() as w:
        exec_id = w.create_execution(flow)
        stored = w.put_value(value)
        w.add_entry(
            exec_id,
            Entry(
                artifact_id=new_uuid(),
                name=name,
                kind="manual",
                artifact_type="blob",
                object_id=stored.object_id,
                size=stored.size,
                serializer=stored.serializer,
                created_at=dt.datetime.now(dt.UTC),
            ),
        )
    return exec_id


def _complete(run: Run, words: str) -> list[str]:
    cword = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    result = run(env={"_KITARU_STORE_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": cword})
    assert result.exit_code == 0
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line]


# --- set -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("3.5", 3.5),
        ("true", True),
        ("null", None),
        ('{"tone": "brief", "n": [1, 2]}', {"tone": "brief", "n": [1, 2]}),
        ('"42"', "42"),
        ("plain words", "plain words"),
        ("{not json", "{not json"),
        ("NaN", "NaN"),
        ("", ""),
    ],
)
def test_set_parses_json_else_takes_text(run: Run, repo: Repository, text: str, value: object) -> None:
    result = run("memory", "set", "k", text)
    assert result.exit_code == 0, result.output
    assert repo.memory.get(NS, "k") == value


def test_set_output_version_and_unchanged_values(run: Run, repo: Repository) -> None:
    first = run("memory", "set", "user/42/prefs", '{"tone": "brief"}')
    assert first.exit_code == 0
    v1 = repo.memory.version(NS, "user/42/prefs")
    assert first.stdout == (
        f"set 'user/42/prefs' in namespace 'default': version 1, object {v1.object_id[:12]} ({v1.size} B)\n"
    )
    again = run("memory", "set", "user/42/prefs", '{"tone": "brief"}')
    assert "version 2" in again.stdout
    assert again.stdout.rstrip().endswith("(unchanged value: no new bytes stored)")
    assert v1.written_by.origin == "cli"
    doc = json.loads(run("memory", "set", "n", "7", "--string", "--json").stdout)
    assert (doc["key"], doc["version"], doc["op"], doc["serializer"]) == ("n", 1, "set", "str")
    assert doc["written_by"]["origin"] == "cli"
    assert repo.memory.get(NS, "n") == "7"


def test_set_in_each_scope(run: Run, repo: Repository) -> None:
    exec_id = add_entry(repo, "research", "x", 1)
    assert run("memory", "set", "k", "1", "--namespace", "team").exit_code == 0
    assert run("memory", "set", "k", "2", "--flow", "research").exit_code == 0
    assert run("memory", "set", "k", "3", "--exec", exec_id[:6]).exit_code == 0
    assert repo.memory.get(make_scope("namespace", "team"), "k") == 1
    assert repo.memory.get(make_scope("flow", "research"), "k") == 2
    assert repo.memory.get(make_scope("execution", exec_id), "k") == 3
    missing = run("memory", "set", "k", "4", "--exec", "0" * 32)
    assert missing.exit_code == 1
    assert missing.stderr.startswith(f"error: no execution '{'0' * 32}'")


def test_scope_options_are_exclusive(run: Run, repo: Repository) -> None:
    result = run("memory", "ls", "--namespace", "a", "--flow", "b")
    assert result.exit_code == 2
    assert "give at most one of --namespace, --flow and --exec" in result.stderr
    result = run("memory", "ls", "--all", "--flow", "b")
    assert result.exit_code == 2


# --- ls --------------------------------------------------------------------------------------


def test_ls_lists_live_keys(run: Run, repo: Repository) -> None:
    empty = run("memory", "ls")
    assert (empty.exit_code, empty.stdout, empty.stderr) == (0, "", "no memory keys in namespace 'default'\n")
    for key in ("b", "a/1", "a/2"):
        run("memory", "set", key, "1")
    run("memory", "rm", "b")
    run("memory", "set", "other", "1", "--flow", "f")
    lines = run("memory", "ls").stdout.splitlines()
    assert lines[0].split() == ["KEY", "VERSION", "SIZE", "TYPE", "UPDATED", "BY"]
    assert [line.split()[0] for line in lines[1:]] == ["a/1", "a/2"]
    assert lines[1].split()[:5] == ["a/1", "1", "2", "B", "msgpack"]
    assert lines[1].endswith(f"{current_user()} (cli)")
    assert [line.split()[0] for line in run("memory", "ls", "--prefix", "a/2").stdout.splitlines()[1:]] == [
        "a/2"
    ]
    assert run("memory", "ls", "--flow", "f").stdout.splitlines()[1].split()[0] == "other"
    every = run("memory", "ls", "--all").stdout.splitlines()
    assert every[0].split()[:2] == ["SCOPE", "KEY"]
    assert [line.split("  ")[0] for line in every[1:]] == [
        "namespace 'default'",
        "namespace 'default'",
        "flow 'f'",
    ]
    doc = json.loads(run("memory", "ls", "--json").stdout)
    assert [d["key"] for d in doc] == ["a/1", "a/2"]
    assert set(doc[0]) == {
        "scope",
        "scope_name",
        "key",
        "version",
        "updated_at",
        "updated_by",
        "object_id",
        "size",
        "serializer",
        "redacted",
    }
    assert json.loads(run("memory", "ls", "--json", "--namespace", "none").stdout) == []


# --- get -------------------------------------------------------------------------------------


def test_get_prints_values_like_cat(run: Run, repo: Repository) -> None:
    repo.memory.set(NS, "text", "two\nlines")
    repo.memory.set(NS, "data", {"a": [1, 2]})
    repo.memory.set(NS, "raw", bytes(range(256)))
    assert run("memory", "get", "text").stdout == "two\nlines"
    assert json.loads(run("memory", "get", "data").stdout) == {"a": [1, 2]}
    assert run("memory", "get", "raw").stdout_bytes == bytes(range(256))
    doc = json.loads(run("memory", "get", "raw", "--json").stdout)
    assert (doc["serializer"], doc["encoding"], doc["version"]) == ("bytes", "base64", 1)


def test_get_on_a_terminal(run: Run, repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    repo.memory.set(NS, "text", "no newline")
    repo.memory.set(NS, "raw", bytes(300))
    monkeypatch.setattr(output, "isatty", lambda stream: True)
    assert run("memory", "get", "text").stdout == "no newline\n"
    shown = run("memory", "get", "raw").stdout
    assert shown.startswith("300 bytes (300 B), object ")
    assert "... 44 more bytes" in shown


def test_get_versions_and_errors(run: Run, repo: Repository) -> None:
    repo.memory.set(NS, "k", "one")
    repo.memory.set(NS, "k", "two")
    assert run("memory", "get", "k").stdout == "two"
    assert run("memory", "get", "k", "--version", "1").stdout == "one"
    doc = json.loads(run("memory", "get", "k", "--version", "1", "--json").stdout)
    assert (doc["key"], doc["version"], doc["value"], doc["scope"]) == ("k", 1, "one", "namespace")
    assert run("memory", "get", "k", "--version", "0").exit_code == 2
    missing = run("memory", "get", "kk")
    assert missing.exit_code == 1
    assert missing.stderr == ("error: no memory key 'kk' in namespace 'default' (similar keys here: 'k')\n")
    err = json.loads(run("memory", "get", "kk", "--json").stdout)
    assert (err["error"], err["key"], err["scope"], err["similar"]) == (
        "MemoryKeyNotFoundError",
        "kk",
        "namespace",
        ["k"],
    )
    run("memory", "rm", "k")
    gone = run("memory", "get", "k")
    assert gone.exit_code == 1 and "was deleted at version 3" in gone.stderr
    invalid = run("memory", "get", "a//b")
    assert invalid.exit_code == 1 and "has an empty level" in invalid.stderr


def test_get_refuses_pickles_without_the_flag(run: Run, repo: Repository) -> None:
    repo.memory.set(NS, "obj", Path("."), allow_pickle=True)  # a Path is stored with pickle
    refused = run("memory", "get", "obj")
    assert refused.exit_code == 1 and "stored with pickle" in refused.stderr
    assert run("memory", "get", "obj", "--allow-pickle").exit_code == 0


# --- history, rm, redact ---------------------------------------------------------------------


def test_history_shows_sets_deletions_and_redactions(run: Run, repo: Repository) -> None:
    run("memory", "set", "k", "secret")
    run("memory", "set", "k", "public")
    run("memory", "rm", "k")
    run("memory", "redact", "k", "1", "--reason", "leaked credential")
    lines = run("memory", "history", "k").stdout.splitlines()
    assert lines[0].split() == ["VERSION", "OP", "SIZE", "OBJECT", "WRITTEN", "BY"]
    assert lines[1].split()[:3] == ["1", "set", "(redacted)"]
    assert lines[2].startswith("  redacted ") and lines[2].endswith(": leaked credential (bytes erased)")
    assert f" by {current_user()} (cli): " in lines[2]
    assert lines[3].split()[:2] == ["2", "set"]
    assert lines[4].split()[:4] == ["3", "delete", "-", "-"]
    doc = json.loads(run("memory", "history", "k", "--json").stdout)
    assert [(d["version"], d["op"], d["redacted"]) for d in doc] == [
        (1, "set", True),
        (2, "set", False),
        (3, "delete", False),
    ]
    assert doc[0]["redaction_reason"] == "leaked credential" and doc[0]["object_id"] is None
    assert doc[0]["redacted_by"]["origin"] == "cli" and doc[0]["bytes_erased"] is True
    missing = run("memory", "history", "nope")
    assert missing.exit_code == 1 and "no memory key 'nope'" in missing.stderr


def test_rm(run: Run, repo: Repository) -> None:
    run("memory", "set", "k", "1")
    result = run("memory", "rm", "k")
    assert result.stdout == "deleted 'k' in namespace 'default' (version 2)\n"
    again = run("memory", "rm", "k", "--json")
    assert again.exit_code == 1
    assert json.loads(again.stdout)["deleted_version"] == 2
    assert run("memory", "ls", "--json").stdout.strip() == "[]"
    assert run("memory", "get", "k", "--version", "1").stdout == "1\n"  # 1 was stored as a number


def test_redact_erases_or_reports_what_holds_the_bytes(run: Run, repo: Repository) -> None:
    v = repo.memory.set(NS, "a", "shared value")
    exec_id = add_entry(repo, "f", "answer", "shared value")
    kept = run("memory", "redact", "a", "1", "--reason", "r")
    assert kept.exit_code == 0
    assert kept.stdout == (
        "redacted version 1 of 'a' in namespace 'default'; the bytes stay in the store,"
        " still referenced by:\n"
        f"  execution {exec_id} entry 'answer'\n"
    )
    assert v.object_id is not None and repo.has_object(v.object_id)
    w = repo.memory.set(NS, "b", "only here")
    erased = run("memory", "redact", "b", "1", "--reason", "r")
    assert erased.stdout.startswith(
        "redacted version 1 of 'b' in namespace 'default': its bytes were deleted"
    )
    assert w.object_id is not None and not repo.has_object(w.object_id)
    doc = json.loads(run("memory", "redact", "a", "1", "--reason", "again", "--json").stdout)
    assert doc["error"] == "MemoryRedactedError"
    assert run("fsck").exit_code == 0


def test_a_redaction_whose_erasure_is_queued_says_so_until_gc_erases(
    run: Run, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kitaru_store import gc

    repo.memory.set(NS, "k", "secret")
    with monkeypatch.context() as m:
        m.setattr(gc, "erase_queued", lambda repo: [])  # as if the redacting process died
        redacted = run("memory", "redact", "k", "1", "--reason", "leak")
    assert redacted.stdout == (
        "redacted version 1 of 'k' in namespace 'default'; its bytes are queued for erasure by the next gc\n"
    )
    lines = run("memory", "history", "k").stdout.splitlines()
    assert lines[2].endswith(": leak (erasure queued: the next gc deletes the bytes)")
    assert "queued erasures of redacted values: 1 waiting\n" in run("gc", "--dry-run").stdout
    assert "queued erasures of redacted values: 1 done, removing 1 objects," in run("gc").stdout
    assert run("memory", "history", "k").stdout.splitlines()[2].endswith(": leak (bytes erased)")
    assert "queued" not in run("gc").stdout


def test_redact_needs_a_reason(run: Run, repo: Repository) -> None:
    repo.memory.set(NS, "k", 1)
    assert run("memory", "redact", "k", "1").exit_code == 2
    blank = run("memory", "redact", "k", "1", "--reason", "  ")
    assert blank.exit_code == 1 and "a redaction needs a reason" in blank.stderr
    assert not repo.memory.history(NS, "k")[0].redacted


# --- the group -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["ls"],
        ["get", "k"],
        ["history", "k"],
        ["set", "k", "1"],
        ["rm", "k"],
        ["redact", "k", "1", "--reason", "r"],
    ],
    ids=lambda a: a[0],
)
def test_missing_store_is_an_error_not_a_new_store(run: Run, store_path: Path, args: list[str]) -> None:
    result = run("memory", *args)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: no kitaru store at {store_path}")
    assert not store_path.exists()


def test_help_and_completion(run: Run, repo: Repository) -> None:
    top = run("--help").stdout
    assert "memory" in top
    group = run("memory", "--help").stdout
    for command in ("ls", "get", "history", "set", "rm", "redact"):
        assert f"  {command} " in group
    repo.memory.set(NS, "user/1", 1)
    repo.memory.set(NS, "user/2", 1)
    repo.memory.set(make_scope("flow", "f"), "flow-key", 1)
    assert _complete(run, "kitaru-store memory get us") == ["user/1", "user/2"]
    assert _complete(run, "kitaru-store memory history --flow f ") == ["flow-key"]


def test_memory_help_in_a_process_imports_no_storage_libraries() -> None:
    code = (
        "import sys\n"
        "from kitaru_store.cli import main\n"
        "try:\n    main(['memory', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('lmdb', 'msgspec', 'zstandard', 'blake3') if m in sys.modules))\n"
    )
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip().splitlines()[-1] == "[]", probe.stderr
