"""Replay (a new execution), retry and resume (the same one): reuse, overrides, divergence, errors."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import kitaru
from kitaru import (
    DivergenceError,
    ExecutionNotFoundError,
    ExecutionStateError,
    FlowExecutionError,
    FlowNotFoundError,
    KitaruClient,
    KitaruUsageError,
    checkpoint,
    flow,
)
from kitaru import registry as kitaru_registry
from kitaru_store import Repository

CALLS: list[str] = []  # which checkpoint functions really ran, in order
# module-level switches that stand in for code changes
BRANCH: dict[str, Any] = {"alternative": False, "tail": False, "fail": False, "ending": ""}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    CALLS.clear()
    BRANCH.update(alternative=False, tail=False, fail=False)
    yield
    BRANCH.update(alternative=False, tail=False, fail=False)


@checkpoint
def fetch(x: int) -> dict[str, int]:
    CALLS.append("fetch")
    kitaru.save("raw", {"x": x})
    return {"x": x}


@checkpoint
def double(d: dict[str, int]) -> int:
    CALLS.append("double")
    return d["x"] * 2


@checkpoint
def report(n: int) -> str:
    CALLS.append("report")
    if BRANCH["fail"]:
        raise ValueError(f"report failed for {n}")
    return f"n={n}"


@flow(name="rp_pipeline")
def pipeline(x: int) -> Any:
    d = fetch(x)
    n = double(d)
    return report(n)


@checkpoint
def step(i: int) -> int:
    CALLS.append(f"step:{i}")
    return i * 10


@flow(name="rp_repeated")
def repeated() -> Any:
    return [step(1), step(2), step(3)]


@checkpoint
def alt_step(d: dict[str, int]) -> int:
    CALLS.append("alt_step")
    return -1


@checkpoint
def summary(n: int) -> str:
    CALLS.append("summary")
    return f"summary of {n}"


@flow(name="rp_branching")
def branching(x: int) -> Any:
    d = fetch(x)
    n = alt_step(d) if BRANCH["alternative"] else double(d)
    return summary(n) if BRANCH["tail"] else report(n)


@flow(name="rp_other")
def other_flow(x: int) -> Any:
    return fetch(x)


def _calls(exec_id: str) -> list[tuple[str, str, str | None]]:
    ex = KitaruClient().executions.get(exec_id)
    return [(c.invocation_id, c.status, c.reused_from) for c in ex.checkpoints]


def _outputs(exec_id: str) -> dict[str, str | None]:
    ex = KitaruClient().executions.get(exec_id)
    return {c.invocation_id: c.output_object_id for c in ex.checkpoints}


# --- replay --------------------------------------------------------------------------------


def test_replay_reuses_calls_before_the_replay_point_and_reruns_the_rest() -> None:
    source = pipeline.run(3)
    assert source.wait() == "n=6"
    CALLS.clear()

    replay = pipeline.replay(source.exec_id, from_="double")
    assert replay.exec_id != source.exec_id
    assert replay.wait() == "n=6"
    assert CALLS == ["double", "report"]  # fetch was not run again

    ex = KitaruClient().executions.get(replay.exec_id)
    assert ex.replay_of == source.exec_id
    assert ex.status == "completed"
    assert _calls(replay.exec_id) == [
        ("fetch", "reused", source.exec_id),
        ("double", "completed", None),
        ("report", "completed", None),
    ]
    original, replayed = _outputs(source.exec_id), _outputs(replay.exec_id)
    assert replayed["fetch"] == original["fetch"]  # the very same stored object
    # the reused call's entries (output and save) are copied: same object ids, new artifact ids
    src_arts = {a.name: a for a in KitaruClient().executions.get(source.exec_id).artifacts}
    new_arts = {a.name: a for a in ex.artifacts}
    assert set(new_arts) == {"fetch", "raw", "double", "report"}
    for name in ("fetch", "raw"):
        assert new_arts[name].object_id == src_arts[name].object_id
        assert new_arts[name].artifact_id != src_arts[name].artifact_id
        assert new_arts[name].exec_id == replay.exec_id
    assert new_arts["raw"].load() == {"x": 3}
    # the source execution is untouched
    assert _calls(source.exec_id) == [
        ("fetch", "completed", None),
        ("double", "completed", None),
        ("report", "completed", None),
    ]


def test_replay_without_a_replay_point_reuses_every_completed_call() -> None:
    source = pipeline.run(4)
    CALLS.clear()
    replay = pipeline.replay(source.exec_id)
    assert replay.wait() == "n=8"
    assert CALLS == []
    assert [status for _, status, _ in _calls(replay.exec_id)] == ["reused"] * 3
    assert _outputs(replay.exec_id) == _outputs(source.exec_id)
    ex = KitaruClient().executions.get(replay.exec_id)
    assert ex.result_object_id == KitaruClient().executions.get(source.exec_id).result_object_id


def test_replay_from_an_invocation_id_of_a_repeated_checkpoint() -> None:
    source = repeated.run()
    assert source.wait() == [10, 20, 30]
    assert [inv for inv, _, _ in _calls(source.exec_id)] == ["step", "step_2", "step_3"]
    CALLS.clear()

    replay = repeated.replay(source.exec_id, from_="step_2")
    assert replay.wait() == [10, 20, 30]
    assert CALLS == ["step:2", "step:3"]
    assert [(inv, status) for inv, status, _ in _calls(replay.exec_id)] == [
        ("step", "reused"),
        ("step_2", "completed"),
        ("step_3", "completed"),
    ]
    # a checkpoint name as the replay point stops at its first call
    CALLS.clear()
    by_name = repeated.replay(source.exec_id, from_="step")
    assert by_name.wait() == [10, 20, 30]
    assert CALLS == ["step:1", "step:2", "step:3"]


def test_replay_with_changed_flow_inputs() -> None:
    source = pipeline.run(3)
    CALLS.clear()
    replay = pipeline.replay(source.exec_id, from_="fetch", x=10)
    assert replay.wait() == "n=20"
    assert CALLS == ["fetch", "double", "report"]
    # the new inputs are recorded, so a replay of the replay runs with them
    again = pipeline.replay(replay.exec_id, from_="report")
    assert again.wait() == "n=20"


def test_overrides_inject_a_checkpoint_output() -> None:
    source = pipeline.run(3)
    CALLS.clear()
    replay = pipeline.replay(source.exec_id, from_="report", overrides={"double": 100})
    assert replay.wait() == "n=100"
    assert CALLS == ["report"]  # neither fetch nor the overridden double ran
    calls = KitaruClient().executions.get(replay.exec_id).checkpoints
    assert [(c.invocation_id, c.status) for c in calls] == [
        ("fetch", "reused"),
        ("double", "overridden"),
        ("report", "completed"),
    ]
    overridden = calls[1]
    assert overridden.output_object_id != _outputs(source.exec_id)["double"]
    assert calls[2].upstream == ("double",)
    [art] = [a for a in KitaruClient().executions.get(replay.exec_id).artifacts if a.name == "double"]
    assert art.load() == 100 and art.metadata == {"overridden": True}


def test_overrides_by_invocation_id() -> None:
    source = repeated.run()
    CALLS.clear()
    replay = repeated.replay(source.exec_id, overrides={"step_2": 99})
    assert replay.wait() == [10, 99, 30]
    # an override ends reuse: the call after it runs for real
    assert CALLS == ["step:3"]
    assert [status for _, status, _ in _calls(replay.exec_id)] == ["reused", "overridden", "completed"]


def test_overrides_naming_no_recorded_call_are_refused() -> None:
    source = pipeline.run(4)
    before = KitaruClient().repository.count_executions()
    with pytest.raises(kitaru.KitaruUsageError) as info:
        pipeline.replay(source.exec_id, overrides={"dubble": 1})  # a typo must not pass silently
    assert "dubble" in str(info.value) and info.value.hint and "double" in info.value.hint
    assert KitaruClient().repository.count_executions() == before  # nothing was created


def test_replay_of_a_replay() -> None:
    source = pipeline.run(2)
    first = pipeline.replay(source.exec_id, from_="report")
    CALLS.clear()
    second = pipeline.replay(first.exec_id, from_="report")
    assert second.wait() == "n=4"
    assert CALLS == ["report"]
    client = KitaruClient()
    assert client.executions.get(second.exec_id).replay_of == first.exec_id
    assert client.executions.get(first.exec_id).replay_of == source.exec_id
    assert _calls(second.exec_id) == [
        ("fetch", "reused", first.exec_id),
        ("double", "reused", first.exec_id),
        ("report", "completed", None),
    ]
    original, latest = _outputs(source.exec_id), _outputs(second.exec_id)
    assert latest["fetch"] == original["fetch"] and latest["double"] == original["double"]
    raw = {a.name: a for a in client.executions.get(second.exec_id).artifacts}["raw"]
    assert raw.load() == {"x": 2}


def test_client_replay_finds_the_flow_and_accepts_an_id_prefix() -> None:
    source = pipeline.run(5)
    CALLS.clear()
    replay = KitaruClient().executions.replay(source.exec_id[:12], from_="report", overrides=None)
    assert replay.wait() == "n=10"
    assert CALLS == ["report"]
    assert KitaruClient().executions.get(replay.exec_id).replay_of == source.exec_id


def test_client_replay_imports_the_flow_from_its_module(monkeypatch: pytest.MonkeyPatch) -> None:
    source = pipeline.run(1)
    monkeypatch.delitem(kitaru_registry._flows, "rp_pipeline")  # not registered: found by module
    CALLS.clear()
    replay = KitaruClient().executions.replay(source.exec_id, from_="report")
    assert replay.wait() == "n=2"
    assert CALLS == ["report"]


def test_replay_of_a_failed_execution_reruns_from_the_failure() -> None:
    BRANCH["fail"] = True
    failed = pipeline.run(3)
    BRANCH["fail"] = False
    CALLS.clear()
    replay = pipeline.replay(failed.exec_id)
    assert replay.wait() == "n=6"
    assert CALLS == ["report"]
    assert [(inv, status) for inv, status, _ in _calls(replay.exec_id)] == [
        ("fetch", "reused"),
        ("double", "reused"),
        ("report", "completed"),
    ]
    assert KitaruClient().executions.get(failed.exec_id).status == "failed"  # the source stays as it was


def test_overrides_take_checkpoint_prefixed_keys_as_upstream_kitaru_does() -> None:
    source = pipeline.run(1)
    CALLS.clear()
    replay = pipeline.replay(source.exec_id, from_="report", overrides={"checkpoint.double": 5})
    assert replay.wait() == "n=5"
    assert CALLS == ["report"]
    with pytest.raises(KitaruUsageError, match="the override of 'double' is given twice"):
        pipeline.replay(source.exec_id, overrides={"double": 1, "checkpoint.double": 2})
    with pytest.raises(KitaruUsageError, match="overrides name no recorded call"):
        pipeline.replay(source.exec_id, overrides={"checkpoint.nope": 1})


def test_the_client_runs_a_flow_on_its_own_store(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KitaruClient(store) replays, retries and resumes on that store, whatever KITARU_STORE says."""
    BRANCH["fail"] = True
    failed = pipeline.run(2)
    BRANCH["fail"] = False
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("KITARU_STORE", str(elsewhere))
    client = KitaruClient(repo.path)
    assert client.executions.retry(failed.exec_id).wait() == "n=4"
    replay = client.executions.replay(failed.exec_id, from_="report")
    assert replay.wait() == "n=4"
    assert client.executions.get(replay.exec_id).replay_of == failed.exec_id
    with pytest.raises(ExecutionStateError):
        client.executions.resume(failed.exec_id)
    assert not elsewhere.exists()


