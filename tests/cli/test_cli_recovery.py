"""The recovery and wait commands: retry, resume, input, abort-wait and replay.

They run the flow in the CLI's process (the flows below are registered there by importing this
module); a flow defined in a script run as ``python script.py`` is found from another process by
its script's path. Every bad input is a typed error with exit code 2 and leaves the store as it
was, byte for byte.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from cli_demo import Run

import kitaru
from kitaru import KitaruClient, checkpoint, flow
from kitaru.cli import recovery
from kitaru_store import Repository
from kitaru_store.cli import app
from kitaru_store.layout import DATABASES

CALLS: list[str] = []
FAIL = {"rc_second": False}


@checkpoint(name="rc_first")
def first(x: int) -> int:
    CALLS.append("rc_first")
    return x + 1


@checkpoint(name="rc_second")
def second(y: int) -> int:
    CALLS.append("rc_second")
    if FAIL["rc_second"]:
        raise RuntimeError("rc_second failed\nsecond line of the message")
    return y * 10


@checkpoint(name="rc_third")
def third(z: int) -> str:
    CALLS.append("rc_third")
    return f"z={z}"


@flow(name="rc_pipeline")
def pipeline(x: int) -> Any:
    return third(second(first(x)))


@checkpoint(name="rc_draft")
def draft(topic: str) -> str:
    CALLS.append("rc_draft")
    return f"draft about {topic}"


@checkpoint(name="rc_publish")
def publish(text: str, approved: bool) -> str:
    CALLS.append("rc_publish")
    return f"published: {text}" if approved else "shelved"


@flow(name="rc_approval")
def approval(topic: str) -> Any:
    text = draft(topic)
    approved = kitaru.wait(name="approve", question="Publish it?", schema=bool)
    return publish(text, approved)


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    FAIL["rc_second"] = False


def _failed_run(x: int = 4) -> str:
    FAIL["rc_second"] = True
    handle = pipeline.run(x)
    FAIL["rc_second"] = False
    assert handle.status == "failed"
    CALLS.clear()
    return handle.exec_id


def _waiting_run() -> str:
    handle = approval.run("owls")
    assert handle.status == "waiting"
    CALLS.clear()
    return handle.exec_id


def snapshot(store: Path) -> dict[str, dict[bytes, bytes]]:
    """Every key and value of every sub-database of the store."""
    repo = Repository.open(store, create=False, readonly=True)
    with repo.kv.read() as rt:
        return {name.decode(): dict(rt.items(name)) for name in DATABASES}


# --- retry -----------------------------------------------------------------------------------


def test_retry_reuses_the_completed_checkpoints_and_prints_the_outcome(run: Run) -> None:
    exec_id = _failed_run()
    result = run("retry", exec_id[:8])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"completed {exec_id} (rc_pipeline): result 'z=50'\n"
    assert CALLS == ["rc_second", "rc_third"]  # rc_first was reused from its recorded output
    execution = KitaruClient().executions.get(exec_id)
    assert execution.status == "completed"
    assert [c.status for c in execution.checkpoints] == ["completed"] * 3


def test_retry_with_json_prints_the_execution(run: Run) -> None:
    exec_id = _failed_run()
    result = run("retry", exec_id, "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["exec_id"] == exec_id and doc["status"] == "completed" and doc["failure"] is None
    assert doc["metadata"]["kitaru.module"] == __name__
    assert doc["metadata"]["kitaru.previous_failures"][0]["message"].startswith("rc_second failed")
    assert doc.keys() == json.loads(run("show", exec_id, "--json").stdout).keys()


def test_a_retry_that_fails_again_exits_1_after_printing_the_outcome(run: Run) -> None:
    exec_id = _failed_run()
    FAIL["rc_second"] = True
    result = run("retry", exec_id)
    assert result.exit_code == 1
    assert result.stdout == (
        f"failed {exec_id} (rc_pipeline): RuntimeError: rc_second failed (in checkpoint rc_second)\n"
    )
    assert result.stderr == ""
    as_json = run("retry", exec_id, "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["failure"]["checkpoint"] == "rc_second"


def test_retry_runs_on_the_store_given_with_store_not_the_environment(
    run: Run, store_path: Path, tmp_path: Path
) -> None:
    exec_id = _failed_run()
    elsewhere = tmp_path / "elsewhere"
    result = run("--store", str(store_path), "retry", exec_id, env={"KITARU_STORE": str(elsewhere)})
    assert result.exit_code == 0, result.output
    assert not elsewhere.exists()
    assert KitaruClient(store_path).executions.get(exec_id).status == "completed"


# --- input, resume, abort-wait ---------------------------------------------------------------


def test_input_then_resume(run: Run) -> None:
    exec_id = _waiting_run()
    answered = run("input", exec_id, "--wait", "approve", "--value", "true")
    assert answered.exit_code == 0, answered.output
    assert answered.stdout == (
        f"answered wait 'approve' of {exec_id}: True\ncontinue it with: kitaru-store resume {exec_id}\n"
    )
    resumed = run("resume", exec_id)
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout == f"completed {exec_id} (rc_approval): result 'published: draft about owls'\n"
    assert CALLS == ["rc_publish"]


def test_input_names_the_store_in_the_command_to_continue(run: Run, store_path: Path) -> None:
    exec_id = _waiting_run()
    answered = run("--store", str(store_path), "input", exec_id, "--wait", "approve", "--value", "false")
    assert answered.stdout.endswith(f"kitaru-store --store {store_path} resume {exec_id}\n")
    assert run("resume", exec_id, "--json").exit_code == 0
    assert KitaruClient().executions.get(exec_id).status == "completed"
    assert CALLS == ["rc_publish"]


def test_input_and_resume_with_json(run: Run) -> None:
    exec_id = _waiting_run()
    answered = run("input", exec_id, "--wait", "approve", "--value", "true", "--json")
    doc = json.loads(answered.stdout)
    assert [(w["name"], w["status"]) for w in doc["waits"]] == [("approve", "answered")]
    assert doc["status"] == "waiting"
    resumed = json.loads(run("resume", exec_id, "--json").stdout)
    assert resumed["status"] == "completed" and resumed["result_object_id"]


def test_resume_before_the_answer_stays_waiting(run: Run) -> None:
    exec_id = _waiting_run()
    result = run("resume", exec_id)
    assert result.exit_code == 0
    assert result.stdout.startswith(f"waiting {exec_id} (rc_approval): waiting for input to 'approve'")
    assert CALLS == []  # rc_draft was reused


def test_abort_wait_fails_the_execution(run: Run) -> None:
    exec_id = _waiting_run()
    result = run("abort-wait", exec_id, "--wait", "approve", "--reason", "not today")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"aborted wait 'approve' of {exec_id}: the execution is failed\n"
    execution = KitaruClient().executions.get(exec_id)
    assert execution.status == "failed"
    assert execution.failure is not None and execution.failure.message.endswith(": not today")
    doc = json.loads(run("abort-wait", exec_id, "--wait", "approve", "--json").stdout)
    assert doc["error"] == "ExecutionStateError"  # aborted already


def test_input_is_validated_by_the_sdk_itself(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same function validates both: an answer the SDK refuses, the CLI refuses with the
    same error; and the CLI goes through kitaru.waits.validate_answer (no copy of it)."""
    exec_id = _waiting_run()
    with pytest.raises(kitaru.InputValidationError) as sdk:
        KitaruClient().executions.input(exec_id, wait="approve", value="yes")
    cli = json.loads(run("input", exec_id, "--wait", "approve", "--value", '"yes"', "--json").stdout)
    assert cli == sdk.value.to_dict()
    from kitaru import waits

    seen: list[Any] = []
    real = waits.validate_answer

    def spy(record: Any, value: Any, **kw: Any) -> Any:
        seen.append(value)
        return real(record, value, **kw)

    monkeypatch.setattr(waits, "validate_answer", spy)
    assert run("input", exec_id, "--wait", "approve", "--value", "1").exit_code == 2
    assert run("input", exec_id, "--wait", "approve", "--value", "true").exit_code == 0
    assert seen == [1, True]


