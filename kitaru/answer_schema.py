"""The JSON Schema stored with a wait: derive it from a schema type, check an answer, show an example.

A wait stores the JSON Schema of its schema type (msgspec's ``msgspec.json.schema`` for builtins,
generics, Structs, dataclasses, TypedDicts and enums; pydantic's ``model_json_schema``), so that
any process checks an answer without the class: a class defined in a script's ``__main__`` is
never imported. The checker covers the subset those two emit, with msgspec's strict meaning where
JSON Schema is looser (an ``integer`` is an int, never ``2.0`` or ``true``); annotations it does
not know (title, default, discriminator, ...) do not constrain.

A stored schema is data read from disk, so checking is bounded: ``$ref`` only points into the
schema itself, a chain of ``$ref``/``anyOf`` that does not descend into the answer is cut short,
a check visits at most MAX_STEPS schema nodes, and a ``pattern`` (Python's backtracking re) gets
PATTERN_SECONDS per string. Errors name the path of the bad field:
``answer.items[2].score: expected int, got str``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

MAX_STEPS = 200_000  # schema nodes one check may visit
MAX_HOPS = 32  # $ref / anyOf / oneOf / allOf / not in a row without descending into the answer
MAX_PATTERN = 1_000  # characters of a regular expression taken from a stored schema
PATTERN_SECONDS = 1.0  # the time one stored pattern may take on one string (it may backtrack)
ROOT = "answer"

_TYPE_NAMES = {
    "integer": "int",
    "number": "float",
    "string": "str",
    "boolean": "bool",
    "null": "null",
    "array": "list",
    "object": "object",
}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class SchemaMismatch(Exception):
    """The answer does not match: ``path`` names the field, ``problem`` what is wrong with it."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class BadSchema(Exception):
    """The stored schema itself cannot be used (an unknown $ref, a loop, too large to check)."""