# --- replay errors -------------------------------------------------------------------------


def test_replay_of_an_unknown_execution(repo: Repository) -> None:
    with pytest.raises(ExecutionNotFoundError):
        pipeline.replay("0123456789abcdef0123456789abcdef")
    with pytest.raises(ExecutionNotFoundError):
        KitaruClient().executions.replay("0123456789abcdef0123456789abcdef")
    assert repo.list_executions() == []


def test_replay_from_a_call_that_was_never_recorded(repo: Repository) -> None:
    source = pipeline.run(1)
    with pytest.raises(KitaruUsageError) as info:
        pipeline.replay(source.exec_id, from_="summarize")
    err = info.value
    assert err.exec_id == source.exec_id and err.name == "summarize"
    assert "no checkpoint call 'summarize'" in str(err)
    assert err.hint == "replay from one of: fetch, double, report"
    assert len(repo.list_executions()) == 1  # nothing was created


def test_replay_with_a_flow_of_another_name(repo: Repository) -> None:
    source = pipeline.run(1)
    with pytest.raises(KitaruUsageError) as info:
        other_flow.replay(source.exec_id)
    assert "ran flow 'rp_pipeline', not 'rp_other'" in str(info.value)
    assert len(repo.list_executions()) == 1


def test_replay_with_an_unknown_flow_input(repo: Repository) -> None:
    source = pipeline.run(1)
    with pytest.raises(KitaruUsageError) as info:
        pipeline.replay(source.exec_id, y=2)
    assert "has no parameter 'y'" in str(info.value)
    assert info.value.hint == "its parameters are: x"
    assert len(repo.list_executions()) == 1


