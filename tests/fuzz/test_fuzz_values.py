"""Fuzzing the value serializer's decoder (kitaru_store.serialization.deserialize, what every load uses).

Arbitrary bytes behind each serializer tag, and mutations of valid serializations of varied values
(numpy, pandas, MessagePack trees with every extension, classes, str and bytes), decode to a value
or a KitaruError within the memory bound of fuzz_helpers; never another exception.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import struct
import uuid
import warnings
import zoneinfo
from typing import Any

import msgspec
import numpy as np
import pandas as pd  # imported here: its first import is not the decoder's memory
from fuzz_helpers import FUZZ, decode_within_bounds, mutations
from hypothesis import given
from hypothesis import strategies as st

from kitaru_store import serialization as ser


class Mood(enum.Enum):
    GOOD = "good"
    BAD = 2


class Pair(msgspec.Struct):
    a: int
    b: list[Any]


@dataclasses.dataclass
class Box:
    items: tuple[Any, ...]
    label: str = ""


def _seeds() -> list[bytes]:
    values: list[Any] = [
        "text ünïcode",
        b"\x00\x01raw",
        {"a": [1, 2.5, None, True], "b": {"c": b"x"}},
        (1, (2, {3}), frozenset({4})),
        {(1, 2): "tuple key", dt.date(2026, 1, 2): [dt.time(3, 4), dt.timedelta(days=1)]},
        [dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), decimal.Decimal("1.25"), uuid.UUID(int=7)],
        [2**70, -(2**80), 1 + 2j, bytearray(b"ba")],
        [Mood.GOOD, Pair(1, [Mood.BAD]), Box((1, "x"), "l")],
        np.arange(12, dtype="<i4").reshape(3, 4),
        np.asfortranarray(np.ones((2, 3))),
        np.array([(1, 2.0)], dtype=[("x", "<i2"), ("y", "<f8")]),
        np.array(["a", 1, None], dtype=object),
        {"nested": np.float32(1.5), "arr": np.zeros(3, dtype="datetime64[s]")},
        pd.DataFrame({"i": [1, 2, 3], "s": ["a", "b", None], "c": pd.Categorical(["x", "y", "x"])}),
        pd.DataFrame(
            {"t": pd.date_range("2026-01-01", periods=2, tz=zoneinfo.ZoneInfo("Europe/Paris"))},
            index=pd.Index(["r1", "r2"], name="row"),
        ),
        pd.DataFrame({"v": [1.0, 2.0]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)])),
        {"series": pd.Series([1, 2], index=[10, 20], name="s"), "frame": pd.DataFrame({"a": [1]})},
    ]
    return [bytes(ser.serialize(v)[0]) for v in values]


SEEDS = _seeds()
TAGS = sorted({bytes([t]) for t in ser.NAMES})


def _decode(data: bytes) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # classes loaded as plain data
        return decode_within_bounds(lambda: ser.deserialize(data), len(data))


@FUZZ
@given(tag=st.sampled_from(TAGS), body=st.binary(max_size=512))
def test_random_bytes_behind_every_tag(tag: bytes, body: bytes) -> None:
    _decode(tag + body)


# Big counts where a length or header was, and MessagePack headers that declare huge contents.
_PIECES = [struct.pack(">I", n) for n in (0xFFFFFFFF, 1 << 30, 1 << 20, 255)]
_PIECES += [b"\xdd\xff\xff\xff\xff", b"\xc7\xff\x09", b"\x91" * 64]


@FUZZ
@given(data=mutations(SEEDS, _PIECES))
def test_mutations_of_valid_values(data: bytes) -> None:
    _decode(data)


@FUZZ
@given(seed=st.sampled_from(SEEDS), cut=st.integers(0, 10_000))
def test_every_truncation_of_a_valid_value(seed: bytes, cut: int) -> None:
    _decode(seed[: cut % (len(seed) + 1)])


@FUZZ
@given(
    head=st.dictionaries(
        st.sampled_from(["descr", "shape", "fortran", "dtype", "items"]),
        st.one_of(
            st.lists(st.integers(-2, 1 << 40), max_size=4),
            st.sampled_from(["<f8", "|u1", "O", "|O", "<U3", [["x", "<i4"]], "V0"]),
            st.booleans(),
            st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3),
        ),
    ),
    pad=st.integers(0, (1 << 32) - 1),
    data=st.binary(max_size=64),
)
def test_numpy_headers(head: dict[str, Any], pad: int, data: bytes) -> None:
    """Well-formed headers with ill-matched shapes, dtypes and paddings (tag n and ext 9)."""
    header = msgspec.msgpack.encode(head)
    body = struct.pack("<II", len(header), pad) + header + data
    _decode(ser.TAG_NUMPY + body)
    _decode(ser.TAG_MSGPACK + msgspec.msgpack.encode(msgspec.msgpack.Ext(ser.X_NDARRAY, body)))


_trees = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=8), st.binary(max_size=8)
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


_ints = st.one_of(st.integers(-3, 3), st.sampled_from([1 << 20, 1 << 40, -(1 << 40), 2**63 - 1]))
_columns = st.one_of(
    st.tuples(st.just("np"), st.one_of(_ints, st.builds(lambda n: np.arange(n % 5), _ints))).map(list),
    st.tuples(
        st.just("obj"), st.lists(_ints, max_size=4), st.sampled_from(["object", "Int64", "str", "x"])
    ).map(list),
    st.tuples(
        st.just("dttz"), st.just(["np", np.zeros(2, "datetime64[ns]")]), st.sampled_from(["UTC", "../x"])
    ).map(list),
)
_indexes = st.one_of(
    st.tuples(st.just("range"), _ints, _ints, _ints, st.none()).map(list),
    st.tuples(st.just("index"), _columns, st.none()).map(list),
    st.tuples(st.just("multi"), st.lists(st.lists(_ints, max_size=2), max_size=3), st.lists(st.none())).map(
        list
    ),
)
_frames = st.fixed_dictionaries(
    {"columns": _indexes, "index": _indexes, "data": st.lists(_columns, max_size=3)}
)


@FUZZ
@given(frame=_frames, series=st.tuples(st.none(), _columns, _indexes))
def test_pandas_trees(frame: dict[str, Any], series: Any) -> None:
    """Well-formed pandas trees with lengths, kinds and ranges that do not fit together."""
    _decode(ser.TAG_PANDAS + bytes(ser._enc.encode(ser._pack(frame))))
    tree = ser._enc.encode(ser._pack(list(series)))
    _decode(ser.TAG_MSGPACK + msgspec.msgpack.encode(msgspec.msgpack.Ext(ser.X_SERIES, tree)))


@FUZZ
@given(code=st.integers(0, 127), tree=_trees)
def test_extensions_with_arbitrary_trees(code: int, tree: Any) -> None:
    """Every extension code with a MessagePack tree of the wrong shape (and pandas frame trees)."""
    ext = msgspec.msgpack.Ext(code, msgspec.msgpack.encode(tree))
    _decode(ser.TAG_MSGPACK + msgspec.msgpack.encode([ext]))
    _decode(ser.TAG_PANDAS + msgspec.msgpack.encode(tree))
