"""Values round-trip through the store with their types; pickle only on opt-in."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import struct
import sys
import uuid
import zoneinfo
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import pydantic
import pytest

from kitaru_store import PickleNotAllowedError, Repository, SerializationError
from kitaru_store import serialization as ser
from kitaru_store.errors import CorruptValueError


def roundtrip(repo: Repository, value: Any, **kwargs: Any) -> Any:
    sv = repo.put_value(value, **kwargs)
    return repo.get_value(sv.object_id, **kwargs)


def assert_same(a: Any, b: Any) -> None:
    """Equal, and of the same type all the way down (True is not 1, a tuple is not a list)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b


# --- types defined at module level, so that the loader can import them -----------------------


class Color(enum.Enum):
    RED = "red"
    GREEN = 2


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Point(msgspec.Struct):
    x: int
    y: float
    label: str = ""


class Tagged(msgspec.Struct, frozen=True, array_like=True):
    name: str
    points: list[Point]


@dataclasses.dataclass
class Doc:
    title: str
    tags: tuple[str, ...] = ()
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    computed: int = dataclasses.field(init=False, default=0)


@dataclasses.dataclass(frozen=True)
class Frozen:
    when: dt.datetime
    color: Color


class User(pydantic.BaseModel):
    name: str
    age: int
    email: str | None = None


class Team(pydantic.BaseModel):
    lead: User
    members: list[User]
    created: dt.date


class NotData:
    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NotData) and other.n == self.n

    __hash__ = None  # type: ignore[assignment]


# --- scalars and containers -------------------------------------------------------------------