def test_replay_of_an_execution_whose_inputs_were_not_data(repo: Repository) -> None:
    @checkpoint(name="rp_describe")
    def describe(obj: object) -> str:
        return type(obj).__name__

    @flow(name="rp_opaque")
    def opaque(obj: object) -> Any:
        return describe(obj)

    source = opaque.run(object())
    assert source.wait() == "object"
    with pytest.raises(KitaruUsageError) as info:
        opaque.replay(source.exec_id)
    assert "did not record its inputs" in str(info.value)
    assert info.value.hint == "pass the flow's inputs as keyword arguments to replay(...)"
    assert len(repo.list_executions()) == 1
    assert opaque.replay(source.exec_id, from_="rp_describe", obj=1.5).wait() == "float"


def test_client_replay_when_the_flow_cannot_be_found(repo: Repository) -> None:
    exec_id = repo.create_execution(
        "rp_ghost", metadata={"kitaru.module": "no_such_module_for_kitaru_tests", "kitaru.qualname": "ghost"}
    )
    client = KitaruClient()
    for action in (client.executions.replay, client.executions.retry, client.executions.resume):
        with pytest.raises(FlowNotFoundError) as info:
            action(exec_id)
        assert info.value.exec_id == exec_id and info.value.name == "rp_ghost"
        assert "no_such_module_for_kitaru_tests.ghost" in (info.value.hint or "")