# --- replay ----------------------------------------------------------------------------------


def test_replay_from_a_checkpoint(run: Run) -> None:
    source = pipeline.run(2).exec_id
    CALLS.clear()
    result = run("replay", source, "--from", "rc_second")
    assert result.exit_code == 0, result.output
    new_id = result.stdout.split()[1]
    assert result.stdout == f"completed {new_id} (rc_pipeline, replay of {source[:12]}): result 'z=30'\n"
    assert CALLS == ["rc_second", "rc_third"]
    assert KitaruClient().executions.get(new_id).replay_of == source


@pytest.mark.parametrize("key", ["rc_second", "checkpoint.rc_second"])
def test_replay_with_an_override(run: Run, key: str) -> None:
    source = pipeline.run(2).exec_id
    CALLS.clear()
    result = run("replay", source, "--from", "rc_second", "--override", f"{key}=7", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["replay_of"] == source and doc["status"] == "completed"
    assert [(c["invocation_id"], c["status"]) for c in doc["checkpoints"]] == [
        ("rc_first", "reused"),
        ("rc_second", "overridden"),
        ("rc_third", "completed"),
    ]
    assert CALLS == ["rc_third"]
    assert KitaruClient().executions.get(doc["exec_id"]).artifact("rc_third").load() == "z=7"


def test_replay_overrides_with_json_values(run: Run) -> None:
    source = pipeline.run(2).exec_id
    result = run("replay", source, "--override", 'checkpoint.rc_first={"a": [1, null]}')
    assert result.exit_code == 1  # rc_second gets a dict: the replayed flow fails, an outcome
    assert "TypeError: unsupported operand type(s) for *: 'dict' and 'int'" in result.stdout


# --- bad input: a typed error, exit code 2, the store unchanged -------------------------------

UNKNOWN = "0123456789abcdef0123456789abcdef"
BAD = [
    (["retry", "{unknown}"], "ExecutionNotFoundError"),
    (["resume", "{unknown}"], "ExecutionNotFoundError"),
    (["replay", "{unknown}"], "ExecutionNotFoundError"),
    (["input", "{unknown}", "--wait", "approve", "--value", "true"], "ExecutionNotFoundError"),
    (["abort-wait", "{unknown}", "--wait", "approve"], "ExecutionNotFoundError"),
    (["retry", "abcd"], "AmbiguousIdError"),
    (["input", "abcd", "--wait", "approve", "--value", "true"], "AmbiguousIdError"),
    (["retry", "ab"], "InvalidIdError"),
    (["retry", "{completed}"], "ExecutionStateError"),
    (["resume", "{completed}"], "ExecutionStateError"),
    (["resume", "{failed}"], "ExecutionStateError"),
    (["retry", "{waiting}"], "ExecutionStateError"),
    (["retry", "{ghost}"], "FlowNotFoundError"),
    (["input", "{completed}", "--wait", "approve", "--value", "true"], "ExecutionStateError"),
    (["input", "{waiting}", "--wait", "approve", "--value", "yes"], "KitaruUsageError"),
    (["input", "{waiting}", "--wait", "approve", "--value", "[true"], "KitaruUsageError"),
    (["input", "{waiting}", "--wait", "approve", "--value", "NaN"], "KitaruUsageError"),
    (["input", "{waiting}", "--wait", "approve", "--value", "[" * 101 + "]" * 101], "KitaruUsageError"),
    (["input", "{waiting}", "--wait", "approve", "--value", "[" * 5000 + "]" * 5000], "KitaruUsageError"),
    (["input", "{waiting}", "--wait", "approve", "--value", '"yes"'], "InputValidationError"),
    (["input", "{waiting}", "--wait", "approve", "--value", "1"], "InputValidationError"),
    (["input", "{waiting}", "--wait", "nope", "--value", "true"], "WaitNotFoundError"),
    (["abort-wait", "{waiting}", "--wait", "nope"], "WaitNotFoundError"),
    (["abort-wait", "{failed}", "--wait", "approve"], "ExecutionStateError"),
    (["replay", "{completed}", "--from", "nope"], "KitaruUsageError"),
    (["replay", "{completed}", "--override", "nope=1"], "KitaruUsageError"),
    (["replay", "{completed}", "--override", "checkpoint.nope=1"], "KitaruUsageError"),
    (["replay", "{completed}", "--override", "rc_first=[1,"], "KitaruUsageError"),
    (["replay", "{completed}", "--override", "rc_first"], "KitaruUsageError"),
    (["replay", "{completed}", "--override", "=1"], "KitaruUsageError"),
    (["replay", "{completed}", "--override", "rc_first=1", "--override", "rc_first=2"], "KitaruUsageError"),
    (
        ["replay", "{completed}", "--override", "rc_first=1", "--override", "checkpoint.rc_first=2"],
        "KitaruUsageError",
    ),
]


@pytest.fixture
def world(repo: Repository) -> dict[str, str]:
    ids = {
        "unknown": UNKNOWN,
        "failed": _failed_run(),
        "completed": pipeline.run(1).exec_id,
        "waiting": _waiting_run(),
    }
    ghost = {"kitaru.module": "no_such_module_for_kitaru_tests", "kitaru.qualname": "ghost"}
    ids["ghost"] = repo.create_execution("rc_ghost", metadata=ghost, status="failed")
    for n in (0, 1):
        repo.create_execution("rc_pipeline", exec_id=f"abcd{n}" + "0" * 27, status="failed")
    CALLS.clear()
    return ids


@pytest.mark.parametrize(("args", "error"), BAD, ids=lambda v: " ".join(v)[:60] if isinstance(v, list) else v)
def test_bad_input_is_a_typed_error_that_changes_nothing(
    run: Run, world: dict[str, str], store_path: Path, args: list[str], error: str
) -> None:
    argv = [a.format(**world) for a in args]
    before = snapshot(store_path)
    as_json = run(*argv, "--json")
    assert as_json.exit_code == 2, as_json.output
    doc = json.loads(as_json.stdout)
    assert doc["error"] == error, doc
    assert doc["message"] and doc["hint"]
    assert as_json.stderr == ""
    text = run(*argv)
    assert text.exit_code == 2 and text.stdout == ""
    assert text.stderr.startswith("error: ") and len(text.stderr.splitlines()) == 1
    assert snapshot(store_path) == before
    assert CALLS == []


def test_the_flow_script_or_module_names_the_file_or_module_in_the_error(
    run: Run, world: dict[str, str]
) -> None:
    doc = json.loads(run("retry", world["ghost"], "--json").stdout)
    assert "no_such_module_for_kitaru_tests.ghost" in doc["hint"]
    assert doc["exec_id"] == world["ghost"] and doc["name"] == "rc_ghost"


def test_a_missing_store_is_a_typed_error_and_is_not_created(run: Run, store_path: Path) -> None:
    for args in (["retry", UNKNOWN], ["input", UNKNOWN, "--wait", "w", "--value", "1"]):
        result = run(*args, "--json")
        assert result.exit_code == 2
        assert json.loads(result.stdout)["error"] == "StoreNotFoundError"
    assert not store_path.exists()


@checkpoint(name="rc_block")
def block() -> int:
    STARTED.set()
    RELEASE.wait(30)
    return 1


@flow(name="rc_blocking")
def blocking() -> Any:
    return block()


STARTED = threading.Event()
RELEASE = threading.Event()


def test_retry_or_resume_of_a_running_execution_is_refused(run: Run, store_path: Path) -> None:
    """A run in progress (in this process, so its owner is alive) is neither retried nor resumed."""
    STARTED.clear()
    RELEASE.clear()
    handles: list[Any] = []
    worker = threading.Thread(target=lambda: handles.append(blocking.run()))
    worker.start()
    try:
        assert STARTED.wait(30)
        running = KitaruClient().executions.latest(flow="rc_blocking")
        assert running is not None and running.status == "running"
        before = snapshot(store_path)
        for command in ("retry", "resume"):
            result = run(command, running.exec_id, "--json")
            assert result.exit_code == 2
            assert json.loads(result.stdout)["error"] == "ExecutionStateError"
        assert snapshot(store_path) == before
    finally:
        RELEASE.set()
        worker.join(30)
    assert handles[0].wait() == 1


# --- the command table -----------------------------------------------------------------------


def test_the_commands_of_kitaru_are_registered_with_their_summaries() -> None:
    """Every command kitaru-store lists from another package: in COMMAND_MODULES under its own
    module, with the summary --help shows without importing it equal to its own."""
    import importlib

    dotted = {n: m for n, m in app.COMMAND_MODULES.items() if "." in m}
    assert set(dotted) == set(app.SUMMARIES)
    for module_name in set(dotted.values()):
        commands = importlib.import_module(module_name).COMMANDS
        assert {c.name for c in commands} == {n for n, m in dotted.items() if m == module_name}
        assert {c.name: c.short_help for c in commands} == {c.name: app.SUMMARIES[c.name] for c in commands}
    assert {c.name for c in recovery.COMMANDS} == {"retry", "resume", "input", "abort-wait", "replay"}


def test_help_lists_the_recovery_commands_without_importing_kitaru() -> None:
    """--help lists them by their summaries: `import kitaru` would about double its start-up."""
    probe = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "kitaru_store.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in probe.stderr.splitlines() if "|" in line}
    assert "kitaru_store.cli.app" in imported
    assert not {m for m in imported if m == "kitaru" or m.startswith("kitaru.")}
    lines = probe.stdout.splitlines()
    for name, summary in app.SUMMARIES.items():
        assert any(line.split() == [name, *summary.split()] for line in lines), name


def test_help_of_a_recovery_command(run: Run) -> None:
    result = run("retry", "--help")
    assert result.exit_code == 0
    assert "Usage: kitaru-store retry [OPTIONS] EXEC" in result.stdout
    assert "exit code 2" in result.stdout
    assert "--value JSON" in run("input", "--help").stdout


# --- a flow defined in a script, retried from another process --------------------------------

SCRIPT = """
import pathlib
import sys

from kitaru import checkpoint, flow

HERE = pathlib.Path(__file__).resolve().parent


def note(what):
    with open(HERE / "calls.log", "a") as log:
        log.write(what + "\\n")


@checkpoint
def first(x: int) -> int:
    note("first")
    return x + 1


@checkpoint
def second(y: int) -> int:
    note("second")
    marker = HERE / "failed-once"
    if not marker.exists():
        marker.touch()
        raise RuntimeError("second fails on the first run")
    return y * 10


@checkpoint
def third(z: int) -> str:
    note("third")
    return f"z={z}"


@flow(name="{name}")
def pipeline(x: int):
    return third(second(first(x)))


if __name__ == "__main__":
    note("main")
    print(pipeline.run(int(sys.argv[1])).exec_id)
"""


def _script_run(folder: Path, name: str) -> tuple[Path, str]:
    """``python script.py 4`` in ``folder``: the flow fails at its second checkpoint."""
    folder.mkdir()
    script = folder / "script.py"
    script.write_text(SCRIPT.replace("{name}", name))
    done = subprocess.run(
        [sys.executable, "script.py", "4"], cwd=folder, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return script, done.stdout.split()[-1]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kitaru_store.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_retry_of_a_script_flow_from_another_process(tmp_path: Path, store_path: Path) -> None:
    script, exec_id = _script_run(tmp_path / "project", "rc_script_flow")
    metadata = KitaruClient().executions.get(exec_id).metadata
    assert metadata["kitaru.module"] == "__main__"
    assert metadata["kitaru.script"] == str(script)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _cli("retry", exec_id[:10], cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"completed {exec_id} (rc_script_flow): result 'z=50'\n"
    # checkpoint 1 ran once; the script's main block did not run again
    assert (script.parent / "calls.log").read_text().split() == ["main", "first", "second", "second", "third"]
    again = _cli("retry", exec_id, "--json", cwd=elsewhere)
    assert again.returncode == 2
    assert json.loads(again.stdout)["error"] == "ExecutionStateError"
    replayed = _cli("replay", exec_id, "--from", "third", "--override", "second=7", cwd=elsewhere)
    assert replayed.returncode == 0, replayed.stderr
    new_id = replayed.stdout.split()[1]
    assert KitaruClient().executions.get(new_id).metadata["kitaru.script"] == str(script)


def test_retry_of_a_script_that_is_gone_or_changed(tmp_path: Path, store_path: Path) -> None:
    script, exec_id = _script_run(tmp_path / "project", "rc_script_gone")
    before = snapshot(store_path)
    script.write_text(SCRIPT.replace("{name}", "rc_renamed").replace("def pipeline", "def renamed"))
    changed = _cli("retry", exec_id, "--json", cwd=tmp_path)
    assert changed.returncode == 2
    doc = json.loads(changed.stdout)
    assert doc["error"] == "FlowNotFoundError"
    assert f"was defined in the script {script}, which no longer defines it" in doc["message"]
    assert str(script) in doc["hint"]
    script.unlink()
    gone = _cli("retry", exec_id, cwd=tmp_path)
    assert gone.returncode == 2
    assert f"was defined in the script {script}, which is gone" in gone.stderr
    assert f"restore {script}" in gone.stderr
    assert snapshot(store_path) == before
    assert (script.parent / "calls.log").read_text().split() == ["main", "first", "second"]


def test_a_script_that_fails_when_loaded_is_a_flow_not_found_error(tmp_path: Path, store_path: Path) -> None:
    script, exec_id = _script_run(tmp_path / "project", "rc_script_raises")
    script.write_text("raise SystemExit('the script exits when loaded')\n")
    done = _cli("retry", exec_id, "--json", cwd=tmp_path)
    assert done.returncode == 2
    doc = json.loads(done.stdout)
    assert doc["error"] == "FlowNotFoundError"
    assert f"running the script {script} failed: SystemExit: the script exits when loaded" in doc["message"]


def test_a_flow_run_with_python_m_records_its_module(tmp_path: Path, store_path: Path) -> None:
    folder = tmp_path / "pkgdir"
    folder.mkdir()
    (folder / "rc_module_flow.py").write_text(SCRIPT.replace("{name}", "rc_module_flow"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "rc_module_flow", "1"], cwd=folder, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    metadata = KitaruClient().executions.get(done.stdout.split()[-1]).metadata
    assert metadata["kitaru.module"] == "rc_module_flow"
    assert "kitaru.script" not in metadata


def test_a_manifest_naming_a_script_is_not_loaded_to_list_or_show_it(
    run: Run, repo: Repository, tmp_path: Path
) -> None:
    program = tmp_path / "program.py"
    program.write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    for script in (str(program), "relative.py", str(tmp_path / "x.sh"), str(program) + "\n"):
        exec_id = repo.create_execution(
            "rc_unlisted",
            status="failed",
            metadata={"kitaru.module": "__main__", "kitaru.qualname": "f", "kitaru.script": script},
        )
        assert run("show", exec_id).exit_code == 0
        assert run("log").exit_code == 0
        assert KitaruClient().executions.get(exec_id).flow_name == "rc_unlisted"
        assert not (tmp_path / "ran").exists()
        if script != str(program):
            doc = json.loads(run("retry", exec_id, "--json").stdout)
            assert doc["error"] == "FlowNotFoundError"
            assert "not an absolute path to a .py file" in doc["message"]


def test_retry_of_a_flow_defined_without_a_script_says_where_it_can_run(
    tmp_path: Path, store_path: Path
) -> None:
    # python -c, python - < file, a notebook: module __main__ and no script file to load again.
    code = (
        "import os, kitaru\n"
        "@kitaru.flow\n"
        "def rc_inline() -> int:\n"
        "    os.kill(os.getpid(), 9)\n"
        "rc_inline.run()\n"
    )
    subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "KITARU_STORE": str(store_path)}, timeout=60
    )
    (exec_id,) = [s.exec_id for s in Repository.open(store_path).list_executions()]
    before = snapshot(store_path)
    done = _cli("retry", exec_id, "--json", cwd=tmp_path)
    assert done.returncode == 2
    doc = json.loads(done.stdout)
    assert doc["error"] == "FlowNotFoundError"
    assert "without a script file" in doc["message"]
    assert "rc_inline.retry(" in doc["hint"] and "its module" not in doc["hint"]
    assert snapshot(store_path) == before