SCALARS = [
    "",
    "plain",
    "ünïcødé ✓ 🚀",
    b"",
    b"\x00\xff raw",
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    2**64,
    -(2**63) - 1,
    10**40,
    -(10**40),
    0.0,
    -0.0,
    1.5,
    1e308,
    float("inf"),
    float("-inf"),
    True,
    False,
    None,
    dt.datetime(2024, 5, 6, 7, 8, 9, 123456),
    dt.datetime(2024, 5, 6, 7, 8, 9, 1, tzinfo=dt.UTC),
    dt.datetime(2024, 5, 6, 7, 8, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    dt.datetime(2024, 5, 6, 7, 8, tzinfo=dt.timezone(-dt.timedelta(hours=8))),
    dt.date(1999, 12, 31),
    dt.time(23, 59, 59, 999999),
    dt.timedelta(days=-3, seconds=5, microseconds=7),
    dt.timedelta(0),
    decimal.Decimal("3.14159265358979323846264338327950288"),
    decimal.Decimal("-0.00"),
    decimal.Decimal("1E+30"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    uuid.uuid4(),
    1 + 2j,
    bytearray(b"mutable"),
    Color.RED,
    Color.GREEN,
    Level.HIGH,
]


@pytest.mark.parametrize("value", SCALARS, ids=[f"{type(v).__name__}-{i}" for i, v in enumerate(SCALARS)])
def test_scalar_roundtrip(repo: Repository, value: Any) -> None:
    assert_same(roundtrip(repo, value), value)


def test_negative_zero_keeps_its_sign(repo: Repository) -> None:
    import math

    assert math.copysign(1.0, roundtrip(repo, -0.0)) == -1.0


def test_tz_aware_datetime_keeps_offset(repo: Repository) -> None:
    aware = dt.datetime(2024, 3, 10, 12, tzinfo=zoneinfo.ZoneInfo("America/New_York"))
    out = roundtrip(repo, aware)
    assert out == aware
    assert out.utcoffset() == aware.utcoffset()
    naive = roundtrip(repo, dt.datetime(2024, 3, 10, 12))
    assert naive.tzinfo is None


CONTAINERS = [
    [],
    [1, "two", 3.0, None, [True, [b"deep"]]],
    (),
    (1,),
    (1, (2, (3, [4, (5,)]))),
    {},
    {"a": 1, "b": [1, 2], "c": {"d": (1, 2)}},
    {1: "int key", 2.5: "float key", None: "none key", b"k": "bytes key", False: "bool key"},
    {(1, 2): "tuple key", frozenset({3}): "frozenset key", dt.date(2024, 1, 1): "date key"},
    {2**70: "big int key", decimal.Decimal("1.5"): "decimal key", uuid.UUID(int=7): "uuid key"},
    {"outer": {(1, "a"): {"inner": {(2,): [3]}}}},
    set(),
    {1, 2, 3},
    {"a", (1, 2), frozenset({1})},
    frozenset(),
    frozenset({1, "x", (2, 3)}),
    [{1, 2}, frozenset({3}), ({"k": (1,)},)],
]


@pytest.mark.parametrize(
    "value", CONTAINERS, ids=[f"{type(v).__name__}-{i}" for i, v in enumerate(CONTAINERS)]
)
def test_container_roundtrip(repo: Repository, value: Any) -> None:
    out = roundtrip(repo, value)
    assert_same(out, value)


def test_dict_key_order_is_kept(repo: Repository) -> None:
    value = {"z": 1, "a": 2, (1,): 3, "m": 4}
    assert list(roundtrip(repo, value)) == list(value)


# --- data classes, Structs, pydantic, enums ---------------------------------------------------


def test_msgspec_struct_roundtrip(repo: Repository) -> None:
    value = Tagged("shape", [Point(1, 2.5, "a"), Point(-3, 0.0)])
    out = roundtrip(repo, value)
    assert type(out) is Tagged
    assert out == value
    assert type(out.points[0]) is Point


def test_dataclass_roundtrip(repo: Repository) -> None:
    doc = Doc("title", ("a", "b"), {"k": [1, 2], "when": dt.date(2024, 1, 2)})
    doc.computed = 42
    out = roundtrip(repo, doc)
    assert type(out) is Doc
    assert out == doc
    assert out.computed == 42  # init=False fields are restored too
    assert out.tags == ("a", "b")


def test_frozen_dataclass_with_enum_and_datetime(repo: Repository) -> None:
    value = Frozen(dt.datetime(2024, 1, 1, tzinfo=dt.UTC), Color.GREEN)
    out = roundtrip(repo, value)
    assert out == value and type(out) is Frozen and out.color is Color.GREEN


def test_pydantic_roundtrip(repo: Repository) -> None:
    team = Team(
        lead=User(name="ada", age=36, email="ada@example.com"),
        members=[User(name="bob", age=30)],
        created=dt.date(2024, 2, 29),
    )
    out = roundtrip(repo, team)
    assert type(out) is Team
    assert out == team
    assert type(out.lead) is User


def test_enum_members_are_identical(repo: Repository) -> None:
    assert roundtrip(repo, Color.RED) is Color.RED
    assert roundtrip(repo, [Level.LOW]) == [Level.LOW]
    assert type(roundtrip(repo, [Level.LOW])[0]) is Level


def stored_object(kind: str, path: str, fields: dict[str, Any]) -> bytes:
    """Tagged bytes of a data-class-like value, as the serializer lays them out."""
    tree = msgspec.msgpack.encode([kind, path, fields])
    return ser.TAG_MSGPACK + msgspec.msgpack.encode(msgspec.msgpack.Ext(ser.X_OBJECT, tree))


def test_stored_object_layout_matches_the_serializer() -> None:
    data, _ = ser.serialize(Point(1, 2.0))
    assert bytes(data) == stored_object("struct", f"{__name__}:Point", {"x": 1, "y": 2.0, "label": ""})


def test_class_that_cannot_be_imported_loads_as_fields() -> None:
    data = stored_object("struct", f"{__name__}:Gone", {"x": 1})
    with pytest.warns(RuntimeWarning, match="Gone \\(not imported\\)"):
        assert ser.deserialize(data) == {"x": 1}


@pytest.mark.parametrize("kind", ["struct", "dataclass", "pydantic"])
def test_stored_class_path_cannot_name_an_arbitrary_class(kind: str) -> None:
    """A tampered store must not make the loader call a class that is not of the recorded kind."""
    with pytest.warns(RuntimeWarning, match=f"subprocess:Popen \\(not a {kind} class\\)"):
        assert ser.deserialize(stored_object(kind, "subprocess:Popen", {"args": ["t"]})) == {"args": ["t"]}
    # A function is not even imported as a class.
    with pytest.warns(RuntimeWarning):
        assert ser.deserialize(stored_object(kind, "os:system", {"command": "true"})) == {"command": "true"}


# --- numpy ------------------------------------------------------------------------------------


def assert_array_same(a: np.ndarray, b: np.ndarray) -> None:
    assert isinstance(b, np.ndarray)
    assert b.dtype == a.dtype
    assert b.shape == a.shape
    if a.dtype.hasobject:
        assert a.tolist() == b.tolist()
    else:
        assert np.array_equal(a, b)


ARRAYS = {
    "int64-2d": np.arange(24, dtype=np.int64).reshape(4, 6),
    "float32": np.linspace(0, 1, 50, dtype=np.float32),
    "bool": np.array([True, False, True]),
    "complex": np.array([1 + 2j, -3j]),
    "big-endian": np.arange(10, dtype=">i4"),
    "uint8-3d": np.arange(60, dtype=np.uint8).reshape(3, 4, 5),
    "unicode": np.array(["alpha", "βeta", ""]),
    "bytes": np.array([b"ab", b"c"]),
    "datetime64": np.array(["2024-01-01T00:00:00", "1969-07-20T20:17:40"], dtype="datetime64[s]"),
    "timedelta64": np.array([1, -2, 3], dtype="timedelta64[ms]"),
    "structured": np.array(
        [(1, 2.5, b"x", [1, 2]), (3, -1.0, b"yz", [3, 4])],
        dtype=[("id", "<i4"), ("score", "<f8"), ("code", "S2"), ("pair", "<i2", (2,))],
    ),
    "0-d": np.array(3.25),
    "0-d-int": np.array(7, dtype=np.int16),
    "empty": np.empty((0,), dtype=np.float64),
    "empty-2d": np.empty((0, 3), dtype=np.int32),
    "empty-3d": np.zeros((2, 0, 4)),
    "object": np.array([1, "two", None, {"k": (1, 2)}, [3]], dtype=object),
    "object-2d": np.array([[1, "a"], [None, 2.5]], dtype=object),
    "object-fortran": np.asfortranarray(np.array([[1, "a", 3], [None, 2.5, b"z"]], dtype=object)),
}


@pytest.mark.parametrize("name", list(ARRAYS))
def test_numpy_roundtrip(repo: Repository, name: str) -> None:
    arr = ARRAYS[name]
    out = roundtrip(repo, arr)
    assert_array_same(arr, out)
    assert out.flags.writeable


def test_numpy_fortran_order_is_kept(repo: Repository) -> None:
    arr = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    assert arr.flags.f_contiguous and not arr.flags.c_contiguous
    out = roundtrip(repo, arr)
    assert_array_same(arr, out)
    assert out.flags.f_contiguous and not out.flags.c_contiguous
    c_out = roundtrip(repo, np.arange(12.0).reshape(3, 4))
    assert c_out.flags.c_contiguous


def test_numpy_non_contiguous_views_are_stored_by_value(repo: Repository) -> None:
    base = np.arange(100).reshape(10, 10)
    for view in (base[::2, 1::3], base.T[2:5], base[:, 3]):
        assert_array_same(view, roundtrip(repo, view))


def test_numpy_scalars_and_arrays_nested_in_containers(repo: Repository) -> None:
    value = {"a": np.arange(5), "s": np.float32(1.5), "i": np.int64(-3), "t": (np.array([[1, 2]]),)}
    out = roundtrip(repo, value)
    assert_array_same(value["a"], out["a"])
    assert type(out["s"]) is np.float32 and out["s"] == np.float32(1.5)
    assert type(out["i"]) is np.int64 and out["i"] == -3
    assert_array_same(value["t"][0], out["t"][0])
    assert out["a"].flags.writeable


def test_large_array_is_loaded_as_a_view_of_the_buffer() -> None:
    arr = np.random.default_rng(1).standard_normal((512, 1024))  # 4 MiB
    data, name = ser.serialize(arr)
    assert name == "numpy"
    # From a bytes buffer: a read-only view, no copy.
    frozen = bytes(data)
    out = ser.deserialize(frozen)
    assert np.array_equal(out, arr)
    assert not out.flags.writeable
    assert np.shares_memory(out, np.frombuffer(frozen, dtype=np.uint8))
    # From a writable buffer (what a chunked read returns): writable, still no copy.
    buf = bytearray(data)
    out = ser.deserialize(buf)
    assert out.flags.writeable
    assert np.shares_memory(out, np.frombuffer(buf, dtype=np.uint8))
    out[0, 0] = 42.0
    assert ser.deserialize(buf)[0, 0] == 42.0


def test_small_array_from_bytes_is_copied_to_be_writable() -> None:
    arr = np.arange(100, dtype=np.int64)
    frozen = bytes(ser.serialize(arr)[0])
    out = ser.deserialize(frozen)
    assert out.flags.writeable
    assert not np.shares_memory(out, np.frombuffer(frozen, dtype=np.uint8))
    out[0] = -1  # must not raise


def test_numpy_data_is_64_byte_aligned_in_the_serialized_buffer() -> None:
    for arr in (np.arange(3), np.zeros((4, 4), dtype=np.float32), ARRAYS["structured"]):
        data, _ = ser.serialize(arr)
        head_len, pad = int.from_bytes(data[1:5], "little"), int.from_bytes(data[5:9], "little")
        assert (1 + 8 + head_len + pad) % 64 == 0
        assert len(data) == 1 + 8 + head_len + pad + arr.nbytes


# --- pandas -----------------------------------------------------------------------------------


def test_dataframe_roundtrip_all_column_kinds(repo: Repository) -> None:
    df = pd.DataFrame(
        {
            "i": [1, 2, 3],
            "f": [1.5, -2.0, 3.25],
            "s": ["a", "bb", "ccc"],
            "c": pd.Categorical(["x", "y", "x"], categories=["y", "x"], ordered=True),
            "t": pd.date_range("2024-01-01", periods=3, freq="h", tz="Europe/Berlin"),
            "naive": pd.to_datetime(["2020-01-01", "2021-06-30", "2022-12-31"]),
            "b": [True, False, True],
        }
    )
    out = roundtrip(repo, df)
    pd.testing.assert_frame_equal(out, df)
    assert isinstance(out.index, pd.RangeIndex)
    assert str(out["t"].dt.tz) == "Europe/Berlin"
    assert out["c"].cat.ordered and list(out["c"].cat.categories) == ["y", "x"]


def test_dataframe_custom_index_and_column_labels(repo: Repository) -> None:
    df = pd.DataFrame(
        {1: [0.5, 1.5], "two": ["p", "q"]},
        index=pd.Index(["row-a", "row-b"], name="key"),
    )
    out = roundtrip(repo, df)
    pd.testing.assert_frame_equal(out, df)
    assert out.index.name == "key"


def test_dataframe_range_index_with_start_step_and_name(repo: Repository) -> None:
    df = pd.DataFrame({"v": [1, 2, 3]}, index=pd.RangeIndex(10, 16, 2, name="r"))
    out = roundtrip(repo, df)
    pd.testing.assert_frame_equal(out, df)
    assert isinstance(out.index, pd.RangeIndex)
    assert (out.index.start, out.index.stop, out.index.step) == (10, 16, 2)


def test_dataframe_integer_and_multi_index(repo: Repository) -> None:
    ints = pd.DataFrame({"v": [1.0, 2.0]}, index=pd.Index([100, 7], name="id"))
    pd.testing.assert_frame_equal(roundtrip(repo, ints), ints)
    multi = pd.DataFrame(
        {"v": [1, 2, 3]},
        index=pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)], names=["grp", "n"]),
    )
    pd.testing.assert_frame_equal(roundtrip(repo, multi), multi)


