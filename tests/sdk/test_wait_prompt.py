"""A wait a person can answer: the terminal prompt (through a real pty), the commands printed when
there is no terminal, answering from another process that cannot import the schema's class,
``timeout=`` letting the process go, and ``handle.wait()`` naming the commands.

The flows run as ``python script.py`` in a child process, so their schema class lives in that
script's ``__main__``, which no other process can import.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import kitaru
from kitaru import KitaruClient
from kitaru.wait_prompt import NO_PROMPT_VAR

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import sys

    import msgspec

    import kitaru
    from kitaru import checkpoint, flow

    PREPARED = []


    class Score(msgspec.Struct):
        score: int
        tags: list[str] = []


    SCHEMAS = {"score": Score, "bool": bool, "text": str, "maybe": int | None}


    @checkpoint
    def prepare(topic: str) -> str:
        print("PREPARED", topic, flush=True)
        return topic.upper()


    @flow
    def rate(topic: str, kind: str, timeout: float | None) -> str:
        summary = prepare(topic)
        answer = kitaru.wait(
            name="rating", question=f"Rate {summary.load()}", schema=SCHEMAS[kind], timeout=timeout
        )
        if kind == "score":
            assert isinstance(answer, Score), type(answer)  # converted back in the flow's process
            answer = answer.score
        return f"{summary.load()}: {answer!r}"


    if __name__ == "__main__":
        if sys.argv[1] == "resume":
            handle = rate.resume(sys.argv[2])
        else:
            timeout = float(sys.argv[2]) if len(sys.argv) > 2 else None
            handle = rate.run("tides", sys.argv[1], timeout)
        print("STATUS", handle.status, handle.exec_id, flush=True)
        if handle.status == "completed":
            print("RESULT", handle.wait(), flush=True)
    """
)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "rate_flow.py"
    path.write_text(SCRIPT)
    return path


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != NO_PROMPT_VAR}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(kitaru.__file__).parents[1]), env.get("PYTHONPATH")) if p
    )
    env.update(extra)
    return env


