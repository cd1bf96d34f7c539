"""The command group: the store option, errors and exit codes, colour, completion, entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_demo import Demo, Run

from kitaru_store import Repository
from kitaru_store.cli import app, common, history, main, output
from kitaru_store.manifests import ENTRY_KINDS, STATUSES

HEAVY = ("lmdb", "zstandard", "msgspec", "blake3", "numpy", "pyfastcdc")


def _exe() -> list[str]:
    script = Path(sys.executable).parent / "kitaru-store"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kitaru_store.cli"]


def _sub(*args: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.CompletedProcess[bytes]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*_exe(), *args], capture_output=True, env=full_env, timeout=120, **kw)  # type: ignore[call-overload, no-any-return]


# --- a missing store -------------------------------------------------------------------------

READING = [
    ["log"],
    ["show", "abcd"],
    ["ls", "abcd"],
    ["cat", "abcd:x"],
    ["diff", "abcd", "abce"],
    ["gc"],
    ["fsck"],
    ["stats"],
    ["pins"],
    ["pin", "keep", "abcd"],
    ["unpin", "keep"],
]


@pytest.mark.parametrize("args", READING, ids=lambda a: a[0])
def test_missing_store_is_an_error_not_a_new_store(run: Run, store_path: Path, args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: no kitaru store at {store_path}")
    assert f"looked at: $KITARU_STORE={store_path}" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not store_path.exists()


@pytest.mark.parametrize("args", READING, ids=lambda a: a[0])
def test_missing_store_with_json_is_an_error_object(run: Run, store_path: Path, args: list[str]) -> None:
    result = run(*args, "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["error"] == "StoreNotFoundError"
    assert doc["message"] == f"no kitaru store at {store_path}"
    assert "looked at" in doc["hint"]
    assert result.stderr == ""
    assert not store_path.exists()


def test_store_option_wins_over_the_environment(run: Run, demo: Demo, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    result = run("--store", str(elsewhere), "log")
    assert result.exit_code == 1
    assert f"no kitaru store at {elsewhere}" in result.stderr
    assert not elsewhere.exists()
    moved = run("log", "--oneline", env={"KITARU_STORE": str(elsewhere)})
    assert moved.exit_code == 1
    assert run("--store", os.environ["KITARU_STORE"], "log", "--oneline").stdout.count("\n") == 4


# --- usage errors, help, version -------------------------------------------------------------


def test_usage_errors_exit_2(run: Run, demo: Demo) -> None:
    assert run("nope").exit_code == 2
    missing = run("show")
    assert missing.exit_code == 2
    assert "Missing argument 'EXEC'" in missing.stderr
    assert run("log", "-n", "-1").exit_code == 2


def test_help_and_version(run: Run) -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in (
        "log",
        "show",
        "ls",
        "cat",
        "diff",
        "gc",
        "fsck",
        "stats",
        "path",
        "migrate",
        "pin",
        "unpin",
        "pins",
    ):
        assert f"  {command} " in result.stdout
    assert "KITARU_STORE" in result.stdout
    assert run("-h").exit_code == 0
    assert run("--version").stdout == "kitaru-store, version 0.1.0\n"
    for command in ("log", "cat", "gc", "fsck"):
        sub = run(command, "--help")
        assert sub.exit_code == 0 and "--json" in sub.stdout


def test_main_entry_point() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0


def test_lazy_command_table_matches_the_command_modules() -> None:
    import importlib

    defined = {}
    for module in set(app.COMMAND_MODULES.values()):
        path = module if "." in module else f"kitaru_store.cli.{module}"  # dotted: another package's
        for command in importlib.import_module(path).COMMANDS:
            defined[command.name] = module
    assert defined == app.COMMAND_MODULES


def test_mirrored_choices_match_the_store() -> None:
    assert common.STATUSES == STATUSES
    assert history.KINDS == ENTRY_KINDS


# --- colour ----------------------------------------------------------------------------------


def test_plain_output_when_not_a_terminal(run: Run, demo: Demo) -> None:
    for args in (["log"], ["show", demo.ingest], ["diff", demo.research, demo.replay], ["fsck"]):
        assert "\x1b[" not in run(*args).stdout


def test_colour_on_a_terminal_unless_no_color(run: Run, demo: Demo) -> None:
    coloured = run("log", color=True)
    assert "\x1b[" in coloured.stdout
    plain = run("log", color=True, env={"NO_COLOR": "1"})
    assert "\x1b[" not in plain.stdout
    assert [line.split() for line in plain.stdout.splitlines()] == [
        line.split() for line in run("log").stdout.splitlines()
    ]
    err = run("cat", "abcd:x", color=True, env={"NO_COLOR": "1"})
    assert err.stderr.startswith("error: ")


# --- shell completion ------------------------------------------------------------------------


def test_completion_script() -> None:
    result = _sub(env={"_KITARU_STORE_COMPLETE": "bash_source"})
    assert result.returncode == 0, result.stderr
    script = result.stdout.decode()
    assert "_kitaru_store_completion" in script
    assert "complete -o nosort -F _kitaru_store_completion kitaru-store" in script


def _complete(run: Run, words: str) -> list[str]:
    cword = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    result = run(env={"_KITARU_STORE_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": cword})
    assert result.exit_code == 0
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line]


def test_completion_of_commands_ids_and_names(run: Run, demo: Demo) -> None:
    assert "show" in _complete(run, "kitaru-store sh")
    ids = _complete(run, "kitaru-store show ")
    assert set(ids) == {demo.research[:12], demo.replay[:12], demo.ingest[:12], demo.running[:12]}
    assert _complete(run, f"kitaru-store ls {demo.ingest[:3]}") == [demo.ingest[:12]]
    assert _complete(run, f"kitaru-store cat {demo.ingest[:3]}") == [demo.ingest[:12] + ":"]
    names = _complete(run, f"kitaru-store cat {demo.research[:8]}:s")
    assert names == [f"{demo.research[:8]}:summarize", f"{demo.research[:8]}:summarize.llm"]
    assert _complete(run, "kitaru-store log --status f") == ["failed"]


def test_completion_without_a_store_offers_nothing(run: Run, store_path: Path) -> None:
    assert _complete(run, "kitaru-store show ") == []
    assert not store_path.exists()


# --- a real process --------------------------------------------------------------------------


def test_help_in_a_process_imports_no_storage_libraries() -> None:
    result = _sub("--help")
    assert result.returncode == 0
    assert b"Commands:" in result.stdout
    code = (
        "import sys\n"
        "from kitaru_store.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip().splitlines()[-1] == "[]", probe.stderr


def _modules_after(argv: list[str]) -> set[str]:
    """The modules of kitaru_store (and the heavy libraries) that ``main(argv)`` loads in a process."""
    code = (
        "import sys\n"
        "from kitaru_store.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('kitaru_store') or m in"
        " ('zstandard', 'pyfastcdc', 'click', 'msgspec', 'typing', 'dataclasses')))\n"
    )
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    return set(eval(probe.stdout.strip().splitlines()[-1]))


OBJECT_ENGINE_AND_OTHER_COMMANDS = {
    "zstandard",
    "pyfastcdc",
    "kitaru_store.objects",
    "kitaru_store.codec",
    "kitaru_store.serialization",
    "kitaru_store.memory",
    "kitaru_store.cli.values",
    "kitaru_store.cli.maintenance",
    "kitaru_store.cli.memory",
    "kitaru_store.cli.remote",
}


def test_log_in_a_process_loads_neither_the_object_engine_nor_other_commands(demo: Demo) -> None:
    loaded = _modules_after(["log", "-n", "5", "-n", "2"])  # a repeated option: the click command
    assert "kitaru_store.cli.history" in loaded
    assert not loaded & OBJECT_ENGINE_AND_OTHER_COMMANDS


def test_log_fast_path_in_a_process_loads_neither_click_nor_msgspec(demo: Demo) -> None:
    loaded = _modules_after(["log", "-n", "2"])
    assert "kitaru_store.cli.quicklog" in loaded
    unwanted = {"click", "msgspec", "typing", "dataclasses", "kitaru_store.cli.history"}
    assert not loaded & (OBJECT_ENGINE_AND_OTHER_COMMANDS | unwanted)


def test_log_json_in_a_process(demo: Demo) -> None:
    result = _sub("log", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["exec_id"] for r in rows] == [demo.running, demo.ingest, demo.replay, demo.research]


def test_bytes_through_a_pipe(demo: Demo, tmp_path: Path) -> None:
    cat = subprocess.Popen([*_exe(), "cat", f"{demo.research}:raw"], stdout=subprocess.PIPE)
    digest = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, hashlib; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())",
        ],
        stdin=cat.stdout,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cat.stdout is not None
    cat.stdout.close()
    assert cat.wait(timeout=120) == 0
    import hashlib

    assert digest.stdout.strip() == hashlib.sha256(bytes(range(256)) * 2).hexdigest()


def test_error_in_a_process(tmp_path: Path) -> None:
    result = _sub("--store", str(tmp_path / "none"), "log")
    assert result.returncode == 1
    assert result.stderr.decode().startswith(f"error: no kitaru store at {tmp_path / 'none'}")
    assert b"\x1b[" not in result.stderr  # not a terminal: no colour


# --- formatting ------------------------------------------------------------------------------


def test_sizes_and_durations() -> None:
    assert output.size(0) == "0 B"
    assert output.size(1023) == "1023 B"
    assert output.size(1024) == "1.0 KiB"
    assert output.size(5 << 20) == "5.0 MiB"
    assert output.size(3 << 30) == "3.0 GiB"
    assert output.duration(0.34) == "340ms"
    assert output.duration(2.34) == "2.3s"
    assert output.duration(245) == "4m05s"
    assert output.duration(600) == "10m"
    assert output.duration(7380) == "2h03m"
    assert output.duration(7 * 86400) == "7d"
    assert output.duration(None) == "-"


def test_local_times(repo: Repository) -> None:
    import datetime as dt

    t = dt.datetime(2025, 3, 14, 9, 26, 53, tzinfo=dt.UTC)
    assert output.when(t) == t.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert output.when(None) == "-"
