"""cat, pin, unpin and pins, and the errors of name and id resolution."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from cli_demo import Demo, Run

from kitaru_store import Repository
from kitaru_store.cli import output
from kitaru_store.ids import new_uuid
from kitaru_store.manifests import Entry


class Opaque:
    """Not data: storable only with pickle."""

    def __init__(self, x: int) -> None:
        self.x = x


def _add(repo: Repository, exec_id: str, value: object, name: str, **kw: object) -> str:
    with repo.writer() as w:
        stored = w.put_value(value, allow_pickle=True)
        w.add_entry(
            exec_id,
            Entry(
                artifact_id=new_uuid(),
                name=name,
                kind=kw.pop("kind", "manual"),  # type: ignore[arg-type]
                artifact_type="blob",
                object_id=stored.object_id,
                size=stored.size,
                serializer=stored.serializer,
                created_at=dt.datetime.now(dt.UTC),
                **kw,  # type: ignore[arg-type]
            ),
        )
    return stored.object_id


# --- values ----------------------------------------------------------------------------------


def test_cat_text_as_it_is(run: Run, demo: Demo) -> None:
    result = run("cat", f"{demo.research[:5]}:notes")
    assert result.exit_code == 0
    assert result.stdout == "Looked at two pages.\nBoth agree.\n"
    assert run("cat", f"{demo.research}:question").stdout == "What is content-addressed storage?"


def test_cat_structures_as_pretty_json(run: Run, demo: Demo) -> None:
    result = run("cat", f"{demo.research}:summarize")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "answer": "Storage keyed by a hash of the content.",
        "sources": 2,
        "score": 0.92,
    }
    assert result.stdout.startswith('{\n  "answer"')
    # a checkpoint output answers to its checkpoint name and to its invocation id
    assert json.loads(run("cat", f"{demo.research}:fetch").stdout)[0] == "https://example.org/cas"


def test_cat_by_object_prefix(run: Run, demo: Demo) -> None:
    assert run("cat", demo.objects["notes"][:4]).stdout == "Looked at two pages.\nBoth agree.\n"
    assert run("cat", demo.objects["notes"].upper()).stdout.startswith("Looked")


def test_cat_bytes_raw_into_a_pipe(run: Run, demo: Demo) -> None:
    result = run("cat", f"{demo.research}:raw")
    assert result.exit_code == 0
    assert result.stdout_bytes == bytes(range(256)) * 2


def test_cat_bytes_on_a_terminal_is_a_hexdump(run: Run, demo: Demo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output, "isatty", lambda stream: True)
    out = run("cat", f"{demo.research}:raw").stdout
    lines = out.splitlines()
    assert lines[0] == f"512 bytes (512 B), object {demo.objects['raw'][:12]}"
    assert lines[1] == "00000000  00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  |................|"
    assert lines[3].endswith("| !\"#$%&'()*+,-./|")
    assert len(lines) == 1 + 16 + 1
    assert "256 more bytes" in lines[-1]


def test_cat_text_on_a_terminal_ends_with_a_newline(
    run: Run, demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output, "isatty", lambda stream: True)
    assert run("cat", f"{demo.research}:question").stdout == "What is content-addressed storage?\n"


def test_cat_json(run: Run, demo: Demo) -> None:
    doc = json.loads(run("cat", f"{demo.research}:summarize", "--json").stdout)
    assert doc["exec_id"] == demo.research
    assert doc["name"] == "summarize"
    assert doc["object_id"] == demo.objects["summary"]
    assert doc["serializer"] == "msgpack"
    assert doc["value"]["sources"] == 2
    raw = json.loads(run("cat", demo.objects["raw"][:8], "--json").stdout)
    assert raw["encoding"] == "base64"
    assert base64.b64decode(raw["value"]) == bytes(range(256)) * 2
    assert "exec_id" not in raw
    text = json.loads(run("cat", f"{demo.research}:notes", "--json").stdout)
    assert text["value"] == "Looked at two pages.\nBoth agree.\n"


def test_cat_meta(run: Run, demo: Demo) -> None:
    result = run("cat", f"{demo.research}:notes", "--meta")
    assert result.exit_code == 0
    out = result.stdout
    for line in (
        f"exec id:        {demo.research}",
        "kind:           manual",
        "artifact type:  context",
        "checkpoint:     summarize",
        "invocation id:  summarize",
        f"object id:      {demo.objects['notes']}",
        "size:           34 B (34 bytes)",
        "serializer:     str",
        "tags:           draft",
        'metadata:       {"reviewed": false}',
        "inputs:         -",
    ):
        assert line in out.splitlines(), line
    meta = json.loads(run("cat", f"{demo.research}:summarize", "--meta", "--json").stdout)
    assert meta["kind"] == "checkpoint_output"
    assert meta["inputs"] == [demo.objects["pages"]]
    assert meta["created_at"] == "2025-03-14T09:27:00Z"
    assert set(meta) >= {"artifact_id", "artifact_type", "checkpoint", "invocation_id", "tags", "metadata"}


def test_cat_meta_of_an_object(run: Run, demo: Demo) -> None:
    meta = json.loads(run("cat", demo.objects["raw"][:6], "--meta", "--json").stdout)
    assert meta["object_id"] == demo.objects["raw"]
    assert meta["size"] == 513
    assert meta["serializer"] == "bytes"
    assert meta["codec"] in ("raw", "zstd")
    assert "stored size:" in run("cat", demo.objects["raw"][:6], "--meta").stdout


def test_cat_refuses_pickle(run: Run, demo: Demo, repo: Repository) -> None:
    _add(repo, demo.research, Opaque(7), "opaque")
    result = run("cat", f"{demo.research}:opaque")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: this value was stored with pickle")
    assert "pass --allow-pickle only if you trust the store" in result.stderr
    doc = json.loads(run("cat", f"{demo.research}:opaque", "--json").stdout)
    assert doc["error"] == "PickleNotAllowedError"
    assert doc["exec_id"] == demo.research and doc["name"] == "opaque"
    # the metadata needs no unpickling; --allow-pickle loads it (shown by repr)
    assert run("cat", f"{demo.research}:opaque", "--meta").exit_code == 0
    allowed = run("cat", f"{demo.research}:opaque", "--allow-pickle")
    assert allowed.exit_code == 0
    assert "Opaque object" in allowed.stdout


def test_cat_ignores_the_pickle_environment_setting(
    run: Run, demo: Demo, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    _add(repo, demo.research, Opaque(7), "opaque")
    monkeypatch.setenv("KITARU_ALLOW_PICKLE", "1")
    assert run("cat", f"{demo.research}:opaque").exit_code == 1


# --- resolution errors -----------------------------------------------------------------------


def test_unknown_execution(run: Run, demo: Demo) -> None:
    result = run("cat", "abcdef12:notes")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no execution 'abcdef12' in the store")
    assert "kitaru-store log" in result.stderr
    assert run("show", "abcdef12").exit_code == 1


def test_ambiguous_execution_prefix_lists_candidates(run: Run, repo: Repository) -> None:
    a = repo.create_execution("one", exec_id="abcd" + "1" * 28)
    b = repo.create_execution("two", exec_id="abcd" + "2" * 28)
    result = run("show", "abcd")
    assert result.exit_code == 1
    assert "execution id prefix 'abcd' is ambiguous" in result.stderr
    assert a in result.stderr and b in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one line
    doc = json.loads(run("show", "abcd", "--json").stdout)
    assert doc["error"] == "AmbiguousIdError"
    assert doc["candidates"] == [a, b]
    assert run("show", "abcd1").exit_code == 0


def test_ambiguous_object_prefix_lists_candidates(run: Run, repo: Repository) -> None:
    seen: dict[str, str] = {}
    with repo.writer() as w:
        for i in range(5000):
            oid = w.put_value(i).object_id
            if oid[:4] in seen:
                clash = [seen[oid[:4]], oid]
                break
            seen[oid[:4]] = oid
    result = run("cat", clash[0][:4])
    assert result.exit_code == 1
    assert "object id prefix" in result.stderr and "is ambiguous" in result.stderr
    assert clash[0] in result.stderr and clash[1] in result.stderr
    assert run("cat", clash[0][:12]).exit_code == 0


def test_unknown_object(run: Run, demo: Demo) -> None:
    result = run("cat", "0000000000")
    assert result.exit_code == 1
    assert "object 0000000000 is not in the store" in result.stderr


def test_bad_ids(run: Run, demo: Demo) -> None:
    assert "too short" in run("cat", "abc").stderr
    assert "is not a hex id" in run("cat", "xyz1").stderr
    assert "too short" in run("cat", "abc:notes").stderr


def test_unknown_name_lists_the_names(run: Run, demo: Demo) -> None:
    result = run("cat", f"{demo.research}:nope")
    assert result.exit_code == 1
    assert "no checkpoint or artifact named 'nope'" in result.stderr
    assert "names that exist: fetch, notes, question, raw, summarize, summarize.llm" in result.stderr
    doc = json.loads(run("cat", f"{demo.research}:nope", "--json").stdout)
    assert doc["error"] == "ArtifactNotFoundError"
    assert doc["available"] == ["fetch", "notes", "question", "raw", "summarize", "summarize.llm"]
    # "EXEC:" alone lists them too
    assert "names that exist: fetch" in run("cat", f"{demo.research}:").stderr


def test_ambiguous_name_lists_the_candidates(run: Run, demo: Demo, repo: Repository) -> None:
    # the same artifact name saved by two checkpoint invocations
    first = _add(repo, demo.replay, "one", "draft", checkpoint="write", invocation_id="write")
    second = _add(repo, demo.replay, "two", "draft", checkpoint="write", invocation_id="write_2")
    result = run("cat", f"{demo.replay}:draft")
    assert result.exit_code == 1
    assert "name 'draft' is ambiguous" in result.stderr
    assert "2 matches" in result.stderr
    assert first[:12] in result.stderr and second[:12] in result.stderr
    doc = json.loads(run("cat", f"{demo.replay}:draft", "--json").stdout)
    assert doc["error"] == "AmbiguousNameError"
    assert {c["object_id"] for c in doc["candidates"]} == {first, second}
    assert run("cat", second[:12]).stdout == "two"


def test_names_may_contain_colons(run: Run, demo: Demo, repo: Repository) -> None:
    _add(repo, demo.research, "with colon", "a:b")
    assert run("cat", f"{demo.research}:a:b").stdout == "with colon"


# --- pins ------------------------------------------------------------------------------------


def test_pin_unpin_pins(run: Run, demo: Demo, repo: Repository) -> None:
    assert run("pins").stdout == ""
    result = run("pin", "keep", f"{demo.research}:summarize")
    assert result.exit_code == 0
    assert result.stdout == f"pinned keep -> {demo.objects['summary']}\n"
    assert run("pin", "raw", demo.objects["raw"][:6]).exit_code == 0
    assert repo.pins() == {"keep": demo.objects["summary"], "raw": demo.objects["raw"]}
    assert run("pins").stdout.splitlines() == [
        f"keep  {demo.objects['summary']}",
        f"raw   {demo.objects['raw']}",
    ]
    assert json.loads(run("pins", "--json").stdout) == repo.pins()
    result = run("unpin", "raw")
    assert result.exit_code == 0 and "unpinned raw" in result.stdout
    assert repo.pins() == {"keep": demo.objects["summary"]}


def test_unpin_unknown_and_bad_pin_names(run: Run, demo: Demo) -> None:
    result = run("unpin", "nope")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no pin named 'nope'")
    assert json.loads(run("unpin", "nope", "--json").stdout)["error"] == "NotFoundError"
    bad = run("pin", "a/b", f"{demo.research}:notes")
    assert bad.exit_code == 1
    assert "pin name 'a/b' contains a path separator" in bad.stderr