def test_dataframe_with_missing_values_and_nullable_dtypes(repo: Repository) -> None:
    df = pd.DataFrame(
        {
            "f": [1.0, None, 3.0],
            "n": pd.array([1, None, 3], dtype="Int64"),
            "s": ["a", None, "c"],
            "c": pd.Categorical(["x", None, "x"]),
            "t": pd.to_datetime(["2024-01-01", None, "2024-01-03"]).tz_localize("UTC"),
            "o": [{"k": 1}, [1, 2], None],
        }
    )
    pd.testing.assert_frame_equal(roundtrip(repo, df), df)


def test_empty_dataframe_and_series(repo: Repository) -> None:
    pd.testing.assert_frame_equal(roundtrip(repo, pd.DataFrame()), pd.DataFrame())
    series = pd.Series([1.5, 2.5], index=pd.Index(["a", "b"]), name="s")
    pd.testing.assert_series_equal(roundtrip(repo, series), series)


# --- pickle -----------------------------------------------------------------------------------


def test_unsupported_value_needs_pickle_opt_in(repo: Repository) -> None:
    with pytest.raises(PickleNotAllowedError) as info:
        repo.put_value(NotData(1))
    err = info.value
    assert isinstance(err, SerializationError)
    assert f"{__name__}:NotData" in str(err)
    assert err.hint and "allow_pickle=True" in err.hint and "KITARU_ALLOW_PICKLE=1" in err.hint
    assert repo.stats().objects == 0


