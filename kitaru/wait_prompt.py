"""What a wait shows a person: the question asked on a terminal, or the commands that answer it.

On a terminal (stdin and stdout are TTYs, and ``KITARU_NO_PROMPT`` is not set) ``kitaru.wait()``
asks its question there and reads an answer: JSON, or plain text where the schema takes a string.
Otherwise the execution is left ``waiting`` and the commands that answer and resume it go to
stderr, exactly as ``handle.wait()`` names them::

    kitaru-store input <EXEC> --wait <NAME> --value '<JSON>'
    kitaru-store resume <EXEC>

(with ``--store PATH`` before the subcommand when the store is not the per-user default one).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from typing import TYPE_CHECKING, Any

from kitaru_store.names import CONTROL_CHARACTERS, escape

if TYPE_CHECKING:
    from kitaru_store import Repository
    from kitaru_store.manifests import WaitRecord

NO_PROMPT_VAR = "KITARU_NO_PROMPT"
EOF: Any = object()  # Ctrl-D
NOTHING: Any = object()  # no line within the time given


def prompting() -> bool:
    """Whether kitaru.wait() asks on the terminal: stdin and stdout are TTYs and the prompt is on."""
    if os.environ.get(NO_PROMPT_VAR, "") not in ("", "0"):
        return False
    try:
        return bool(sys.stdin and sys.stdin.isatty() and sys.stdout and sys.stdout.isatty())
    except (AttributeError, ValueError, OSError):  # a closed or replaced stream
        return False


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def store_option(repo: Repository) -> str:
    """``--store PATH `` unless the store is the per-user default one (which needs no option)."""
    from kitaru_store.config import user_data_dir

    root = os.path.realpath(repo.root)
    if root == os.path.realpath(user_data_dir()):
        return ""
    return f"--store {shlex.quote(str(repo.root))} "


def commands(repo: Repository, exec_id: str, record: WaitRecord) -> list[str]:
    """The two command lines that answer ``record`` and continue the execution."""
    import msgspec

    from .answer_schema import example

    sample = example(record.json_schema) if record.json_schema is not None else _legacy_example(record)
    value = msgspec.json.encode(sample).decode()
    store = store_option(repo)
    return [
        f"kitaru-store {store}input {exec_id} --wait {shlex.quote(record.name)} --value {_quoted(value)}",
        resume_command(repo, exec_id),
    ]


def resume_command(repo: Repository, exec_id: str) -> str:
    return f"kitaru-store {store_option(repo)}resume {exec_id}"


def _legacy_example(record: WaitRecord) -> Any:
    """An example for a wait stored before waits kept a JSON Schema (a builtin type, if that)."""
    name = record.schema.get("name") if record.schema.get("kind") == "builtin" else None
    return {"bool": True, "int": 0, "float": 0.0, "str": "text", "list": [], "dict": {}}.get(str(name))


def printable(text: str) -> str:
    """``text`` with control characters escaped, so that a question cannot drive the terminal."""
    import re

    return re.sub(f"[{CONTROL_CHARACTERS}]", lambda m: m[0] if m[0] in "\n\t" else escape(m[0]), text)


def announce(repo: Repository, exec_id: str, flow_name: str, record: WaitRecord, schema: str) -> None:
    """Tell stderr that the execution is left waiting, and how to answer and resume it."""
    lines = [f"kitaru: execution {exec_id} of flow {flow_name!r} waits for {record.name!r} ({schema})."]
    if record.question:
        lines += ["  " + line for line in printable(record.question).splitlines()]
    lines.append("Answer it, then continue the execution:")
    lines += ["  " + line for line in commands(repo, exec_id, record)]
    with contextlib.suppress(OSError, ValueError, AttributeError):  # no stderr: it waits all the same
        print("\n".join(lines), file=sys.stderr, flush=True)


def ask(record: WaitRecord, schema: str, *, optional: bool) -> None:
    """Show the question on the terminal, then the prompt."""
    out = [f"\nkitaru: {record.name!r} waits for an answer ({schema})"]
    if record.question:
        out.append(printable(record.question))
    empty = "empty answers null, Ctrl-D" if optional else "empty or Ctrl-D"
    out.append(f"Type JSON (or plain text where text is expected); {empty} leaves it waiting.")
    sys.stdout.write("\n".join(out) + "\n")
    again()


def again(problem: str | None = None) -> None:
    """The prompt, after what was wrong with the last answer if anything."""
    if problem:
        sys.stdout.write(f"not accepted: {printable(problem)}\n")
    sys.stdout.write("answer> ")
    sys.stdout.flush()


def say(text: str) -> None:
    sys.stdout.write(printable(text) + "\n")
    sys.stdout.flush()


def read_line(seconds: float) -> Any:
    """A line typed within ``seconds`` (without its newline), EOF, or NOTHING."""
    try:
        fd = sys.stdin.fileno()
        import select

        ready, _, _ = select.select([fd], [], [], seconds)
    except (OSError, ValueError, AttributeError, ImportError):  # no select on this stream: block
        try:
            return input()
        except EOFError:
            return EOF
    if not ready:
        return NOTHING
    data = os.read(fd, 1 << 16)  # a terminal in line mode hands over one line per read
    if not data:
        return EOF
    return data.decode(errors="replace").rstrip("\r\n")
