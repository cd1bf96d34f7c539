"""The fast path of ``kitaru-store log`` (cli/quicklog.py) against the click command it stands in for.

The same arguments must give the same bytes on stdout and stderr and the same exit code, on a
terminal and off it, with and without NO_COLOR; whatever the fast path does not handle it must
leave to click untouched (run() returns None, having printed nothing).
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from cli_demo import Demo
from click.testing import CliRunner

from kitaru_store import Repository, checksum
from kitaru_store.cli import log_options, quicklog, text
from kitaru_store.cli.app import cli
from kitaru_store.manifests import STATUSES, decode_summary, encode

Outcome = tuple[int | None, str, str]  # exit code, stdout, stderr


class _Stream(io.TextIOWrapper):
    """A UTF-8 text stream in memory that is, or is not, a terminal."""

    def __init__(self, tty: bool) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8")
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def text(self) -> str:
        self.flush()
        assert isinstance(self.buffer, io.BytesIO)
        return self.buffer.getvalue().decode()


def fast(args: list[str], *, tty: bool, no_color: bool) -> Outcome:
    """quicklog.run(args) in this process; (None, "", "") when it leaves the arguments to click."""
    out, err = _Stream(tty), _Stream(tty)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stdout", out)
        mp.setattr(sys, "stderr", err)
        if no_color:
            mp.setenv("NO_COLOR", "1")
        else:
            mp.delenv("NO_COLOR", raising=False)
        code = quicklog.run(args)
    return code, out.text(), err.text()


def slow(args: list[str], *, tty: bool, no_color: bool) -> Outcome:
    """The click command in this process (on a terminal: click.echo keeps the colour codes)."""
    result = CliRunner().invoke(
        cli,
        args,
        color=tty,
        env={"NO_COLOR": "1" if no_color else None},
        prog_name="kitaru-store",
        catch_exceptions=False,
    )
    return result.exit_code, result.stdout, result.stderr


DISPLAYS = [(False, False), (True, False), (True, True)]  # (terminal, NO_COLOR)

T0 = dt.datetime(2024, 2, 29, 23, 59, 30, 250_000, tzinfo=dt.UTC)
FLOWS = ["research", "f-1", "überflow", "a much longer flow name than the others", "ingest"]


@pytest.fixture
def many(repo: Repository, demo: Demo) -> Repository:
    """The demo store and 320 more executions: more than a page of `log` (100) and more than a
    read batch (256), five flows, every status, long names late (columns widen), open and
    finished runs, times to the microsecond."""
    with repo.writer() as w:
        for i in range(320):
            started = T0 + dt.timedelta(seconds=7 * i, microseconds=i)
            exec_id = w.create_execution(
                FLOWS[i % 5] if i < 250 else FLOWS[3], started_at=started, status=STATUSES[i % 5]
            )
            if i % 3:
                w.update_execution(exec_id, ended_at=started + dt.timedelta(seconds=i * 37.5))
    return repo


# --- the same output -------------------------------------------------------------------------

LOG_OPTIONS = [
    [*limit, *flow, *status, *oneline]
    for limit in ([], ["-n", "0"], ["-n", "1"], ["-n", "150"], ["-n", "1000"])
    for flow in ([], ["--flow", "research"], ["--flow", "überflow"], ["--flow", "nope"])
    for status in ([], ["--status", "completed"], ["--status", "waiting"])
    for oneline in ([], ["--oneline"])
]


@pytest.mark.parametrize(("tty", "no_color"), DISPLAYS, ids=["pipe", "terminal", "terminal-NO_COLOR"])
def test_same_output_as_the_click_command(many: Repository, tty: bool, no_color: bool) -> None:
    for options in LOG_OPTIONS:
        args = ["log", *options]
        got = fast(args, tty=tty, no_color=no_color)
        assert got[0] is not None, args  # handled by the fast path
        assert got == slow(args, tty=tty, no_color=no_color), args


def test_colours_are_there_on_a_terminal(many: Repository) -> None:
    _, out, _ = fast(["log", "-n", "3"], tty=True, no_color=False)
    assert out.startswith("\x1b[1mID ")
    assert "\x1b[33m" in out
    assert "\x1b[" not in fast(["log", "-n", "3"], tty=False, no_color=False)[1]


@pytest.mark.parametrize(
    "args",
    [
        ["log", "-n2"],
        ["log", "--max-count", "2"],
        ["log", "--max-count=2"],
        ["log", "-n", "007"],
        ["log", "--flow=research", "--status=completed"],
        ["log", "--oneline", "-n", "3", "--flow", "f-1"],
        ["log", "--flow", "log"],
        ["log", "--flow", "a=b"],
    ],
)
def test_the_ways_to_write_options(many: Repository, args: list[str]) -> None:
    got = fast(args, tty=False, no_color=False)
    assert got[0] is not None
    assert got == slow(args, tty=False, no_color=False)


def test_the_store_option_and_the_environment(
    many: Repository, store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for args in (
        ["--store", str(store_path), "log", "-n", "5"],
        [f"--store={store_path}", "log", "-n", "5"],
    ):
        for env in (str(store_path), str(tmp_path / "elsewhere"), None):
            if env is None:
                monkeypatch.delenv("KITARU_STORE", raising=False)
            else:
                monkeypatch.setenv("KITARU_STORE", env)
            got = fast(args, tty=False, no_color=False)
            assert got[0] == 0
            assert got == slow(args, tty=False, no_color=False)
    monkeypatch.delenv("KITARU_STORE", raising=False)
    monkeypatch.chdir(store_path.parent)
    (store_path.parent / ".kitaru").symlink_to(store_path)  # the store found by walking up
    got = fast(["log"], tty=False, no_color=False)
    assert got[0] == 0
    assert got == slow(["log"], tty=False, no_color=False)


def test_an_empty_store(repo: Repository) -> None:
    for args in (["log"], ["log", "--oneline"], ["log", "--flow", "x"], ["log", "--status", "failed"]):
        got = fast(args, tty=False, no_color=False)
        assert got[0] == 0
        assert got == slow(args, tty=False, no_color=False)
    assert fast(["log"], tty=False, no_color=False)[2] == "no executions yet\n"


# --- what is left to click -------------------------------------------------------------------


LEFT_TO_CLICK = [
    [],
    ["--help"],
    ["-h"],
    ["-V"],
    ["show", "abcd"],
    ["log", "--json"],
    ["log", "-n", "2", "--json"],
    ["log", "--help"],
    ["log", "-h"],
    ["log", "-n", "-1"],
    ["log", "-n", "x"],
    ["log", "-n", "1.5"],
    ["log", "-n", " 2"],
    ["log", "-n", "٣"],
    ["log", "-n=2"],
    ["log", "-n"],
    ["log", "-n", "1", "-n", "2"],
    ["log", "--oneline", "--oneline"],
    ["log", "--oneline=yes"],
    ["log", "--status", "finished"],
    ["log", "--status", "Completed"],
    ["log", "--flow"],
    ["log", "--flow="],
    ["log", "--flow", "-x"],
    ["log", "--max"],
    ["log", "extra"],
    ["log", "--"],
    ["log", "-"],
    ["log", "--store", "x"],
    ["--store"],
    ["--store", "", "log"],
    ["--store", "a", "--store", "b", "log"],
    ["-n", "2", "log"],
]


@pytest.mark.parametrize("args", LEFT_TO_CLICK, ids=lambda a: " ".join(a) or "(none)")
def test_anything_else_is_left_to_click(many: Repository, args: list[str]) -> None:
    assert fast(args, tty=False, no_color=False) == (None, "", "")


def test_errors_before_output_are_left_to_click(
    store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert fast(["log"], tty=False, no_color=False) == (None, "", "")  # no store yet
    assert slow(["log"], tty=False, no_color=False)[0] == 1
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert fast(["--store", str(a_file), "log"], tty=False, no_color=False) == (None, "", "")
    assert slow(["--store", str(a_file), "log"], tty=False, no_color=False)[0] == 2
    monkeypatch.setenv("KITARU_STORE", str(a_file))
    assert fast(["log"], tty=False, no_color=False) == (None, "", "")
    not_a_store = tmp_path / "not-a-store"
    not_a_store.mkdir()
    (not_a_store / "notes.txt").write_text("")
    assert fast(["--store", str(not_a_store), "log"], tty=False, no_color=False) == (None, "", "")


def test_shell_completion_is_left_to_click(many: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(quicklog.COMPLETE_VAR, "bash_complete")
    assert fast(["log"], tty=False, no_color=False) == (None, "", "")


def test_streams_click_would_rewrap_are_left_to_click(
    many: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="ascii"))
    assert quicklog.run(["log"]) is None
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert quicklog.run(["log"]) is None


# --- what the two share ----------------------------------------------------------------------


def test_log_colours_are_click_style() -> None:
    """text.py paints `log` for both paths, with the codes the other commands get from click."""
    for name, code in text.SGR.items():
        styled = click.style("x", bold=True) if name == "bold" else click.style("x", fg=name)
        assert styled == code + "x" + text.RESET
    for colour in text.STATUS_COLOURS.values():
        assert colour in text.SGR


def test_the_options_are_the_click_commands(many: Repository) -> None:
    """Every spelling of every option in log_options.OPTIONS is one of the click command's, and
    the fast path takes each as click does."""
    from kitaru_store.cli.history import log

    clicks = {spelling for p in log.params for spelling in p.opts}
    for spellings, _, takes, _, _ in log_options.OPTIONS:
        assert set(spellings) <= clicks
        for spelling in spellings:
            args = ["log", spelling] if takes == log_options.FLAG else ["log", spelling, _VALUES[takes]]
            got = fast(args, tty=False, no_color=False)
            assert got[0] == 0, args
            assert got == slow(args, tty=False, no_color=False), args


_VALUES = {log_options.COUNT: "3", log_options.TEXT: "research", log_options.STATUS: "failed"}


def test_control_characters_in_a_status_are_escaped(repo: Repository) -> None:
    """A status is free text (the API does not check it): its control characters are shown as
    escapes by both paths, on a terminal and off it, instead of reaching the terminal or being
    taken apart by click's removal of colour codes."""
    with repo.writer() as w:
        w.create_execution("f", started_at=T0, status="\x1b[2Jgone\x9b")
    for tty, no_color in DISPLAYS:
        for args in (["log"], ["log", "--oneline"]):
            got = fast(args, tty=tty, no_color=no_color)
            assert "\\u001b[2Jgone\\u009b" in got[1]
            assert got == slow(args, tty=tty, no_color=no_color)