def test_a_flow_module_named_by_a_manifest_is_imported_only_to_run_it(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listing and showing import nothing; replay/retry/resume never import a __main__ module, and
    a module whose import fails (even with SystemExit) is a FlowNotFoundError."""
    where = tmp_path / "modules"
    where.mkdir()
    monkeypatch.chdir(where)
    (where / "kitaru_exits_on_import.py").write_text("raise SystemExit('imported')\n")
    monkeypatch.syspath_prepend(str(where))
    program = repo.create_execution(
        "rp_prog", metadata={"kitaru.module": "venv.__main__", "kitaru.qualname": "f"}
    )
    exits = repo.create_execution(
        "rp_exits", metadata={"kitaru.module": "kitaru_exits_on_import", "kitaru.qualname": "f"}
    )
    client = KitaruClient()
    assert {e.exec_id for e in client.executions.list()} >= {program, exits}
    assert client.executions.get(exits).flow_name == "rp_exits"
    assert "kitaru_exits_on_import" not in sys.modules
    for action in (client.executions.replay, client.executions.retry, client.executions.resume):
        with pytest.raises(FlowNotFoundError):
            action(program)
        with pytest.raises(FlowNotFoundError, match="SystemExit: imported") as info:
            action(exits)
        assert info.value.exec_id == exits
        sys.modules.pop("kitaru_exits_on_import", None)
    assert "venv.__main__" not in sys.modules
    assert sorted(p.name for p in where.iterdir()) == ["kitaru_exits_on_import.py"]  # no venv


SCRIPT_FLOW = """
import pathlib
import sys

from kitaru import checkpoint, flow

HERE = pathlib.Path(__file__).resolve().parent


@checkpoint
def once(x: int) -> int:
    with open(HERE / "once.log", "a") as log:
        log.write("once\\n")
    return x + 1


@checkpoint
def flaky(y: int) -> int:
    if not (HERE / "fixed").exists():
        raise RuntimeError("not fixed yet")
    return y * 10


@flow(name="rp_script_flow")
def script_flow(x: int):
    return flaky(once(x))


if __name__ == "__main__":
    (HERE / "main.log").write_text("main ran")
    print(script_flow.run(int(sys.argv[1])).exec_id)
"""


def test_a_flow_of_a_script_is_loaded_by_its_path_only_to_run_it(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flow defined in `python script.py` records the script's absolute path; retry loads the
    script under a name of its own (its main block does not run) and reuses what completed."""
    import subprocess

    folder = tmp_path / "project"
    folder.mkdir()
    script = folder / "script.py"
    script.write_text(SCRIPT_FLOW)
    done = subprocess.run([sys.executable, "script.py", "3"], cwd=folder, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    exec_id = done.stdout.split()[-1]
    (folder / "main.log").unlink()
    client = KitaruClient()
    execution = client.executions.get(exec_id)
    assert execution.status == "failed"
    assert execution.metadata == {
        "kitaru.module": "__main__",
        "kitaru.qualname": "script_flow",
        "kitaru.script": str(script),
    }
    monkeypatch.setattr(sys, "path", list(sys.path))  # loading puts the script's folder first
    (folder / "fixed").touch()
    assert client.executions.retry(exec_id[:10]).wait() == 40
    assert (folder / "once.log").read_text() == "once\n"  # completed before: reused
    assert not (folder / "main.log").exists()
    assert sys.path[0] == str(folder)
    replay = client.executions.replay(exec_id, from_="flaky")
    assert replay.wait() == 40
    assert client.executions.get(replay.exec_id).metadata["kitaru.script"] == str(script)
    monkeypatch.delitem(kitaru_registry._flows, "rp_script_flow")
    script.unlink()
    with pytest.raises(FlowNotFoundError) as info:
        kitaru_registry.find(repo.get_execution(exec_id))
    assert str(script) in str(info.value) and "is gone" in str(info.value)


# --- divergence ----------------------------------------------------------------------------


def test_a_changed_call_sequence_before_the_replay_point_is_a_divergence() -> None:
    source = branching.run(2)
    assert source.wait() == "n=4"
    BRANCH["alternative"] = True  # "the code changed": the second call is another checkpoint
    CALLS.clear()

    replay = branching.replay(source.exec_id, from_="report")
    assert replay.status == "failed"
    with pytest.raises(FlowExecutionError) as info:
        replay.wait()
    err = info.value.__cause__
    assert isinstance(err, DivergenceError)
    assert err.position == 1
    assert err.expected == ("double", "double")
    assert err.got == ("alt_step", "alt_step")
    assert err.recorded == [("fetch", "fetch"), ("double", "double"), ("report", "report")]
    assert err.exec_id == source.exec_id
    assert "at call #2: recorded double, this run called alt_step" in str(err)
    assert CALLS == []  # alt_step never ran with a reused input it was not made for
    ex = KitaruClient().executions.get(replay.exec_id)
    assert ex.failure is not None and ex.failure.type == "kitaru.errors.DivergenceError"


def test_a_change_after_the_replay_point_is_no_divergence() -> None:
    source = branching.run(2)
    BRANCH["tail"] = True  # the last call changes; the replay point is before it
    CALLS.clear()
    replay = branching.replay(source.exec_id, from_="double")
    assert replay.wait() == "summary of 4"
    assert CALLS == ["double", "summary"]
    assert [(inv, status) for inv, status, _ in _calls(replay.exec_id)] == [
        ("fetch", "reused"),
        ("double", "completed"),
        ("summary", "completed"),
    ]


def test_a_replay_point_the_changed_code_no_longer_reaches_is_a_divergence() -> None:
    source = branching.run(2)
    BRANCH["alternative"] = True  # "double" is not called any more: alt_step takes its place
    replay = branching.replay(source.exec_id, from_="double")
    with pytest.raises(FlowExecutionError) as info:
        replay.wait()
    err = info.value.__cause__
    assert isinstance(err, DivergenceError)
    assert (err.position, err.expected, err.got) == (1, ("double", "double"), ("alt_step", "alt_step"))


# --- retry ---------------------------------------------------------------------------------


def test_retry_reruns_a_failed_execution_in_place_reusing_completed_calls() -> None:
    BRANCH["fail"] = True
    failed = pipeline.run(3)
    assert failed.status == "failed"
    before = _outputs(failed.exec_id)
    assert CALLS == ["fetch", "double", "report"]
    BRANCH["fail"] = False
    CALLS.clear()

    retried = KitaruClient().executions.retry(failed.exec_id)
    assert retried.exec_id == failed.exec_id  # the same execution
    assert retried.wait() == "n=6"
    assert CALLS == ["report"]
    ex = KitaruClient().executions.get(failed.exec_id)
    assert ex.status == "completed" and ex.failure is None and ex.ended_at is not None
    assert ex.replay_of is None
    assert [(c.invocation_id, c.status) for c in ex.checkpoints] == [
        ("fetch", "completed"),
        ("double", "completed"),
        ("report", "completed"),
    ]
    after = _outputs(failed.exec_id)
    assert after["fetch"] == before["fetch"] and after["double"] == before["double"]
    assert ex.metadata["kitaru.previous_failures"] == [
        {"type": "ValueError", "message": "report failed for 6"}
    ]
    assert len(KitaruClient().executions.list()) == 1


def test_retry_keeps_every_previous_failure() -> None:
    BRANCH["fail"] = True
    handle = pipeline.run(1)
    again = pipeline.retry(handle.exec_id)  # still failing
    assert again.status == "failed"
    assert CALLS == ["fetch", "double", "report", "report"]
    BRANCH["fail"] = False
    assert pipeline.retry(handle.exec_id).wait() == "n=2"
    meta = KitaruClient().executions.get(handle.exec_id).metadata
    assert meta["kitaru.previous_failures"] == [
        {"type": "ValueError", "message": "report failed for 2"},
        {"type": "ValueError", "message": "report failed for 2"},
    ]
    assert meta["kitaru.module"] == pipeline.fn.__module__  # the flow's own metadata survives


def test_retry_of_a_cancelled_execution() -> None:
    @checkpoint
    def interrupted() -> None:
        if BRANCH["fail"]:
            raise KeyboardInterrupt
        CALLS.append("interrupted")

    @flow(name="rp_cancelled")
    def cancellable() -> str:
        fetch(1)
        interrupted()
        return "done"

    BRANCH["fail"] = True
    with pytest.raises(KeyboardInterrupt):
        cancellable.run()
    [summary] = KitaruClient().executions.list()
    assert summary.status == "cancelled"
    BRANCH["fail"] = False
    CALLS.clear()
    assert cancellable.retry(summary.exec_id).wait() == "done"
    assert CALLS == ["interrupted"]


@checkpoint
def fanned(i: int) -> int:
    """Item 0 waits until the other items committed, then ends as BRANCH["fail"] says."""
    if i == 0 and BRANCH["fail"]:
        exec_id = kitaru.current_execution_id()
        assert exec_id is not None
        for _ in range(1000):
            done = [c for c in KitaruClient().executions.get(exec_id).checkpoints if c.status == "completed"]
            if len(done) == 2:
                break
            time.sleep(0.01)
        raise FAN_ENDINGS[BRANCH["ending"]]
    CALLS.append(f"fanned:{i}")
    return i * 10


FAN_ENDINGS: dict[str, BaseException] = {
    "failed": ValueError("item 0 failed"),  # a failed record, then two completed ones
    "cut short": KeyboardInterrupt(),  # no record at all: what a kill leaves
}


@flow(name="rp_fan_out")
def fan_out() -> list[int]:
    return [o.load() for o in fanned.map(range(3))]


@pytest.mark.parametrize("ending", sorted(FAN_ENDINGS))
def test_retry_of_a_fan_out_reruns_only_the_call_that_did_not_complete(ending: str) -> None:
    BRANCH.update(fail=True, ending=ending)
    if ending == "failed":
        exec_id = fan_out.run().exec_id
    else:
        with pytest.raises(KeyboardInterrupt):
            fan_out.run()
        [summary] = KitaruClient().executions.list()
        exec_id = summary.exec_id
    assert sorted(CALLS) == ["fanned:1", "fanned:2"]
    calls = {c.invocation_id: c.status for c in KitaruClient().executions.get(exec_id).checkpoints}
    assert calls == {
        "fanned_2": "completed",
        "fanned_3": "completed",
        **({"fanned": "failed"} if ending == "failed" else {}),
    }
    BRANCH["fail"] = False
    CALLS.clear()

    # Reuse went by position: the call with no record made the retry a DivergenceError, and after
    # a failed record the completed calls beside it ran again.
    assert fan_out.retry(exec_id).wait() == [0, 10, 20]
    assert CALLS == ["fanned:0"]


def test_retry_of_a_completed_execution_is_a_state_error() -> None:
    handle = pipeline.run(1)
    for retry in (pipeline.retry, KitaruClient().executions.retry):
        with pytest.raises(ExecutionStateError) as info:
            retry(handle.exec_id)
        assert info.value.exec_id == handle.exec_id
        assert "is completed; this needs it to be failed or cancelled" in str(info.value)
    assert KitaruClient().executions.get(handle.exec_id).status == "completed"


def test_resume_of_an_execution_that_is_not_waiting_is_a_state_error() -> None:
    BRANCH["fail"] = True
    failed = pipeline.run(1)
    done = repeated.run()
    for exec_id, status, resume in (
        (failed.exec_id, "failed", pipeline.resume),
        (done.exec_id, "completed", KitaruClient().executions.resume),
    ):
        with pytest.raises(ExecutionStateError) as info:
            resume(exec_id)
        assert f"is {status}; this needs it to be waiting" in str(info.value)
        assert KitaruClient().executions.get(exec_id).status == status


def test_retry_with_a_flow_of_another_name_is_refused() -> None:
    BRANCH["fail"] = True
    failed = pipeline.run(1)
    CALLS.clear()
    with pytest.raises(KitaruUsageError) as info:
        other_flow.retry(failed.exec_id)
    assert "ran flow 'rp_pipeline', not 'rp_other'" in str(info.value)
    with pytest.raises(KitaruUsageError):
        other_flow.resume(failed.exec_id)
    assert CALLS == []
    ex = KitaruClient().executions.get(failed.exec_id)
    assert ex.status == "failed" and "kitaru.previous_failures" not in ex.metadata


def test_retry_after_a_code_change_before_the_failure_is_a_divergence() -> None:
    BRANCH["fail"] = True
    failed = branching.run(1)
    BRANCH.update(fail=False, alternative=True)
    retried = branching.retry(failed.exec_id)
    assert retried.status == "failed"
    with pytest.raises(FlowExecutionError) as info:
        retried.wait()
    err = info.value.__cause__
    assert isinstance(err, DivergenceError)
    assert (err.position, err.expected, err.got) == (1, ("double", "double"), ("alt_step", "alt_step"))