def test_unsupported_value_nested_names_the_inner_type(repo: Repository) -> None:
    with pytest.raises(PickleNotAllowedError, match="NotData"):
        repo.put_value({"fine": [1, 2], "bad": [NotData(2)]})


def test_allow_pickle_roundtrip(repo: Repository) -> None:
    value = {"obj": NotData(3), "n": 1}
    sv = repo.put_value(value, allow_pickle=True)
    assert sv.serializer == "pickle"
    assert repo.get_value(sv.object_id, allow_pickle=True) == value
    # Loading a pickle needs the opt-in as well: a store is data, not code.
    with pytest.raises(PickleNotAllowedError) as info:
        repo.get_value(sv.object_id)
    assert info.value.hint and "allow_pickle=True" in info.value.hint
    with pytest.raises(PickleNotAllowedError):
        repo.get_value(sv.object_id, allow_pickle=False)


def test_supported_values_never_use_pickle_even_when_allowed(repo: Repository) -> None:
    sv = repo.put_value({"a": (1, 2)}, allow_pickle=True)
    assert sv.serializer == "msgpack"
    assert repo.get_value(sv.object_id) == {"a": (1, 2)}


@pytest.mark.parametrize("setting", ["1", "true", "YES", "on"])
def test_pickle_opt_in_by_environment(repo: Repository, monkeypatch, setting: str) -> None:
    monkeypatch.setenv("KITARU_ALLOW_PICKLE", setting)
    sv = repo.put_value(NotData(4))
    assert sv.serializer == "pickle"
    assert repo.get_value(sv.object_id) == NotData(4)
    # The per-call flag wins over the environment.
    with pytest.raises(PickleNotAllowedError):
        repo.get_value(sv.object_id, allow_pickle=False)
    with pytest.raises(PickleNotAllowedError):
        repo.put_value(NotData(5), allow_pickle=False)