class Terminal:
    """A child process whose stdin, stdout and stderr are a pty."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
        os.close(slave)
        self.seen = b""

    def read_until(self, token: str, seconds: float = 30, *, whole_line: bool = False) -> str:
        """What the terminal showed up to ``token`` (and the end of its line, if ``whole_line``)."""
        end = time.monotonic() + seconds
        while token.encode() not in self.seen or (
            whole_line and b"\n" not in self.seen[self.seen.index(token.encode()) :]
        ):
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {token!r} within {seconds}s; the terminal shows:\n{self.text}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.2))
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the child closed the pty
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"the terminal closed before {token!r}:\n{self.text}")
                self.seen += chunk
        return self.text

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    @property
    def text(self) -> str:
        return self.seen.decode(errors="replace").replace("\r\n", "\n")

    def close(self) -> int:
        try:
            return self.proc.wait(30)
        finally:
            os.close(self.master)


def _status_line(text: str) -> tuple[str, str]:
    [line] = [line for line in text.splitlines() if line.startswith("STATUS ")]
    _, status, exec_id = line.split()
    return status, exec_id


def _expected_commands(exec_id: str, value: str, store: Path) -> list[str]:
    option = f"--store {shlex.quote(str(store))}"
    return [
        f"kitaru-store {option} input {exec_id} --wait rating --value '{value}'",
        f"kitaru-store {option} resume {exec_id}",
    ]


def test_the_terminal_prompt_asks_again_on_a_bad_answer_and_the_flow_completes(
    script: Path, kitaru_temp_store: Path
) -> None:
    term = Terminal([sys.executable, str(script), "score"], _env())
    try:
        shown = term.read_until("answer> ")
        assert "kitaru: 'rating' waits for an answer (__main__:Score)" in shown
        assert "Rate TIDES" in shown
        term.type('{"score": 4, "tags": ["a", 7]}\n')
        shown = term.read_until("not accepted")
        term.read_until("answer> ", 10)
        assert "answer.tags[1]: expected str, got int" in term.text
        term.type("{not json\n")
        term.read_until("answer.tags", 10)
        term.type('{"score": 4, "tags": ["a"]}\n')
        shown = term.read_until("RESULT", 30, whole_line=True)
    finally:
        code = term.close()
    assert code == 0, term.text
    assert "RESULT TIDES: 4" in shown and "kitaru: 'rating' answered; continuing" in shown
    status, exec_id = _status_line(shown)
    assert status == "completed"
    execution = KitaruClient().executions.get(exec_id)
    [wait] = KitaruClient().repository.get_execution(exec_id).waits
    assert wait.status == "answered" and wait.answered_by["pid"] == term.proc.pid
    [entry] = [a for a in execution.artifacts if a.kind == "wait_input"]  # as `input` records it
    assert (entry.name, entry.type) == ("rating", "input")
    with pytest.warns(RuntimeWarning, match="__main__:Score"):  # stored as a Score by the flow's
        assert entry.load() == {"score": 4, "tags": ["a"]}  # process; this one loads its fields


def test_plain_text_answers_a_str_wait_and_ctrl_d_leaves_a_bool_wait_waiting(
    script: Path, kitaru_temp_store: Path
) -> None:
    term = Terminal([sys.executable, str(script), "text"], _env())
    try:
        term.read_until("answer> ")
        term.type("fine as it is\n")  # not JSON: a str schema takes the text itself
        shown = term.read_until("RESULT", whole_line=True)
    finally:
        term.close()
    assert "RESULT TIDES: 'fine as it is'" in shown

    term = Terminal([sys.executable, str(script), "bool"], _env())
    try:
        term.read_until("answer> ")
        term.type("\n")  # empty: a bool wait cannot be left empty, so it stays waiting
        shown = term.read_until("STATUS", whole_line=True)
    finally:
        code = term.close()
    assert code == 0
    status, exec_id = _status_line(shown)
    assert status == "waiting"
    assert "Answer it, then continue the execution:" in shown
    for line in _expected_commands(exec_id, "true", kitaru_temp_store):
        assert line in shown
    assert [w.status for w in KitaruClient().executions.get(exec_id).waits] == ["pending"]

    term = Terminal([sys.executable, str(script), "bool"], _env())
    try:
        term.read_until("answer> ")
        term.type("\x04")  # Ctrl-D
        shown = term.read_until("STATUS", whole_line=True)
    finally:
        term.close()
    assert _status_line(shown)[0] == "waiting"


def test_an_empty_answer_to_an_optional_wait_is_null(script: Path) -> None:
    term = Terminal([sys.executable, str(script), "maybe"], _env())
    try:
        shown = term.read_until("answer> ")
        assert "empty answers null" in shown
        term.type("\n")
        shown = term.read_until("RESULT", whole_line=True)
    finally:
        term.close()
    assert "RESULT TIDES: None" in shown


def test_no_prompt_and_a_timeout_on_a_terminal_leave_the_execution_waiting(
    script: Path, kitaru_temp_store: Path
) -> None:
    term = Terminal([sys.executable, str(script), "bool"], _env(**{NO_PROMPT_VAR: "1"}))
    try:
        shown = term.read_until("STATUS", whole_line=True)
    finally:
        term.close()
    assert "answer>" not in shown and _status_line(shown)[0] == "waiting"

    started = time.monotonic()
    term = Terminal([sys.executable, str(script), "bool", "1.0"], _env())
    try:
        term.read_until("answer> ")
        shown = term.read_until(
            "STATUS", whole_line=True
        )  # nobody types: the prompt gives up after the timeout
    finally:
        term.close()
    assert time.monotonic() - started < 20
    status, exec_id = _status_line(shown)
    assert status == "waiting"
    assert _expected_commands(exec_id, "true", kitaru_temp_store)[0] in shown


def _run_without_terminal(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )


ANSWER_ELSEWHERE = textwrap.dedent(
    """
    import json, sys
    from kitaru import KitaruClient, InputValidationError
    exec_id, bad, good = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    client = KitaruClient()
    try:
        client.executions.input(exec_id, wait="rating", value=bad)
    except InputValidationError as err:
        print("REFUSED", err.message)
    print("GIVEN", json.dumps(client.executions.input(exec_id, wait="rating", value=good)))
    print("SCORE_IMPORTED", any(hasattr(m, "Score") for m in list(sys.modules.values())))
    """
)


def test_without_a_terminal_the_commands_are_printed_and_a_class_in_main_validates_elsewhere(
    script: Path, kitaru_temp_store: Path
) -> None:
    started = _run_without_terminal(script, "score")
    assert started.returncode == 0, started.stderr
    status, exec_id = _status_line(started.stdout)
    assert status == "waiting"
    commands = _expected_commands(exec_id, '{"score":0}', kitaru_temp_store)
    assert started.stderr.splitlines() == [
        f"kitaru: execution {exec_id} of flow 'rate' waits for 'rating' (__main__:Score).",
        "  Rate TIDES",
        "Answer it, then continue the execution:",
        *(f"  {c}" for c in commands),
    ]
    [pending] = KitaruClient().executions.pending_waits(exec_id)
    assert list(pending.commands) == commands
    with pytest.raises(kitaru.ExecutionWaitingError) as info:
        _handle(exec_id).wait()
    assert info.value.hint == "answer it, then continue the execution:\n  " + "\n  ".join(commands)

    # Another process, which cannot import the script's Score, validates against the stored schema.
    answered = subprocess.run(
        [sys.executable, "-c", ANSWER_ELSEWHERE, exec_id, '{"score": "4"}', '{"score": 4, "tags": ["x"]}'],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert answered.returncode == 0, answered.stderr
    assert (
        "REFUSED input for wait 'rating' does not match its schema __main__:Score:"
        " answer.score: expected int, got str"
    ) in answered.stdout
    assert 'GIVEN {"score": 4, "tags": ["x"]}' in answered.stdout
    assert "SCORE_IMPORTED False" in answered.stdout

    resumed = _run_without_terminal(script, "resume", exec_id)
    assert resumed.returncode == 0, resumed.stderr
    assert "RESULT TIDES: 4" in resumed.stdout
    assert "PREPARED" not in resumed.stdout  # the completed checkpoint was reused


def _handle(exec_id: str) -> kitaru.FlowHandle:
    client = KitaruClient()
    return kitaru.FlowHandle(repo=client.repository, exec_id=exec_id, flow_name="rate", status="waiting")


def test_the_printed_commands_answer_and_resume_it(script: Path, kitaru_temp_store: Path) -> None:
    """Run the printed command lines themselves, as a person would paste them."""
    started = _run_without_terminal(script, "score")
    status, exec_id = _status_line(started.stdout)
    lines = [line.strip() for line in started.stderr.splitlines() if line.strip().startswith("kitaru-store ")]
    assert len(lines) == 2 and status == "waiting"
    cli = shutil.which("kitaru-store", path=str(Path(sys.executable).parent)) or "kitaru-store"
    for line in lines:
        argv = shlex.split(line)
        done = subprocess.run([cli, *argv[1:]], capture_output=True, text=True, env=_env(), timeout=120)
        assert done.returncode == 0, (line, done.stdout, done.stderr)
    execution = KitaruClient().executions.get(exec_id)
    assert execution.status == "completed"
    assert execution.waits[0].status == "answered"
    assert execution.artifact("rating").load() == {"score": 0}


def test_the_timeout_lets_the_process_go_and_leaves_the_execution_waiting(
    script: Path, kitaru_temp_store: Path
) -> None:
    started = time.monotonic()
    done = _run_without_terminal(script, "bool", "0.5")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30
    status, exec_id = _status_line(done.stdout)
    assert status == "waiting"
    assert KitaruClient().executions.get(exec_id).status == "waiting"
    assert _expected_commands(exec_id, "true", kitaru_temp_store)[1] in done.stderr


def test_the_printed_value_is_json_the_shell_passes_through_unchanged() -> None:
    """A value with a quote in it survives the shell's single quotes."""
    from kitaru.wait_prompt import _quoted

    for text in ['"it\'s"', "{}", '{"a":"b c"}']:
        assert shlex.split(f"--value {_quoted(text)}") == ["--value", text]
        json.loads(text)


def test_the_test_store_fixture_turns_the_prompt_off(kitaru_temp_store: Path) -> None:
    """Under `pytest -s` in a terminal a wait would otherwise stop the test run to ask."""
    from kitaru.wait_prompt import prompting

    assert os.environ[NO_PROMPT_VAR] == "1"
    assert prompting() is False