def json_schema_of(schema: Any) -> dict[str, Any]:
    """The JSON Schema of a wait's schema type (``{}`` accepts anything)."""
    import sys
    import typing

    if schema is None or schema is typing.Any:
        return {}
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(schema, type) and issubclass(schema, pydantic.BaseModel):
        return dict(schema.model_json_schema())  # type: ignore[attr-defined]
    import msgspec

    return dict(msgspec.json.schema(schema))


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if name == "array":
        return isinstance(value, (list, tuple))
    if name == "object":
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    return False


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, 1 is not 1.0 (as msgspec's strict conversion decides)."""
    if type_name(a) != type_name(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if _IDENTIFIER.match(key) else f"{path}[{key!r}]"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Checker:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.steps = 0

    def resolve(self, ref: Any) -> Any:
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            raise BadSchema(f"unsupported $ref {_shown(ref)} (only references into the schema itself)")
        node = self.root
        for part in ref[2:].split("/") if ref != "#" else ():
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise BadSchema(f"$ref {_shown(ref)} points at nothing")
        return node

    def check(self, value: Any, schema: Any, path: str, hops: int = 0) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise BadSchema(f"the schema takes more than {MAX_STEPS} steps to check")
        if hops > MAX_HOPS:
            raise BadSchema(f"the schema refers to itself more than {MAX_HOPS} times in a row")
        if schema is True:
            return
        if schema is False:
            raise SchemaMismatch(path, "no value is allowed here")
        if not isinstance(schema, dict):
            raise BadSchema(f"a schema node is a {type(schema).__name__}, not an object")
        if "$ref" in schema:
            self.check(value, self.resolve(schema["$ref"]), path, hops + 1)
        for sub in _list(schema.get("allOf")):
            self.check(value, sub, path, hops + 1)
        if "anyOf" in schema:
            self.any_of(value, _list(schema["anyOf"]), path, hops, exactly_one=False)
        if "oneOf" in schema:
            self.any_of(value, _list(schema["oneOf"]), path, hops, exactly_one=True)
        if "not" in schema and self.matches(value, schema["not"], path, hops + 1):
            raise SchemaMismatch(path, "matches a schema it must not match")
        self.type_(value, schema, path)
        if "const" in schema and not _same(value, schema["const"]):
            raise SchemaMismatch(path, f"expected {_shown(schema['const'])}, got {_shown(value)}")
        if "enum" in schema:
            options = _list(schema["enum"])
            if not any(_same(value, option) for option in options):
                shown = ", ".join(_shown(o) for o in options[:10]) + (", ..." if len(options) > 10 else "")
                raise SchemaMismatch(path, f"expected one of {shown}; got {_shown(value)}")
        if _is_type(value, "number"):
            _number(value, schema, path)
        elif isinstance(value, str):
            _string(value, schema, path)
        elif isinstance(value, (list, tuple)):
            self.array(value, schema, path)
        elif isinstance(value, dict):
            self.object_(value, schema, path)

    def matches(self, value: Any, schema: Any, path: str, hops: int) -> bool:
        try:
            self.check(value, schema, path, hops)
        except SchemaMismatch:
            return False
        return True

    def any_of(self, value: Any, options: list[Any], path: str, hops: int, *, exactly_one: bool) -> None:
        problems: list[SchemaMismatch] = []
        matched = 0
        for option in options:
            try:
                self.check(value, option, path, hops + 1)
                matched += 1
                if not exactly_one:
                    return
            except SchemaMismatch as exc:
                problems.append(exc)
        if matched == 1 or (matched and not exactly_one):
            return
        if matched > 1:
            raise SchemaMismatch(path, f"matches {matched} of the alternatives, not exactly one")
        deeper = [p for p in problems if p.path != path]
        if len(deeper) == 1:  # one alternative got as far as a field: that one is meant
            raise deeper[0]
        if problems and all(p.problem.startswith("expected ") and p.path == path for p in problems):
            wanted = " or ".join(_expected(p.problem) for p in problems)
            raise SchemaMismatch(path, f"expected {wanted}, got {type_name(value)}")
        raise SchemaMismatch(path, "matches none of: " + "; ".join(p.problem for p in problems[:5]))

    def type_(self, value: Any, schema: dict[str, Any], path: str) -> None:
        if "type" not in schema:
            return
        names = _list(schema["type"]) if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, n) for n in names):
            wanted = " or ".join(_TYPE_NAMES.get(str(n), str(n)) for n in names)
            raise SchemaMismatch(path, f"expected {wanted}, got {type_name(value)}")

    def array(self, value: list[Any] | tuple[Any, ...], schema: dict[str, Any], path: str) -> None:
        _bounds(len(value), schema, "minItems", "maxItems", "items", path)
        prefix = _list(schema.get("prefixItems"))
        for i, item in enumerate(value):
            if i < len(prefix):
                self.check(item, prefix[i], f"{path}[{i}]")
            elif "items" in schema:
                if schema["items"] is False:
                    raise SchemaMismatch(path, f"expected at most {len(prefix)} items, got {len(value)}")
                self.check(item, schema["items"], f"{path}[{i}]")

    def object_(self, value: dict[str, Any], schema: dict[str, Any], path: str) -> None:
        _bounds(len(value), schema, "minProperties", "maxProperties", "fields", path)
        for name in _list(schema.get("required")):
            if isinstance(name, str) and name not in value:
                raise SchemaMismatch(_key(path, name), "required field missing")
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                self.check(item, properties[key], _key(path, key))
            elif extra is False:
                raise SchemaMismatch(_key(path, key), "unknown field")
            elif extra is not True:
                self.check(item, extra, _key(path, key))


def _list(node: Any) -> list[Any]:
    if node is None:
        return []
    if not isinstance(node, list):
        raise BadSchema(f"expected a list in the schema, found a {type(node).__name__}")
    return node


