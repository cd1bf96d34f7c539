"""Fuzzing the answer validator (kitaru.waits.validate_answer, what every way of answering a wait uses).

Arbitrary JSON answers, checked against the JSON Schema of varied schema types, and against
arbitrary JSON read back as a stored schema (a manifest is untrusted data), give the answer or a
KitaruError within the memory bound of fuzz_helpers; never another exception.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import msgspec
from fuzz_helpers import FUZZ, decode_within_bounds
from hypothesis import given
from hypothesis import strategies as st

from kitaru.answer_schema import json_schema_of
from kitaru.waits import describe, validate_answer
from kitaru_store.manifests import WaitRecord


class Item(msgspec.Struct):
    name: str
    score: int = 0
    children: list[Item] = []


TYPES: list[Any] = [
    bool,
    int,
    str,
    list[Item],
    dict[str, float],
    Item | None,
    Literal["a", 1],
    tuple[int, str],
]
WHEN = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

KEYS = st.one_of(st.sampled_from(["name", "score", "children", "$ref", "anyOf", "type"]), st.text(max_size=5))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(
            KEYS,
            inner,
            max_size=6,
        ),
    ),
    max_leaves=40,
)


def _record(schema: Any, json_schema: Any) -> WaitRecord:
    return WaitRecord(name="w", status="pending", created_at=WHEN, schema=schema, json_schema=json_schema)


def _size(*parts: Any) -> int:
    return sum(len(msgspec.json.encode(p)) for p in parts)


@FUZZ
@given(st.sampled_from(TYPES), json_values)
def test_arbitrary_answers_to_typed_waits(schema: Any, answer: Any) -> None:
    record = _record(describe(schema), json_schema_of(schema))
    decode_within_bounds(lambda: validate_answer(record, answer), _size(answer, record.json_schema))


@FUZZ
@given(json_values.filter(lambda v: isinstance(v, dict)), json_values)
def test_arbitrary_stored_schemas(stored: Any, answer: Any) -> None:
    record = _record({"kind": "any"}, stored)
    decode_within_bounds(lambda: validate_answer(record, answer), _size(answer, stored))


@FUZZ
@given(json_values)
def test_self_referring_stored_schemas(answer: Any) -> None:
    for stored in (
        {"$ref": "#"},
        {"anyOf": [{"$ref": "#"}, {"$ref": "#"}]},
        {"type": "array", "items": {"$ref": "#"}, "allOf": [{"$ref": "#/items"}]},
        {"not": {"$ref": "#"}},
    ):
        record = _record({"kind": "any"}, stored)
        decode_within_bounds(lambda r=record: validate_answer(r, answer), _size(answer, stored))  # type: ignore[misc]