def test_the_walk_is_iter_executions(many: Repository) -> None:
    backend = many._backend()
    for flow, status in itertools.product([None, *FLOWS, "nope"], [None, *STATUSES]):
        ours = [
            (s.exec_id, s.started_at, s.status)
            for s in quicklog.newest_first(backend, flow=flow, status=status)
        ]
        theirs = [(s.exec_id, s.started_at, s.status) for s in many.iter_executions(flow=flow, status=status)]
        assert ours == theirs, (flow, status)
    assert len(list(quicklog.newest_first(backend, flow=None, status=None))) == 324


def test_summaries_written_before_the_layout_are_listed(many: Repository) -> None:
    """A store written before summary.py's layout holds MessagePack summaries (the older ones
    without a checksum): the fast path lists them as the click command does."""
    with many.kv.read() as rt:
        stored = list(rt.items(b"exec_time"))

    def to_msgpack(wt: Any) -> None:
        for i, (key, value) in enumerate(stored):
            old = encode(decode_summary(value))
            wt.put(b"exec_time", key, old if i % 2 else checksum.seal(old))

    many._backend().update(to_msgpack)
    listed = {}
    for args in (["log"], ["log", "--flow", "research", "--oneline"]):
        got = fast(args, tty=False, no_color=False)
        assert got[0] == 0 and got[2] == ""  # no damaged row
        assert got == slow(args, tty=False, no_color=False)
        listed[args[-1]] = got[1].splitlines()
    assert len(listed["log"]) == 1 + len(stored)
    assert len(listed["--oneline"]) == sum(" research " in line for line in listed["log"])


