"""Property tests: any value built from the supported types round-trips with its types intact."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import math
from collections.abc import Iterator
from typing import Any

import msgspec
import numpy as np
import pytest
from blake3 import blake3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kitaru_store import Repository
from kitaru_store.backend import close_backend
from kitaru_store.serialization import deserialize, serialize

PROFILE = settings(deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])


class Mood(enum.Enum):
    CALM = "calm"
    BUSY = 2


class Pair(msgspec.Struct, frozen=True):
    left: Any
    right: Any


@dataclasses.dataclass(frozen=True)
class Box:
    content: Any
    label: str = ""


OFFSETS = st.sampled_from(
    [None, dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(-dt.timedelta(hours=11))]
)

# Values usable as dict keys and set members (hashable, and equal only to themselves).
hashable_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: past 64 bits too
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
    st.datetimes(timezones=OFFSETS),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.decimals(allow_nan=False),
    st.uuids(),
    st.complex_numbers(allow_nan=False),
    st.sampled_from(Mood),
)

hashables = st.recursive(
    hashable_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(tuple),
        st.frozensets(children, max_size=4),
    ),
    max_leaves=8,
)

scalars = st.one_of(hashable_scalars, st.binary().map(bytearray))

values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=5).map(tuple),
        st.dictionaries(st.text(max_size=8), children, max_size=5),
        st.dictionaries(hashables, children, max_size=4),
        st.sets(hashables, max_size=4),
        st.frozensets(hashables, max_size=4),
        st.builds(Pair, children, children),
        st.builds(Box, children, st.text(max_size=5)),
    ),
    max_leaves=25,
)


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down, -0.0 and 0.0 told apart."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Pair):
        return same(a.left, b.left) and same(a.right, b.right)
    if isinstance(a, Box):
        return same(a.content, b.content) and a.label == b.label
    if isinstance(a, dt.datetime):
        return a == b and a.utcoffset() == b.utcoffset()
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    return bool(a == b)


@PROFILE
@given(values)
def test_serialize_roundtrip(value: Any) -> None:
    data, _ = serialize(value)
    out = deserialize(data)
    assert same(out, value), (value, out)
    # Serialization is deterministic for the same value: the same bytes, hence the same object id.
    again, _ = serialize(value)
    assert bytes(again) == bytes(data)
    # From read-only buffers too (what a store read returns).
    assert same(deserialize(bytes(data)), value)
    assert same(deserialize(memoryview(bytes(data))), value)


numeric_dtypes = st.one_of(
    hnp.integer_dtypes(endianness="="),
    hnp.unsigned_integer_dtypes(endianness="="),
    hnp.floating_dtypes(endianness="="),
    hnp.complex_number_dtypes(endianness="="),
    hnp.boolean_dtypes(),
    hnp.datetime64_dtypes(endianness="="),
    hnp.timedelta64_dtypes(endianness="="),
    hnp.byte_string_dtypes(endianness="="),
    hnp.unicode_string_dtypes(endianness="="),
)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(numeric_dtypes)
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
    elements = {"allow_nan": False} if dtype.kind in "fc" else None
    arr = draw(hnp.arrays(dtype, shape, elements=elements))
    layout = draw(st.sampled_from(["c", "fortran", "strided"]))
    if layout == "fortran":
        arr = np.asfortranarray(arr)
    elif layout == "strided" and arr.ndim and arr.shape[0] > 1:
        arr = arr[::2]
    return arr


def arrays_same(a: np.ndarray, b: np.ndarray) -> bool:
    if not (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape):
        return False
    if a.dtype.kind in "mM":
        return bool(np.array_equal(a.view(np.int64), b.view(np.int64)))
    return bool(np.array_equal(a, b))


@PROFILE
@given(arrays())
def test_numpy_roundtrip(arr: np.ndarray) -> None:
    data, name = serialize(arr)
    assert name == "numpy"
    out = deserialize(data)
    assert arrays_same(arr, out), (arr, out)
    assert out.flags.writeable
    nested = deserialize(serialize({"a": arr, "t": (arr,)})[0])
    assert arrays_same(arr, nested["a"]) and arrays_same(arr, nested["t"][0])


@pytest.fixture(scope="module")
def shared_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repository]:
    """One store for every example (hypothesis calls the test many times per fixture)."""
    root = tmp_path_factory.mktemp("property") / "store"
    yield Repository.open(root)
    close_backend(str(root / "db"))


@settings(deadline=None, max_examples=40, suppress_health_check=list(HealthCheck))
@given(values)
def test_store_roundtrip_and_content_address(shared_repo: Repository, value: Any) -> None:
    data, serializer = serialize(value)
    sv = shared_repo.put_value(value)
    assert sv.object_id == blake3(bytes(data)).hexdigest()
    assert (sv.size, sv.serializer) == (len(data), serializer)
    assert same(shared_repo.get_value(sv.object_id), value)
    assert shared_repo.put_value(value).object_id == sv.object_id  # dedup: same id
