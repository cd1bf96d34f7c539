"""The stored JSON Schema of a wait accepts and refuses exactly what the schema type itself does.

For each schema kind a wait takes, arbitrary JSON data (and near-misses of valid answers) is
checked two ways: against the JSON Schema stored with the wait (kitaru.answer_schema.check, what
a process without the schema's class uses), and by converting it to the type in-process
(msgspec's strict conversion). Both must agree on every value.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Annotated, Any, Literal, Optional, TypedDict

import msgspec
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kitaru.answer_schema import BadSchema, SchemaMismatch, check, example, json_schema_of


class Verdict(msgspec.Struct):
    approved: bool
    note: str = ""
    level: Annotated[int, msgspec.Meta(ge=0, le=5)] = 0


class Strict(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    my_score: float
    tags: list[str] = []


class Cat(msgspec.Struct, tag=True):
    lives: int


class Dog(msgspec.Struct, tag=True):
    name: str


class Tree(msgspec.Struct):
    label: str
    children: list[Tree] = []


@dataclasses.dataclass
class Review:
    score: int
    tags: list[str]
    verdict: Verdict | None = None


class Point(TypedDict):
    x: int
    y: float


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Rating(pydantic.BaseModel):
    stars: int
    comment: str = ""
    tags: list[str] = []
    inner: Optional[Rating] = None  # noqa: UP045


SCHEMAS: list[Any] = [
    bool,
    int,
    float,
    str,
    None,
    list[int],
    list[list[str]],
    dict[str, float],
    tuple[int, str],
    tuple[int, ...],
    Optional[int],  # noqa: UP045
    int | str,
    Literal["yes", "no", 3, True],
    Annotated[int, msgspec.Meta(ge=-2, lt=10)],
    Annotated[str, msgspec.Meta(min_length=2, max_length=4, pattern="^[a-c]")],
    Annotated[list[int], msgspec.Meta(min_length=1, max_length=3)],
    Verdict,
    Strict,
    Cat | Dog,
    Tree,
    Review,
    Point,
    Color,
    Level,
    list[Verdict],
]
FIELDS = ["approved", "note", "level", "myScore", "tags", "type", "lives", "name", "label", "children"]
FIELDS += ["score", "verdict", "x", "y", "stars", "comment", "inner"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-20, 20),
    st.floats(-20, 20, allow_nan=False),
    st.sampled_from(["yes", "no", "red", "blue", "ab", "abcd", "Cat", "Dog", "", "x"]),
    st.text(max_size=6),
)
keys = st.one_of(st.sampled_from(FIELDS), st.text(max_size=4))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=12,
)


def _near(valid: Any) -> st.SearchStrategy[Any]:
    """A valid answer with one part replaced by arbitrary JSON (or left alone)."""
    if isinstance(valid, dict) and valid:
        return st.sampled_from(sorted(valid)).flatmap(
            lambda k: st.one_of(
                _near(valid[k]).map(lambda v: {**valid, k: v}),
                st.just({n: v for n, v in valid.items() if n != k}),
                json_values.map(lambda v: {**valid, "extra": v}),
            )
        )
    if isinstance(valid, list) and valid:
        return st.integers(0, len(valid) - 1).flatmap(
            lambda i: _near(valid[i]).map(lambda v: [*valid[:i], v, *valid[i + 1 :]])
        )
    return st.one_of(st.just(valid), json_values)


VALID: dict[int, list[Any]] = {
    id(Verdict): [{"approved": True, "note": "n", "level": 5}],
    id(Strict): [{"myScore": 1.5, "tags": ["a"]}],
    id(Cat | Dog): [{"type": "Cat", "lives": 9}, {"type": "Dog", "name": "rex"}],
    id(Tree): [{"label": "a", "children": [{"label": "b", "children": []}]}],
    id(Review): [{"score": 1, "tags": ["t"], "verdict": {"approved": False}}],
    id(Point): [{"x": 1, "y": 2.5}],
    id(list[Verdict]): [[{"approved": True}, {"approved": False, "level": 1}]],
    id(tuple[int, str]): [[1, "a"]],
}


def _answers(schema: Any) -> st.SearchStrategy[Any]:
    valid = [*VALID.get(id(schema), []), example(json_schema_of(schema))]
    return st.one_of(json_values, st.sampled_from(valid).flatmap(_near))


def _converts(value: Any, schema: Any) -> bool:
    try:
        msgspec.convert(value, schema, strict=True)
    except msgspec.ValidationError:
        return False
    return True


def _checks(value: Any, stored: dict[str, Any]) -> bool:
    try:
        check(value, stored)
    except SchemaMismatch:
        return False
    return True


PARITY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("schema", SCHEMAS, ids=repr)
def test_the_stored_schema_accepts_exactly_what_the_type_accepts(schema: Any) -> None:
    stored = msgspec.json.decode(msgspec.json.encode(json_schema_of(schema)))  # as read back

    @PARITY
    @given(_answers(schema))
    def agree(value: Any) -> None:
        converts = _converts(value, Any if schema is None else schema)  # kitaru.wait(schema=None)
        assert _checks(value, stored) == converts, (value, stored)

    agree()
    if "pattern" not in str(stored):  # no example is made up for a regular expression
        assert _checks(example(stored), stored)  # the printed example answer is a valid answer


@PARITY
@given(_answers(Rating))
def test_what_the_stored_schema_accepts_a_pydantic_model_accepts(value: Any) -> None:
    """pydantic converts more than JSON Schema says (``"3"`` for an int): the stored schema is
    the stricter of the two, so an answer checked elsewhere always converts in the flow."""
    stored = json_schema_of(Rating)
    if _checks(value, stored):
        Rating.model_validate(value)
    else:
        with pytest.raises(pydantic.ValidationError):
            Rating.model_validate(value, strict=True)


def test_errors_name_the_path_of_the_bad_field() -> None:
    stored = json_schema_of(list[Review])
    answer = [{"score": 1, "tags": []}, {"score": 2, "tags": ["a", 3]}]
    with pytest.raises(SchemaMismatch, match=r"^answer\[1\]\.tags\[1\]: expected str, got int$"):
        check(answer, stored)
    with pytest.raises(SchemaMismatch, match=r"^answer\[0\]\.verdict\.approved: expected bool, got str$"):
        check([{"score": 1, "tags": [], "verdict": {"approved": "yes"}}], stored)
    with pytest.raises(SchemaMismatch, match=r"^answer\['two words'\]: expected float, got str$"):
        check({"two words": "x"}, json_schema_of(dict[str, float]))
    with pytest.raises(SchemaMismatch, match=r"^answer\.myScore: required field missing$"):
        check({}, json_schema_of(Strict))
    with pytest.raises(SchemaMismatch, match=r"^answer\.other: unknown field$"):
        check({"myScore": 1, "other": 1}, json_schema_of(Strict))


def test_a_hostile_stored_schema_is_refused_in_bounded_time() -> None:
    loop = {"$ref": "#/$defs/A", "$defs": {"A": {"$ref": "#/$defs/A"}}}
    with pytest.raises(BadSchema, match="refers to itself"):
        check(1, loop)
    branching = {"$defs": {"A": {"anyOf": [{"$ref": "#/$defs/B"}, {"$ref": "#/$defs/B"}]}}}
    branching["$defs"]["B"] = {"anyOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/A"}]}
    branching["$ref"] = "#/$defs/A"
    with pytest.raises(BadSchema):
        check(1, branching)
    for bad in ({"$ref": "https://example.com/s.json"}, {"$ref": "#/nowhere"}, {"anyOf": 3}, [1]):
        with pytest.raises(BadSchema):
            check(1, bad)
    with pytest.raises(BadSchema, match="not a regular expression"):
        check("a", {"type": "string", "pattern": "("})


HOSTILE = {"type": "string", "pattern": "^(a+)+$"}  # (a+)+$ on 40 a's and a '!': ~2**40 steps


@pytest.mark.parametrize("thread", ["main", "worker"])
def test_a_stored_pattern_that_backtracks_for_ever_is_cut_short(thread: str) -> None:
    # Python's re backtracks, holding the GIL; a stored schema is data, so its pattern gets a
    # time limit, in the main thread (`kitaru-store input`, the terminal prompt) and in any other
    # (executions.input from a worker). Each in a process of its own: the old code never returns.
    import subprocess
    import sys

    code = (
        "import threading\n"
        "from kitaru.answer_schema import BadSchema, SchemaMismatch, check\n"
        f"HOSTILE = {HOSTILE!r}\n"
        "def attempt():\n"
        "    try:\n"
        "        check('a' * 40 + '!', HOSTILE)\n"
        "    except BadSchema as exc:\n"
        "        print(exc)\n"
        "    check('aaa', HOSTILE)\n"
        "    try:\n"
        "        check('b', HOSTILE)\n"
        "    except SchemaMismatch as exc:\n"
        "        print(exc)\n"
        + ("attempt()\n" if thread == "main" else "threading.Thread(target=attempt).start()\n")
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert "takes more than" in first
    assert second == "answer: expected text matching '^(a+)+$', got 'b'"