# --- real processes --------------------------------------------------------------------------

FAST = [sys.executable, "-m", "kitaru_store.cli"]  # main(): the fast path where it applies
CLICK = [sys.executable, "-c", "import sys; from kitaru_store.cli.app import main; main(sys.argv[1:])"]


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    return subprocess.run(argv, capture_output=True, env=env, timeout=120, **kw)  # type: ignore[call-overload, no-any-return]


@pytest.mark.parametrize(
    "args",
    [["log"], ["log", "-n", "20", "--oneline"], ["log", "--flow", "nope"], ["log", "--status", "finished"]],
)
def test_in_a_process_through_a_pipe(many: Repository, args: list[str]) -> None:
    fast_run, click_run = _run([*FAST, *args]), _run([*CLICK, *args])
    assert (fast_run.returncode, fast_run.stdout, fast_run.stderr) == (
        click_run.returncode,
        click_run.stdout,
        click_run.stderr,
    )


def test_a_crashed_run_among_more_than_a_batch(repo: Repository) -> None:
    # Recording the crash opens the store writable in the middle of the listing; the read-only
    # handle the listing reads its next batch with must go on working.
    import msgspec

    from kitaru_store import liveness

    with repo.writer() as w:
        for i in range(300):
            w.create_execution("f", started_at=T0 + dt.timedelta(seconds=i), status="completed")
        crashed = w.create_execution("f", started_at=T0 + dt.timedelta(hours=1))
        gone = msgspec.structs.replace(liveness.this_owner(), pid=2**22 + 1, proc_start=1)
        w.mutate(crashed, lambda m: msgspec.structs.replace(m, owner=gone))
    lock = Path(liveness.lock_path(repo.root, crashed))
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.touch()  # a free run lock, as a killed owner leaves it
    listed = _run([*FAST, "log", "-n", "1000", "--oneline"])
    assert (listed.returncode, listed.stderr) == (0, b"")
    lines = listed.stdout.decode().splitlines()
    assert len(lines) == 301 and "failed" in lines[0] and crashed[:12] in lines[0]
    assert repo.get_execution(crashed, observe=False).status == "failed"  # recorded by `log`