def _expected(problem: str) -> str:
    return problem.removeprefix("expected ").split(", got ")[0].split("; got ")[0]


def _limit(schema: dict[str, Any], key: str) -> Any:
    limit = schema.get(key)
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, float)):
        raise BadSchema(f"{key} is {_shown(limit)}, not a number")
    return limit


def _bounds(count: int, schema: dict[str, Any], low: str, high: str, what: str, path: str) -> None:
    least, most = _limit(schema, low), _limit(schema, high)
    if least is not None and count < least:
        raise SchemaMismatch(path, f"expected at least {least} {what}, got {count}")
    if most is not None and count > most:
        raise SchemaMismatch(path, f"expected at most {most} {what}, got {count}")


# Each numeric bound: its keyword, when a value breaks it, and how a message words it.
_NUMBER_BOUNDS: tuple[tuple[str, Callable[[float, float], bool], str], ...] = (
    ("minimum", lambda x, b: x < b, ">="),
    ("maximum", lambda x, b: x > b, "<="),
    ("exclusiveMinimum", lambda x, b: x <= b, ">"),
    ("exclusiveMaximum", lambda x, b: x >= b, "<"),
)


def _number(value: float, schema: dict[str, Any], path: str) -> None:
    for key, fails, word in _NUMBER_BOUNDS:
        bound = _limit(schema, key)
        if bound is not None and fails(value, bound):
            raise SchemaMismatch(path, f"expected a number {word} {bound}, got {_shown(value)}")
    step = _limit(schema, "multipleOf")
    if step is not None and step > 0:
        if isinstance(value, int) and isinstance(step, int):
            ok = value % step == 0
        else:
            ok = math.isfinite(value) and math.fmod(value, step) == 0
        if not ok:
            raise SchemaMismatch(path, f"expected a multiple of {step}, got {_shown(value)}")


def _string(value: str, schema: dict[str, Any], path: str) -> None:
    _bounds(len(value), schema, "minLength", "maxLength", "characters", path)
    pattern = schema.get("pattern")
    if pattern is not None:
        if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN:
            raise BadSchema(f"pattern {_shown(pattern)} is not a usable regular expression")
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise BadSchema(f"pattern {_shown(pattern)} is not a regular expression: {exc}") from None
        if not _search(compiled, value):
            raise SchemaMismatch(path, f"expected text matching {pattern!r}, got {_shown(value)}")
    fmt = _FORMATS.get(str(schema.get("format")), _FORMATS.get(f"encoding:{schema.get('contentEncoding')}"))
    if fmt is not None:
        import msgspec

        try:
            msgspec.convert(value, fmt[1], strict=True)
        except msgspec.ValidationError:
            raise SchemaMismatch(path, f"expected {fmt[0]}, got {_shown(value)}") from None


class _Slow(Exception):
    """The pattern's time is up (raised by the SIGALRM handler, inside re's matching loop)."""


_SEARCH_ELSEWHERE = "import json, re, sys; p, v = json.load(sys.stdin); print(int(bool(re.search(p, v))))"


def _search(compiled: re.Pattern[str], value: str) -> bool:
    """Whether ``compiled`` is found in ``value``, within PATTERN_SECONDS.

    Python's re backtracks, and a stored pattern such as ``(a+)+$`` takes exponential time; its
    matching loop holds the GIL but looks at signals. In the main thread, with SIGALRM free, an
    interval timer cuts it short; elsewhere it runs in a child process that is killed in time.
    """
    import signal
    import threading

    timed = (
        threading.current_thread() is threading.main_thread()
        and hasattr(signal, "setitimer")
        and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.SIG_IGN)
        and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    )
    if not timed:
        return _search_elsewhere(compiled, value)

    def expired(signum: int, frame: Any) -> None:
        raise _Slow

    previous = signal.signal(signal.SIGALRM, expired)
    try:
        signal.setitimer(signal.ITIMER_REAL, PATTERN_SECONDS)
        try:
            return compiled.search(value) is not None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Slow:
        raise _too_slow(compiled) from None
    finally:
        signal.signal(signal.SIGALRM, previous)


