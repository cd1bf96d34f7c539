"""Fuzzing the JSON a user gives on the command line (``kitaru-store input --value``,
``replay --override NAME=JSON``): any text parses to a value or a KitaruError within the memory
bound of fuzz_helpers, never another exception (deep nesting and lone surrogates included)."""

from __future__ import annotations

import json

from fuzz_helpers import FUZZ, decode_within_bounds
from hypothesis import given
from hypothesis import strategies as st

from kitaru.cli.recovery import parse_json
from kitaru_store import nesting

SEEDS = [
    '{"approved": true, "notes": ["a", 1, 2.5, null]}',
    '"yes"',
    "[[[]]]",
    "-0.0e+1",
    "18446744073709551615",
]


def _mutated(seed: str, cuts: list[tuple[int, str]]) -> str:
    text = seed
    for at, piece in cuts:
        at %= len(text) + 1
        text = text[:at] + piece + text[at:]
    return text


texts = st.one_of(
    st.text(max_size=200),
    st.builds(
        _mutated,
        st.sampled_from(SEEDS),
        st.lists(
            st.tuples(st.integers(0, 100), st.text(alphabet='[]{}":,0e-.\\u\udc80 ', max_size=4)), max_size=6
        ),
    ),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
)


@FUZZ
@given(texts)
def test_command_line_json_parses_or_is_a_typed_error(text: str) -> None:
    outcome = decode_within_bounds(
        lambda: parse_json(text, what="--value"), len(text.encode("utf-8", "surrogatepass"))
    )
    if not isinstance(outcome, Exception):
        assert not nesting.depth_exceeds(outcome)
        assert json.loads(json.dumps(outcome)) == outcome  # plain JSON data, nothing else