def _on_a_terminal(argv: list[str]) -> tuple[int, bytes]:
    import pty

    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    proc = subprocess.Popen(argv, stdout=follower, stderr=subprocess.DEVNULL, env=env)
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.wait(timeout=120), b"".join(chunks)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_in_a_process_on_a_terminal(many: Repository) -> None:
    for args in (["log", "-n", "120"], ["log", "--oneline", "--status", "failed"]):
        fast_code, fast_out = _on_a_terminal([*FAST, *args])
        assert b"\x1b[33m" in fast_out
        assert (fast_code, fast_out) == _on_a_terminal([*CLICK, *args])


def test_in_a_process_into_a_closed_pipe(many: Repository) -> None:
    outcomes = []
    for argv in (FAST, CLICK):
        proc = subprocess.Popen([*argv, "log"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # before the first line: `log | head -0`
        outcomes.append((proc.wait(timeout=120), proc.stderr.read()))
        proc.stderr.close()
    assert outcomes[0] == outcomes[1] == (1, b"")


def test_main_exits_with_the_exit_code(many: Repository) -> None:
    from kitaru_store.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["log", "-n", "0", "--oneline"])
    assert exc.value.code == 0


def test_damaged_summaries_are_reported_and_the_listing_goes_on(repo: Repository) -> None:
    """40 summaries damaged at a random byte each, among 60 executions: `log` (the fast path, the
    click command, --json) lists every row, the damaged ones as damaged with a warning each on
    stderr, and exits 0 without a traceback."""
    rng = random.Random(10)
    with repo.writer() as w:
        made = [w.create_execution("ingest", started_at=T0 + dt.timedelta(minutes=i)) for i in range(60)]
    victims = set(rng.sample(made, 40))
    with repo.kv.read() as rt:
        stored = dict(rt.items(b"exec_time"))

    def damage(wt: Any) -> None:
        for key, value in stored.items():
            if key[8:].hex() in victims:
                raw = bytearray(value)
                raw[rng.randrange(len(raw))] ^= rng.randrange(1, 256)
                wt.put(b"exec_time", key, bytes(raw))

    repo._backend().update(damage)
    runs = {
        "fast": _run([*FAST, "log"]),
        "click": _run([*CLICK, "log"]),
        "json": _run([*FAST, "log", "--json"]),
    }
    for how, done in runs.items():
        err = done.stderr.decode()
        assert done.returncode == 0, (how, err)
        assert "Traceback" not in err, how
        warned = {line.split()[2].rstrip(":") for line in err.splitlines() if line.startswith("warning:")}
        assert warned == victims, how
    rows = [line.split() for line in runs["fast"].stdout.decode().splitlines()[1:]]
    assert len(rows) == 60
    assert {r[0] for r in rows if r[2] == "damaged"} == {v[:12] for v in victims}
    assert {r[0] for r in rows if r[2] == "running"} == {m[:12] for m in made if m not in victims}
    assert runs["fast"].stdout == runs["click"].stdout and runs["fast"].stderr == runs["click"].stderr
    listed = json.loads(runs["json"].stdout)
    assert {d["exec_id"] for d in listed if d["status"] == "damaged" and d["problem"]} == victims
    assert len(listed) == 60