@pytest.mark.parametrize("setting", ["", "0", "false", "no"])
def test_pickle_environment_off_values(repo: Repository, monkeypatch, setting: str) -> None:
    monkeypatch.setenv("KITARU_ALLOW_PICKLE", setting)
    with pytest.raises(PickleNotAllowedError):
        repo.put_value(NotData(6))


def test_unpicklable_value_with_opt_in_is_a_serialization_error(repo: Repository) -> None:
    with pytest.raises(SerializationError, match="cannot pickle"):
        repo.put_value(lambda: 1, allow_pickle=True)


# --- the tagged format ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("text", "str"),
        (b"raw", "bytes"),
        ([1], "msgpack"),
        (np.arange(3), "numpy"),
        (pd.DataFrame(), "pandas"),
    ],
)
def test_serializer_names(value: Any, name: str) -> None:
    data, got = ser.serialize(value)
    assert got == name
    assert ser.serializer_name(data) == name


def test_str_is_stored_as_plain_utf8() -> None:
    data, _ = ser.serialize("héllo")
    assert bytes(data) == b"s" + "héllo".encode()


def test_lone_surrogates_in_text_roundtrip(repo: Repository) -> None:
    assert roundtrip(repo, "bad \udc80 half") == "bad \udc80 half"


def test_unknown_tag_and_garbage_are_serialization_errors() -> None:
    with pytest.raises(SerializationError, match="unknown serializer tag"):
        ser.deserialize(b"Zwhatever")
    with pytest.raises(SerializationError, match="empty"):
        ser.deserialize(b"")
    with pytest.raises(SerializationError):
        ser.deserialize(b"m\xc1")  # 0xc1 is never valid MessagePack