def _search_elsewhere(compiled: re.Pattern[str], value: str) -> bool:
    import json
    import subprocess
    import sys

    if not sys.executable:
        raise BadSchema(f"pattern {_shown(compiled.pattern)} cannot be checked in this thread")
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _SEARCH_ELSEWHERE],
            input=json.dumps([compiled.pattern, value]),
            capture_output=True,
            text=True,
            timeout=PATTERN_SECONDS + 5,  # a Python's start, on a busy machine
        )
    except subprocess.TimeoutExpired:
        raise _too_slow(compiled) from None
    except OSError as exc:
        raise BadSchema(f"pattern {_shown(compiled.pattern)} cannot be checked: {exc}") from None
    if done.returncode != 0 or done.stdout.strip() not in ("0", "1"):
        raise BadSchema(f"pattern {_shown(compiled.pattern)} cannot be checked: {done.stderr[-200:]}")
    return done.stdout.strip() == "1"


def _too_slow(compiled: re.Pattern[str]) -> BadSchema:
    return BadSchema(
        f"pattern {_shown(compiled.pattern)} takes more than {PATTERN_SECONDS:g} s to check (it backtracks)"
    )


def _formats() -> dict[str, tuple[str, Any]]:
    import datetime as dt
    import decimal
    import uuid

    return {
        "uuid": ("a UUID", uuid.UUID),
        "date-time": ("an ISO 8601 date and time", dt.datetime),
        "date": ("an ISO 8601 date", dt.date),
        "time": ("an ISO 8601 time", dt.time),
        "duration": ("an ISO 8601 duration", dt.timedelta),
        "decimal": ("a decimal number", decimal.Decimal),
        "encoding:base64": ("base64 text", bytes),
    }


_FORMATS = _formats()


def check(value: Any, schema: Any) -> None:
    """SchemaMismatch if ``value`` (plain JSON data) does not match ``schema``; BadSchema if the
    schema cannot be used. RecursionError only for an answer nested deeper than any stored value."""
    _Checker(schema).check(value, schema, ROOT)


# --- an example answer, for the printed commands -------------------------------------------------


def example(schema: Any) -> Any:
    """A value that matches ``schema`` where one is easy to find (the printed commands show it)."""
    return _example(schema, schema, 0)


def _example(root: Any, schema: Any, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > 12:
        return None
    if "$ref" in schema:
        try:
            return _example(root, _Checker(root).resolve(schema["$ref"]), depth + 1)
        except BadSchema:
            return None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            usable = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return _example(root, (usable or options)[0], depth + 1)
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        base = low if isinstance(low, (int, float)) and not isinstance(low, bool) else 0
        if "exclusiveMinimum" in schema and "minimum" not in schema:
            base = base + 1
        return int(base) if kind == "integer" else float(base)
    if kind == "string":
        shown = _STRING_EXAMPLES.get(str(schema.get("format")), "text")
        least = schema.get("minLength")
        return shown * int(least) if isinstance(least, int) and least > len(shown) else shown
    if kind == "array":
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list):
            return [_example(root, p, depth + 1) for p in prefix]
        least = schema.get("minItems")
        count = max(1, least) if isinstance(least, int) and least < 20 else 1
        return [_example(root, schema.get("items", {}), depth + 1) for _ in range(count)]
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        required = schema.get("required")
        names = required if isinstance(required, list) and required else list(properties)
        return {n: _example(root, properties.get(n, {}), depth + 1) for n in names if isinstance(n, str)}
    return "..." if not schema else None


_STRING_EXAMPLES = {
    "uuid": "00000000-0000-0000-0000-000000000000",
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "12:00:00",
    "duration": "PT1H",
    "decimal": "0",
}
