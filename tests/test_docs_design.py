"""docs/design.md's example reader (section 17) reads what kitaru writes, without kitaru.

The reader and the flow are taken from the document by their tags; the reader runs as a
subprocess in which kitaru cannot be imported, and everything it prints is held to what the kitaru
API reports. A format change the document does not follow fails here.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from blake3 import blake3

import kitaru
from kitaru import KitaruClient, checkpoint, flow
from kitaru_store import Repository, layout

DESIGN = Path(__file__).resolve().parents[1] / "docs" / "design.md"
FORMAT1_STORE = Path(__file__).resolve().parent / "data" / "store-format1"
# The reader may use these and nothing else (the standard library's few, and five libraries).
ALLOWED_IMPORTS = {"datetime", "json", "os", "struct", "sys", "lmdb", "msgspec", "zstandard", "blake3"}
# Runs the reader as `python reader.py ARGS...`, with kitaru and kitaru_store made unimportable.
RUNNER = (
    "import runpy, sys; sys.modules.update(kitaru=None, kitaru_store=None); "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def block(tag: str) -> str:
    """The one fenced block of design.md opened with ```<tag>."""
    found = re.findall(rf"^```{re.escape(tag)}\n(.*?)^```$", DESIGN.read_text(), re.S | re.M)
    assert len(found) == 1, f"design.md has {len(found)} blocks tagged {tag!r}"
    return str(found[0])


@pytest.fixture
def reader(tmp_path: Path) -> Path:
    path = tmp_path / "reader.py"
    path.write_text(block("python example-reader"))
    return path


def parse(output: str) -> list[tuple[str, Any]]:
    """The reader's output: a word, a space, then one JSON value (which may span lines)."""
    found: list[tuple[str, Any]] = []
    decoder = json.JSONDecoder()
    pos = 0
    while pos < len(output):
        word, _, _ = output[pos:].partition(" ")
        value, end = decoder.raw_decode(output, pos + len(word) + 1)
        found.append((word, value))
        pos = end + 1  # the newline
    return found


def run_reader(reader: Path, store: Path, *args: str) -> list[tuple[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(reader), str(store), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=reader.parent,
    )
    assert done.returncode == 0, done.stderr
    return parse(done.stdout)


def lines(found: list[tuple[str, Any]], word: str) -> list[Any]:
    return [value for w, value in found if w == word]


def shown(value: Any) -> Any:
    """A value as the reader shows it: text and bytes over 80 long by length and BLAKE3."""
    if isinstance(value, str | bytes) and len(value) > 80:
        raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        return {"len": len(value), "blake3": blake3(raw).hexdigest()}
    return json.loads(json.dumps(value, default=bytes.hex))


def iso(value: Any) -> Any:
    return value.isoformat() if value is not None else None


# --- a store written by the flow of design.md, and more -------------------------------------------


def run_doc_flow() -> str:
    """Run design.md's example flow on the test's store; the id of its execution."""
    code = compile(block("python example-flow"), "design.md[example-flow]", "exec")
    exec(code, {"__name__": "design_flow"})
    latest = KitaruClient().executions.latest()
    assert latest is not None
    return latest.exec_id


@checkpoint
def _ask() -> str:
    return "asked"


@flow
def design_reader_waits() -> bool:
    _ask()
    return bool(kitaru.wait(name="approve", question="ship it?", schema=bool))


def test_the_example_reader_imports_only_what_the_document_says(reader: Path) -> None:
    imported: set[str] = set()
    for node in ast.walk(ast.parse(reader.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported == ALLOWED_IMPORTS


def test_the_example_reader_prints_what_the_kitaru_api_reports(kitaru_temp_store: Path, reader: Path) -> None:
    first = run_doc_flow()
    client = KitaruClient()
    replay = client.executions.replay(first, from_="write_report")
    replay.wait()
    waiting = design_reader_waits.run()
    answered = design_reader_waits.run()  # waiting too, its wait answered (a wait record with a value)
    client.executions.input(answered.exec_id, wait="approve", value=True)
    assert (waiting.status, answered.status) == ("waiting", "waiting")

    for exec_id in (first, replay.exec_id, waiting.exec_id, answered.exec_id):
        execution = client.executions.get(exec_id)
        manifest = client.repository.get_execution(exec_id)
        found = run_reader(reader, kitaru_temp_store, exec_id[:8])
        [summary] = lines(found, "summary")
        [api_summary] = [s for s in client.executions.list() if s.exec_id == exec_id]
        assert summary == {
            "exec_id": exec_id,
            "flow_name": api_summary.flow_name,
            "status": api_summary.status,
            "started_at": iso(api_summary.started_at),
            "ended_at": iso(api_summary.ended_at),
            "artifact_count": api_summary.artifact_count,
            "checkpoint_count": api_summary.checkpoint_count,
            "replay_of": api_summary.replay_of,
        }
        [head] = lines(found, "head")
        assert head["format_version"] == 2
        assert {k: head[k] for k in ("exec_id", "flow_name", "status", "replay_of", "result_object_id")} == {
            "exec_id": exec_id,
            "flow_name": execution.flow_name,
            "status": execution.status,
            "replay_of": execution.replay_of,
            "result_object_id": execution.result_object_id,
        }
        assert (head["started_at"], head["ended_at"]) == (iso(execution.started_at), iso(execution.ended_at))
        assert head["input_object_id"] == manifest.input_object_id
        assert head["metadata"] == json.loads(msgspec.json.encode(manifest.metadata))
        assert (head["n_entries"], head["n_checkpoints"], head["n_waits"]) == (
            len(manifest.entries),
            len(manifest.checkpoints),
            len(manifest.waits),
        )
        assert lines(found, "checkpoint") == [
            {"invocation_id": c.invocation_id, "status": c.status, "output_object_id": c.output_object_id}
            for c in execution.checkpoints
        ]
        assert lines(found, "entry") == [
            {
                "name": a.name,
                "kind": a.kind,
                "artifact_id": a.artifact_id,
                "object_id": a.object_id,
                "serializer": a.serializer,
                "size": a.size,
            }
            for a in execution.artifacts
        ]
        assert lines(found, "wait") == [
            {"name": w.name, "status": w.status, "value_object_id": w.value_object_id} for w in manifest.waits
        ]
        for artifact in execution.artifacts:
            [value] = lines(run_reader(reader, kitaru_temp_store, exec_id[:8], artifact.name), "value")
            assert value["name"] == artifact.name
            assert value["value"] == shown(artifact.load()), artifact.name

    records = {
        tuple(v["record"])
        for a in client.executions.get(first).artifacts
        for v in lines(run_reader(reader, kitaru_temp_store, first[:8], a.name), "value")
    }
    assert records == {(1, 0, 0), (1, 0, 1), (1, 1, 0)}  # raw, zstd and a chunk index: 5.1, 5.4

    newest = run_reader(reader, kitaru_temp_store)  # no id: the newest execution
    assert lines(newest, "summary")[0]["exec_id"] == answered.exec_id
    assert lines(newest, "wait")[0]["value_object_id"] is not None


def test_the_output_shown_is_the_shape_the_reader_prints(kitaru_temp_store: Path, reader: Path) -> None:
    exec_id = run_doc_flow()
    command, _, doc_output = block("text example-output").partition("\n")
    args = command.split()
    assert args[:3] == ["$", "python", "reader.py"], command
    doc = parse(doc_output)
    real = run_reader(reader, kitaru_temp_store, exec_id[: len(args[4])], *args[5:])

    def shape(found: list[tuple[str, Any]]) -> list[tuple[str, list[str]]]:
        return [(word, list(value)) for word, value in found]

    assert shape(doc) == shape(real)
    assert [v for w, v in doc if w == "value"] == [v for w, v in real if w == "value"]  # the same content
    objects = [[v["object_id"] for w, v in found if w == "entry"] for found in (doc, real)]
    assert objects[0] == objects[1]  # the values' ids: the same on every run


def test_the_example_reader_reads_a_store_of_manifest_format_1(tmp_path: Path, reader: Path) -> None:
    store = tmp_path / "store-format1"
    (store / "db").mkdir(parents=True)
    (store / "locks").mkdir()
    shutil.copy(FORMAT1_STORE / "config", store / "config")
    shutil.copy(FORMAT1_STORE / "data.mdb", store / "db" / "data.mdb")
    expected = json.loads((FORMAT1_STORE / "expected.json").read_text())
    for exec_id, manifest in expected.items():
        found = run_reader(reader, store, exec_id)
        [head] = lines(found, "head")
        assert head["format_version"] == 1
        for field in ("exec_id", "flow_name", "status", "metadata", "result_object_id", "replay_of"):
            assert head[field] == manifest.get(field), field
        [summary] = lines(found, "summary")
        assert (summary["exec_id"], summary["status"], summary["flow_name"]) == (
            exec_id,
            manifest["status"],
            manifest["flow_name"],
        )
        assert (summary["artifact_count"], summary["checkpoint_count"]) == (
            len(manifest.get("entries", [])),
            len(manifest.get("checkpoints", [])),
        )
        assert [e["object_id"] for e in lines(found, "entry")] == [
            e["object_id"] for e in manifest.get("entries", [])
        ]
        assert [c["invocation_id"] for c in lines(found, "checkpoint")] == [
            c["invocation_id"] for c in manifest.get("checkpoints", [])
        ]
        assert [w["name"] for w in lines(found, "wait")] == [w["name"] for w in manifest.get("waits", [])]
    repo = Repository.open(store, readonly=True)
    try:
        for exec_id, manifest in expected.items():
            for entry in manifest.get("entries", [])[:1]:
                [value] = lines(run_reader(reader, store, exec_id, entry["name"]), "value")
                assert value["value"] == shown(repo.get_value(entry["object_id"]))
    finally:
        repo.close()


def test_the_example_reader_refuses_a_damaged_part_record(kitaru_temp_store: Path, reader: Path) -> None:
    exec_id = run_doc_flow()
    repo = Repository.open(kitaru_temp_store)
    key = layout.part_key(layout.uuid_key(exec_id), layout.PART_ENTRY, 0)

    def flip(wt: Any) -> None:
        record = bytearray(wt.get(layout.PARTS, key))
        record[len(record) // 2] ^= 0x01
        wt.put(layout.PARTS, key, bytes(record))

    repo.kv.update(flip)
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(reader), str(kitaru_temp_store), exec_id],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "entries record 0" in done.stderr and "checksum" in done.stderr