# --- declared sizes are checked against the bytes before anything is allocated -----------------


def _traced_peak(fn: Any) -> tuple[Any, int]:
    import tracemalloc

    tracemalloc.start()
    try:
        try:
            out: Any = fn()
        except SerializationError as exc:
            out = exc
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _rows(n: int) -> list[Any]:
    return ["range", 0, n, 1, None]


ROWS = 10_000_000  # 80 MB if broadcast: the bound below is 4 MB


@pytest.mark.parametrize(
    "data",
    [
        # A frame whose one column is a scalar, broadcast to the index's length.
        ser.TAG_PANDAS
        + msgspec.msgpack.encode({"columns": _rows(1), "index": _rows(ROWS), "data": [["np", 5]]}),
        # A nested series whose column is a scalar.
        ser.TAG_MSGPACK
        + msgspec.msgpack.encode(
            msgspec.msgpack.Ext(ser.X_SERIES, msgspec.msgpack.encode(["s", ["np", 5], _rows(ROWS)]))
        ),
        # A frame declaring more column names than columns.
        ser.TAG_PANDAS + msgspec.msgpack.encode({"columns": _rows(ROWS), "index": _rows(1), "data": []}),
        # An object column shorter than the index.
        ser.TAG_PANDAS
        + msgspec.msgpack.encode(
            {"columns": _rows(1), "index": _rows(ROWS), "data": [["obj", [1], "Int64"]]}
        ),
    ],
    ids=["frame-scalar-column", "series-scalar-column", "frame-column-names", "frame-short-column"],
)
def test_pandas_lengths_are_checked_before_allocating(data: bytes) -> None:
    out, peak = _traced_peak(lambda: ser.deserialize(data))
    assert isinstance(out, CorruptValueError), out
    assert peak < 4 << 20


def _numpy_body(header: dict[str, Any], data: bytes = b"") -> bytes:
    head = msgspec.msgpack.encode(header)
    return struct.pack("<II", len(head), 0) + head + data


@pytest.mark.parametrize(
    "body",
    [
        _numpy_body({"descr": "<f8", "shape": [1 << 40], "fortran": False}),
        _numpy_body({"descr": "<f8", "shape": [3], "fortran": False}, b"\0" * 16),
        _numpy_body({"descr": "<f8", "shape": [-1], "fortran": False}, b"\0" * 8),
        _numpy_body({"descr": "<f8", "shape": [1] * 65, "fortran": False}, b"\0" * 8),
        _numpy_body({"dtype": "O", "shape": [1 << 40], "items": []}),
        _numpy_body({"descr": "|O", "shape": [1], "fortran": False}, b"\0" * 8),
        struct.pack("<II", 1 << 30, 0),
    ],
    ids=[
        "huge-shape",
        "short-data",
        "negative",
        "too-many-dims",
        "object-items",
        "object-dtype",
        "header-length",
    ],
)
def test_numpy_headers_must_match_the_stored_bytes(body: bytes) -> None:
    for data in (
        ser.TAG_NUMPY + body,
        ser.TAG_MSGPACK + msgspec.msgpack.encode(msgspec.msgpack.Ext(ser.X_NDARRAY, body)),
    ):
        out, peak = _traced_peak(lambda data=data: ser.deserialize(data))
        assert isinstance(out, CorruptValueError), out
        assert peak < 4 << 20


def test_big_integers_are_bounded_even_when_python_is_not() -> None:
    """int() of a long digit string is quadratic; Python's own limit can be switched off."""
    data = ser.TAG_MSGPACK + msgspec.msgpack.encode(msgspec.msgpack.Ext(ser.X_BIGINT, b"9" * 200_000))
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        with pytest.raises(CorruptValueError, match="text field"):
            ser.deserialize(data)
    finally:
        sys.set_int_max_str_digits(limit)
    assert ser.deserialize(ser.serialize(-(10**4000))[0]) == -(10**4000)


def _frame_with(column: list[Any]) -> bytes:
    return ser.TAG_PANDAS + msgspec.msgpack.encode({"columns": _rows(1), "index": _rows(1), "data": [column]})


def _utc_column() -> list[Any]:
    arr = np.array([0], dtype="datetime64[ns]")
    return ["np", msgspec.msgpack.Ext(ser.X_NDARRAY, bytes(ser._numpy_bytes(arr)))]


@pytest.mark.parametrize(
    "column",
    [
        lambda path: ["obj", [1], f"datetime64[ns, dateutil/:{path}]"],
        lambda path: ["obj", [1], "datetime64[ns, dateutil/" + "../" * 12 + f"{str(path).lstrip('/')}]"],
        lambda path: ["obj", [None], f"interval[datetime64[ns, dateutil/:{path}], right]"],
        lambda path: ["dttz", _utc_column(), f"dateutil/:{path}"],
    ],
    ids=["dtype-absolute", "dtype-relative", "interval-dtype", "dttz-time-zone"],
)
def test_stored_time_zones_never_name_a_file_to_read(tmp_path, monkeypatch, column: Any) -> None:
    """pandas opens the file a "dateutil/<path>" time zone names: a value must not make it."""
    import builtins

    secret = tmp_path / "secret"
    secret.write_bytes(b"TZif")
    opened: list[str] = []
    real_open = builtins.open

    def spy(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    with pytest.raises(CorruptValueError):
        ser.deserialize(_frame_with(column(secret)))
    assert not [f for f in opened if "secret" in f]


def test_categories_given_as_a_range_are_bounded() -> None:
    codes = ["np", msgspec.msgpack.Ext(ser.X_NDARRAY, bytes(ser._numpy_bytes(np.array([0], np.int8))))]
    data = _frame_with(["cat", codes, _rows(10**12), False])
    out, peak = _traced_peak(lambda: ser.to_jsonable(ser.deserialize(data)))
    assert isinstance(out, CorruptValueError), out
    assert peak < 4 << 20
    few = ser.deserialize(_frame_with(["cat", codes, _rows(3), False]))
    assert list(few.iloc[:, 0].cat.categories) == [0, 1, 2]
