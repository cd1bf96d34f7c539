"""Values <-> tagged bytes. The first byte of every serialized value names its serializer.

=====  ===========  ==============================================================================
tag    serializer   payload
=====  ===========  ==============================================================================
``s``  str          UTF-8 text (so that ``kitaru-store cat`` can print it as it is)
``b``  bytes        the bytes
``m``  msgpack      a MessagePack tree; extension types keep tuple, set, datetime, numpy, ... apart
``n``  numpy        ``u32 header length, u32 padding`` + MessagePack header + padding + raw array data
``d``  pandas       a MessagePack tree describing a DataFrame (columns as numpy data)
``p``  pickle       a pickle; written and read only when the caller opted in
=====  ===========  ==============================================================================

Data classes, msgspec Structs, pydantic models and enums are stored as data (their fields, or
value, plus the ``module:qualname`` of their class). Loading never imports anything: the class is
taken from :func:`register` or from a module that is already imported, and must be a class of the
stored kind; otherwise the value loads as plain data (a dict of its fields, or the enum's value)
with one warning. Every decoder checks declared lengths and shapes against the bytes it has before
it allocates, and trees nest at most ``nesting.MAX_DEPTH`` levels when written.
numpy and pandas are imported only when a value needs them.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import decimal
import enum
import math
import os
import pickle
import re
import struct
import sys
import types
import uuid
import warnings
from typing import Any

import msgspec

from . import buffers, nesting
from .errors import CorruptValueError, NestingTooDeepError, PickleNotAllowedError, SerializationError

TAG_STR, TAG_BYTES, TAG_MSGPACK, TAG_NUMPY, TAG_PANDAS, TAG_PICKLE = b"s", b"b", b"m", b"n", b"d", b"p"
NAMES = {
    TAG_STR[0]: "str",
    TAG_BYTES[0]: "bytes",
    TAG_MSGPACK[0]: "msgpack",
    TAG_NUMPY[0]: "numpy",
    TAG_PANDAS[0]: "pandas",
    TAG_PICKLE[0]: "pickle",
}
_ALIGN = 64

# Extension codes inside MessagePack trees.
X_TUPLE, X_SET, X_FROZENSET, X_DATETIME, X_DATE, X_TIME, X_TIMEDELTA = 1, 2, 3, 4, 5, 6, 7
X_BIGINT, X_NDARRAY, X_OBJECT, X_DECIMAL, X_UUID, X_COMPLEX, X_NPSCALAR, X_DATAFRAME = (
    8,
    9,
    10,
    11,
    12,
    13,
    14,
    15,
)
X_ENUM, X_BYTEARRAY, X_SERIES, X_DICT = 16, 17, 18, 19

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def pickle_allowed(flag: bool | None) -> bool:
    """The per-call flag wins; otherwise the KITARU_ALLOW_PICKLE setting decides (default: no)."""
    if flag is not None:
        return flag
    return os.environ.get("KITARU_ALLOW_PICKLE", "").strip().lower() in ("1", "true", "yes", "on")


class _Unsupported(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


def _qualified(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _is_numpy(v: Any) -> bool:
    return "numpy" in sys.modules and isinstance(v, sys.modules["numpy"].ndarray)


def _is_pandas_frame(v: Any) -> bool:
    return "pandas" in sys.modules and isinstance(v, sys.modules["pandas"].DataFrame)


# --- encoding --------------------------------------------------------------------------------

_enc = msgspec.msgpack.Encoder()


def _ext(code: int, tree: Any) -> msgspec.msgpack.Ext:
    return msgspec.msgpack.Ext(code, _enc.encode(tree))


def _pack(v: Any, depth: int = 1) -> Any:
    """``v`` as a MessagePack tree; ``depth``: the containers around it, this one included."""
    t = type(v)
    if t is str or t is float or t is bool or v is None or t is bytes:
        return v
    if t is int:
        return v if _INT_MIN <= v <= _INT_MAX else msgspec.msgpack.Ext(X_BIGINT, str(v).encode())
    if depth > nesting.MAX_DEPTH and t not in _LEAVES:  # containers, objects, arrays, frames
        raise _too_deep(v)
    inner = depth + 1
    if t is list:
        return [_pack(x, inner) for x in v]
    if t is dict:
        keys = [_pack(k, inner) for k in v]
        if any(type(k) is msgspec.msgpack.Ext for k in keys):
            # Tuple, datetime, ... keys pack to Ext, which cannot be a map key: store the pairs.
            return _ext(X_DICT, [[k, _pack(x, inner)] for k, x in zip(keys, v.values(), strict=True)])
        return dict(zip(keys, (_pack(x, inner) for x in v.values()), strict=True))
    if t is tuple:
        return _ext(X_TUPLE, [_pack(x, inner) for x in v])
    if t is set or t is frozenset:
        return _ext(X_SET if t is set else X_FROZENSET, [_pack(x, inner) for x in v])
    if t is dt.datetime:
        return msgspec.msgpack.Ext(X_DATETIME, v.isoformat().encode())
    if t is dt.date:
        return msgspec.msgpack.Ext(X_DATE, v.isoformat().encode())
    if t is dt.time:
        return msgspec.msgpack.Ext(X_TIME, v.isoformat().encode())
    if t is dt.timedelta:
        return _ext(X_TIMEDELTA, [v.days, v.seconds, v.microseconds])
    if t is decimal.Decimal:
        return msgspec.msgpack.Ext(X_DECIMAL, str(v).encode())
    if t is uuid.UUID:
        return msgspec.msgpack.Ext(X_UUID, v.bytes)
    if t is complex:
        return _ext(X_COMPLEX, [v.real, v.imag])
    if t is bytearray:
        return msgspec.msgpack.Ext(X_BYTEARRAY, bytes(v))
    if isinstance(v, enum.Enum):
        return _ext(X_ENUM, [_qualified(t), _pack(v.value, inner)])
    if isinstance(v, msgspec.Struct):
        fields = {f: _pack(getattr(v, f), inner) for f in v.__struct_fields__}
        return _ext(X_OBJECT, ["struct", _qualified(t), fields])
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        fields = {f.name: _pack(getattr(v, f.name), inner) for f in dataclasses.fields(v)}
        return _ext(X_OBJECT, ["dataclass", _qualified(t), fields])
    if "pydantic" in sys.modules and isinstance(v, sys.modules["pydantic"].BaseModel):
        fields = {k: _pack(getattr(v, k), inner) for k in type(v).model_fields}
        return _ext(X_OBJECT, ["pydantic", _qualified(t), fields])
    if _is_numpy(v):
        return msgspec.msgpack.Ext(X_NDARRAY, _numpy_bytes(v))
    if "numpy" in sys.modules and isinstance(v, sys.modules["numpy"].generic):
        arr = sys.modules["numpy"].asarray(v)
        return msgspec.msgpack.Ext(X_NPSCALAR, _numpy_bytes(arr))
    if _is_pandas_frame(v):
        return msgspec.msgpack.Ext(X_DATAFRAME, _enc.encode(_frame_tree(v)))
    if "pandas" in sys.modules and isinstance(v, sys.modules["pandas"].Series):
        return _ext(X_SERIES, [_pack(v.name), _column(v), _index_tree(v.index)])
    raise _Unsupported(v)


# Extensions that hold no further values: they add no level of nesting.
_LEAVES = frozenset(
    {dt.datetime, dt.date, dt.time, dt.timedelta, decimal.Decimal, uuid.UUID, complex, bytearray}
)


def _too_deep(v: Any) -> NestingTooDeepError:
    return NestingTooDeepError(
        f"cannot serialize a value of type {_qualified(type(v))}: it nests more than"
        f" {nesting.MAX_DEPTH} levels deep (or contains itself)",
        hint=f"store at most {nesting.MAX_DEPTH} levels of lists, dicts, tuples and objects, without cycles",
    )


# --- numpy -----------------------------------------------------------------------------------


def _numpy_bytes(arr: Any, prefix: bytes = b"") -> bytes | bytearray | memoryview:
    """``prefix`` + ``u32 header length, u32 padding, header, padding, data``.

    The padding puts the data at a multiple of 64 bytes from the start of the serialized value
    (tag included), so a value read into a fresh, aligned buffer yields an aligned array. Built
    with one join: the array's bytes are copied once, into a buffer nothing else zero-fills.
    """
    np = sys.modules["numpy"]
    if arr.dtype.hasobject:
        flat = arr.reshape(-1).tolist()  # C order: the order the loader reshapes in
        head = _enc.encode({"dtype": "O", "shape": list(arr.shape), "items": _pack(flat)})
        return prefix + struct.pack("<II", len(head), 0) + head
    fortran = bool(arr.flags.f_contiguous and not arr.flags.c_contiguous)
    descr = np.lib.format.dtype_to_descr(arr.dtype)
    head = _enc.encode({"descr": descr, "shape": list(arr.shape), "fortran": fortran})
    offset = 8 + len(head)
    pad = (-(offset + 1)) % _ALIGN  # +1: the serializer tag precedes this buffer
    parts: list[Any] = [prefix, struct.pack("<II", len(head), pad), head, b"\x00" * pad]
    if arr.nbytes:
        data = arr if (arr.flags.c_contiguous or fortran) else np.ascontiguousarray(arr)
        # A uint8 view: memoryview cannot export datetime64 / timedelta64 data.
        parts.append(memoryview(data.reshape(-1, order="F" if fortran else "C").view(np.uint8)))
    return _joined(parts)


def _joined(parts: list[Any]) -> bytes | bytearray | memoryview:
    """The parts in one buffer; a large one in memory that is cheap to fill (buffers.py)."""
    total = sum(len(p) for p in parts)
    if total < buffers.MAP_FROM:
        return b"".join(parts)
    out = buffers.alloc(total)
    pos = 0
    for part in parts:
        out[pos : pos + len(part)] = part
        pos += len(part)
    return out


def _numpy_from(view: memoryview, *, writable_copy_below: int = 1 << 20) -> Any:
    """The array in ``view`` (6.2), after checking its header against the bytes present."""
    import numpy as np

    _expect(len(view) >= 8, "the numpy header is truncated")
    head_len, pad = struct.unpack_from("<II", view, 0)
    _expect(8 + head_len <= len(view), f"the numpy header declares {head_len} bytes, {len(view) - 8} follow")
    header = _dec.decode(view[8 : 8 + head_len])
    _expect(type(header) is dict, "the numpy header is not a map")
    shape = header.get("shape")
    _expect(
        type(shape) is list and len(shape) <= _MAX_NDIM and all(type(n) is int and n >= 0 for n in shape),
        f"the numpy header has an invalid shape {shape!r}",
    )
    count = math.prod(shape)
    if header.get("dtype") == "O":
        items = header.get("items")
        _expect(
            type(items) is list and len(items) == count,
            f"an object array of shape {shape} holds {len(items) if type(items) is list else 'no'} items",
        )
        out = np.empty(count, dtype=object)
        for i, item in enumerate(items):
            out[i] = item
        return out.reshape(shape)
    fortran = header.get("fortran")
    _expect(type(fortran) is bool, "the numpy header has no fortran flag")
    dtype = np.lib.format.descr_to_dtype(_descr(header.get("descr")))
    _expect(not dtype.hasobject, "a raw numpy array cannot hold Python objects")
    start = 8 + head_len + pad
    _expect(
        start + count * dtype.itemsize == len(view),
        f"the numpy header declares shape {shape} of {dtype} ({count * dtype.itemsize} bytes),"
        f" {len(view) - start} bytes are stored",
    )
    data = view[start:]
    arr = np.frombuffer(data, dtype=dtype) if len(data) else np.empty(count, dtype=dtype)
    arr = arr.reshape(shape, order="F" if fortran else "C")
    if not arr.flags.writeable and arr.nbytes < writable_copy_below:
        arr = arr.copy(order="K")
    return arr


_MAX_NDIM = 64  # numpy's own limit


def _descr(d: Any) -> Any:
    """msgpack turns descr tuples into lists; numpy wants them back as tuples."""
    if isinstance(d, list):
        return [tuple(_descr(x) for x in item) if isinstance(item, list) else item for item in d]
    return d


# --- pandas ----------------------------------------------------------------------------------


def _column(s: Any) -> Any:
    import numpy as np
    import pandas as pd

    dtype = s.dtype
    if isinstance(dtype, np.dtype) and not dtype.hasobject:
        return ["np", msgspec.msgpack.Ext(X_NDARRAY, _numpy_bytes(s.to_numpy()))]
    if isinstance(dtype, pd.CategoricalDtype):
        return ["cat", _column(pd.Series(s.cat.codes)), _index_tree(dtype.categories), dtype.ordered]
    if isinstance(dtype, pd.DatetimeTZDtype):
        return ["dttz", _column(pd.Series(s.dt.tz_convert("UTC").dt.tz_localize(None))), str(dtype.tz)]
    values = [None if (x is pd.NA or x is pd.NaT) else x for x in s.tolist()]
    return ["obj", _pack(values), str(dtype)]


def _column_from(tree: Any, length: int | None) -> Any:
    """A column's values; ``length``: the rows it must have (None: any, for an index)."""
    _expect(type(tree) is list and len(tree) >= 2, "a pandas column is not a list")
    kind = tree[0]
    if kind == "np":
        values = tree[1]
        np = sys.modules.get("numpy")
        _expect(np is not None and isinstance(values, np.ndarray) and values.ndim == 1, "bad numpy column")
    elif kind == "cat" and len(tree) == 4 and type(tree[3]) is bool:
        import pandas as pd

        codes = _column_from(tree[1], length)
        categories = _index_from(tree[2])
        # A range holds no data: its declared length is checked here, a list's by its items.
        _expect(
            not isinstance(categories, pd.RangeIndex)
            or len(categories) <= max(len(codes), _RANGE_CATEGORIES),
            f"a categorical column of {len(codes)} rows declares {len(categories)} categories",
        )
        return pd.Categorical.from_codes(codes, categories=categories, ordered=tree[3])
    elif kind == "dttz" and len(tree) == 3 and _names_no_file(tree[2], _TZ_NAME):
        import pandas as pd

        utc = _column_from(tree[1], length)
        return pd.DatetimeIndex(utc).tz_localize("UTC").tz_convert(tree[2])
    elif kind == "obj" and len(tree) == 3 and type(tree[1]) is list and _names_no_file(tree[2], _DTYPE_TEXT):
        values = tree[1]
    else:
        raise _corrupt(f"unknown pandas column form {str(kind)[:40]!r}")
    _expect(length is None or len(values) == length, f"a pandas column has {len(values)} rows, not {length}")
    if kind == "np" or tree[2] == "object":
        return values
    import pandas as pd

    return pd.array(values, dtype=tree[2])


_RANGE_CATEGORIES = 1 << 16  # categories given as a range, beyond one per row

# A time zone name as pandas writes it (IANA names, fixed offsets): never a path of its own.
_TZ_NAME = re.compile(r"(?!.*\.\.)(?!.*//)[A-Za-z0-9_+\-:][A-Za-z0-9_+\-:./]{0,63}")
# A pandas dtype as str(dtype) writes it: "Int64", "period[D]", "interval[datetime64[ns, UTC], right]".
_DTYPE_TEXT = re.compile(r"(?!.*\.\.)(?!.*//)[A-Za-z0-9_\[\], +\-:/]{1,128}")


def _names_no_file(text: Any, form: re.Pattern[str]) -> bool:
    """Whether a stored time zone or dtype string is of ``form`` and names no file to read.

    pandas resolves a time zone "dateutil/<path>" (also inside a dtype string) by opening that
    path as a time zone file, wherever it is: stored data never names one.
    """
    return type(text) is str and form.fullmatch(text) is not None and "dateutil" not in text.lower()


def _index_tree(index: Any) -> Any:
    import pandas as pd

    if isinstance(index, pd.RangeIndex):
        return ["range", index.start, index.stop, index.step, _pack(index.name)]
    if isinstance(index, pd.MultiIndex):
        return ["multi", _pack(list(index)), _pack(list(index.names))]
    return ["index", _column(pd.Series(index)), _pack(index.name)]


def _index_from(tree: Any) -> Any:
    import pandas as pd

    _expect(type(tree) is list and len(tree) > 0, "a pandas index is not a list")
    kind = tree[0]
    if kind == "range" and len(tree) == 5 and all(type(x) is int for x in tree[1:4]) and tree[3] != 0:
        return pd.RangeIndex(tree[1], tree[2], tree[3], name=tree[4])
    if kind == "multi" and len(tree) == 3 and type(tree[1]) is list and type(tree[2]) is list:
        return pd.MultiIndex.from_tuples(tree[1], names=tree[2])
    _expect(kind == "index" and len(tree) == 3, f"unknown pandas index form {str(kind)[:40]!r}")
    return pd.Index(_column_from(tree[1], None), name=tree[2])


def _frame_tree(df: Any) -> Any:
    columns = [_column(df.iloc[:, i]) for i in range(df.shape[1])]
    return {"columns": _index_tree(df.columns), "index": _index_tree(df.index), "data": columns}


def _frame_from(tree: Any) -> Any:
    import pandas as pd

    _expect(type(tree) is dict and type(tree.get("data")) is list, "a pandas frame is not a map")
    index = _index_from(tree.get("index"))
    columns = _index_from(tree.get("columns"))
    _expect(len(columns) == len(tree["data"]), f"{len(columns)} column names for {len(tree['data'])} columns")
    data = {i: _column_from(c, len(index)) for i, c in enumerate(tree["data"])}
    df = pd.DataFrame(data, index=index)
    df.columns = columns
    return df


def _series_from(tree: Any) -> Any:
    import pandas as pd

    _expect(type(tree) is list and len(tree) == 3, "a pandas series is not [name, column, index]")
    name, column, index_tree = tree
    index = _index_from(index_tree)
    return pd.Series(_column_from(column, len(index)), index=index, name=name)


# --- classes named by stored values ----------------------------------------------------------

_KINDS = ("dataclass", "struct", "pydantic", "enum")
_registered: dict[str, type] = {}
# Classes a decode could not use, for its one warning (a list per deserialize call; a context
# variable so that a decode retried on a fresh stack, in another thread, still reports here).
_unavailable: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("_unavailable", default=None)


def register(cls: type, *, stored_as: str | None = None) -> type:
    """Let stored values naming ``cls`` (or the path ``stored_as``, ``"module:qualname"``) load as it.

    Values name their class by ``module:qualname``; loading finds it only in modules that are
    already imported, never by importing. Register a class to load values that name it before its
    module is imported, or under an old path after it moved. Returns ``cls`` (usable as a decorator).
    """
    if not isinstance(cls, type) or not any(_is_kind(cls, k) for k in _KINDS):
        raise SerializationError(
            f"cannot register {cls!r}: only data classes, msgspec Structs, pydantic models and enums"
            " are stored with their class",
            hint="register the class itself, e.g. register(MyDataclass)",
        )
    path = _qualified(cls) if stored_as is None else stored_as
    if not isinstance(path, str) or path.count(":") != 1:
        raise SerializationError(f"{path!r} is not a class path", hint='give it as "module:qualname"')
    _registered[path] = cls
    return cls


def _mro(cls: type) -> tuple[type, ...]:
    # Read through type's own descriptors: no metaclass or class code runs while a class is checked.
    mro: tuple[type, ...] = _TYPE_MRO.__get__(cls)
    return mro


_TYPE_MRO: Any = vars(type)["__mro__"]
_TYPE_DICT: Any = vars(type)["__dict__"]
_MODULE_DICT: Any = vars(types.ModuleType)["__dict__"]


def _is_kind(cls: type, kind: str) -> bool:
    mro = _mro(cls)
    if kind == "struct":
        return msgspec.Struct in mro
    if kind == "enum":
        return enum.Enum in mro
    if kind == "pydantic":
        pydantic = sys.modules.get("pydantic")
        return pydantic is not None and _MODULE_DICT.__get__(pydantic).get("BaseModel") in mro
    return kind == "dataclass" and any("__dataclass_fields__" in _TYPE_DICT.__get__(c) for c in mro)


def resolve_class(path: Any, kind: str) -> type | None:
    """The class a stored value names, if registered or in an imported module and of ``kind``.

    Nothing is imported and no attribute hook runs: the walk reads the module's and the classes'
    own namespaces.
    """
    cls = _registered.get(path) if type(path) is str else None
    if cls is None and type(path) is str:
        module_name, _, qualname = path.partition(":")
        obj: Any = sys.modules.get(module_name)
        if isinstance(obj, types.ModuleType) and qualname:
            namespace: Any = _MODULE_DICT.__get__(obj)
            for part in qualname.split("."):
                obj = namespace.get(part)
                if not isinstance(obj, type):
                    break
                namespace = _TYPE_DICT.__get__(obj)
            cls = obj if isinstance(obj, type) else None
    if cls is not None and _is_kind(cls, kind):
        return cls
    missing = _unavailable.get()
    if missing is not None and len(missing) < 20:
        missing.append(f"{str(path)[:200]} ({'not imported' if cls is None else f'not a {kind} class'})")
    return None


def _make_object(kind: str, path: str, fields: dict[str, Any]) -> Any:
    cls = resolve_class(path, kind)
    if cls is None:
        return fields
    if kind == "pydantic":
        return cls.model_validate(fields)  # type: ignore[attr-defined]
    if kind == "dataclass":
        init = {f.name: fields[f.name] for f in dataclasses.fields(cls) if f.init and f.name in fields}
        obj = cls(**init)
        for f in dataclasses.fields(cls):
            if not f.init and f.name in fields:
                object.__setattr__(obj, f.name, fields[f.name])
        return obj
    return cls(**fields)


_OURS = ("kitaru.", "kitaru_store")


def _warn_unavailable(missing: list[str]) -> None:
    """One warning for a whole load, attributed to the first caller outside kitaru."""
    level, frame = 1, sys._getframe(0)
    while frame.f_back is not None and str(frame.f_globals.get("__name__")).startswith(_OURS):
        frame, level = frame.f_back, level + 1
    warnings.warn(
        f"stored value names classes it cannot be loaded as: {', '.join(dict.fromkeys(missing))};"
        " loaded as plain data instead (a dict of fields, an enum's value). Loading never imports a"
        " module: import the modules that define them, or kitaru.register_type() them, first",
        RuntimeWarning,
        stacklevel=level,
    )


# --- decoding --------------------------------------------------------------------------------


def _corrupt(detail: str) -> CorruptValueError:
    return CorruptValueError(
        f"stored value is damaged: {detail}", hint="`kitaru-store fsck` lists damaged objects"
    )


def _expect(ok: bool, detail: str) -> None:
    if not ok:
        raise _corrupt(detail)


def _text(data: memoryview, limit: int) -> str:
    _expect(len(data) <= limit, f"a {len(data)}-byte text field (at most {limit})")
    return bytes(data).decode()


# int() of a long digit string takes quadratic time; Python refuses more than this many digits.
_MAX_INT_DIGITS = 4300


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == X_TUPLE:
        return tuple(_list(data))
    if code in (X_SET, X_FROZENSET):
        items = _list(data)
        return set(items) if code == X_SET else frozenset(items)
    if code == X_DATETIME:
        return dt.datetime.fromisoformat(_text(data, 64))
    if code == X_DATE:
        return dt.date.fromisoformat(_text(data, 64))
    if code == X_TIME:
        return dt.time.fromisoformat(_text(data, 64))
    if code == X_TIMEDELTA:
        days, seconds, micros = _list(data, 3)
        return dt.timedelta(days=days, seconds=seconds, microseconds=micros)
    if code == X_BIGINT:
        digits = _text(data, _MAX_INT_DIGITS + 1)
        _expect(digits.lstrip("-").isascii() and digits.lstrip("-").isdigit(), "a big integer is not digits")
        return int(digits)
    if code == X_DECIMAL:
        return decimal.Decimal(bytes(data).decode())
    if code == X_UUID:
        return uuid.UUID(bytes=bytes(data))
    if code == X_COMPLEX:
        re_, im = _list(data, 2)
        _expect(type(re_) is float and type(im) is float, "a complex number is not two floats")
        return complex(re_, im)
    if code == X_BYTEARRAY:
        return bytearray(data)
    if code == X_DICT:
        return {k: v for k, v in (_list(pair, 2) for pair in _list(data))}
    if code == X_ENUM:
        path, value = _list(data, 2)
        cls = resolve_class(path, "enum")
        return value if cls is None else cls(value)
    if code == X_OBJECT:
        kind, path, fields = _list(data, 3)
        _expect(kind in _KINDS and type(path) is str and type(fields) is dict, "a bad object record")
        return _make_object(kind, path, fields)
    if code == X_NDARRAY:
        return _numpy_from(memoryview(bytes(data)), writable_copy_below=1 << 62)
    if code == X_NPSCALAR:
        return _numpy_from(memoryview(bytes(data)))[()]
    if code == X_DATAFRAME:
        return _frame_from(_dec.decode(data))
    if code == X_SERIES:
        return _series_from(_dec.decode(data))
    raise SerializationError(f"unknown extension type {code} in stored value", hint="upgrade kitaru")


def _list(data: Any, length: int | None = None) -> list[Any]:
    """An ext's tree that must be an array (of ``length`` items)."""
    items = _dec.decode(data) if isinstance(data, memoryview) else data
    _expect(type(items) is list and (length is None or len(items) == length), "a bad extension record")
    checked: list[Any] = items
    return checked


_dec = msgspec.msgpack.Decoder(ext_hook=_ext_hook)


# --- public API ------------------------------------------------------------------------------


def serialize(value: Any, *, allow_pickle: bool | None = None) -> tuple[bytes | bytearray | memoryview, str]:
    """``(tagged bytes, serializer name)`` for ``value``.

    A value nested more than ``nesting.MAX_DEPTH`` levels deep is a NestingTooDeepError, at any
    depth of the caller's stack.
    """
    try:
        return nesting.on_fresh_stack(lambda: _serialize(value, allow_pickle))
    except RecursionError:
        raise _too_deep(value) from None


def _serialize(value: Any, allow_pickle: bool | None) -> tuple[bytes | bytearray | memoryview, str]:
    t = type(value)
    try:
        if t is str:
            return _joined([TAG_STR, value.encode("utf-8", "surrogatepass")]), "str"
        if t is bytes:
            return _joined([TAG_BYTES, value]), "bytes"  # one copy, no zero-fill
        if _is_numpy(value) and not value.dtype.hasobject:
            return _numpy_bytes(value, TAG_NUMPY), "numpy"
        if _is_pandas_frame(value):
            return TAG_PANDAS + _enc.encode(_frame_tree(value)), "pandas"
        return TAG_MSGPACK + _enc.encode(_pack(value)), "msgpack"
    except _Unsupported as exc:
        bad = type(exc.value)
        if pickle_allowed(allow_pickle):
            try:
                return TAG_PICKLE + pickle.dumps(value, protocol=5), "pickle"
            except Exception as pexc:
                raise SerializationError(
                    f"cannot pickle a value of type {_qualified(type(value))}: {pexc}",
                    hint="convert it to plain data (dict, list, str, numbers, bytes) before saving",
                ) from pexc
        raise PickleNotAllowedError(
            f"cannot store a value of type {_qualified(bad)} as data",
            hint="convert it to plain data, use a dataclass / msgspec Struct / pydantic model, or opt in to"
            " pickle with allow_pickle=True (per call) or KITARU_ALLOW_PICKLE=1",
        ) from None
    except (TypeError, OverflowError, ValueError, msgspec.EncodeError) as exc:
        raise SerializationError(
            f"cannot serialize a value of type {_qualified(t)}: {exc}",
            hint="store plain data, or opt in to pickle with allow_pickle=True",
        ) from exc


def serializer_name(data: bytes | bytearray | memoryview) -> str:
    if not len(data):
        raise SerializationError("empty stored value")
    name = NAMES.get(data[0])
    if name is None:
        raise SerializationError(f"unknown serializer tag {bytes(data[:1])!r}", hint="upgrade kitaru")
    return name


def deserialize(
    data: bytes | bytearray | memoryview, *, allow_pickle: bool | None = None, object_id: str | None = None
) -> Any:
    """The value behind tagged bytes. numpy data is viewed in place, not copied, when it is large.

    Whatever the bytes are, this returns a value or raises a SerializationError (naming
    ``object_id``): KeyboardInterrupt is the only other exception that gets through.
    """
    name = serializer_name(data)
    if name == "pickle" and not pickle_allowed(allow_pickle):
        raise PickleNotAllowedError(
            "this value was stored with pickle, and loading a pickle runs code",
            object_id=object_id,
            hint="load it with allow_pickle=True or KITARU_ALLOW_PICKLE=1 only if you trust the store",
        )
    token = _unavailable.set([])
    try:
        value = nesting.on_fresh_stack(lambda: _decode(name, memoryview(data)[1:]))
    except KeyboardInterrupt:
        raise
    except SerializationError as exc:
        if exc.object_id is None:
            exc.object_id = object_id
        raise
    except RecursionError:
        raise NestingTooDeepError(
            f"cannot decode a stored {name} value: it nests too deeply",
            object_id=object_id,
            hint="the value was not written by kitaru (which writes at most"
            f" {nesting.MAX_DEPTH} levels); `kitaru-store fsck` lists damaged objects",
        ) from None
    except BaseException as exc:  # a decoder's or a constructor's error, SystemExit included
        raise SerializationError(
            f"cannot decode the stored {name} value{f' {object_id}' if object_id else ''}:"
            f" {type(exc).__name__}: {exc}",
            object_id=object_id,
            hint="if it names a class, that class may have changed since the value was stored",
        ) from exc
    finally:
        missing = _unavailable.get()
        _unavailable.reset(token)
    if missing:
        _warn_unavailable(missing)
    return value


def _decode(name: str, body: memoryview) -> Any:
    if name == "str":
        return str(body, "utf-8", "surrogatepass")
    if name == "bytes":
        return bytes(body)
    if name == "msgpack":
        return _dec.decode(body)
    if name == "numpy":
        return _numpy_from(body)
    if name == "pandas":
        return _frame_from(_dec.decode(body))
    return pickle.loads(body)


def to_jsonable(value: Any) -> Any:
    """A JSON-friendly view of a loaded value, for display (the CLI's ``cat``)."""
    return msgspec.to_builtins(
        value,
        builtin_types=(),
        enc_hook=_display_hook,
        str_keys=True,
    )


def _display_hook(v: Any) -> Any:
    if _is_numpy(v):
        return v.tolist()
    if _is_pandas_frame(v):
        return v.to_dict(orient="list")
    if isinstance(v, complex):
        return [v.real, v.imag]
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}
    if "pydantic" in sys.modules and isinstance(v, sys.modules["pydantic"].BaseModel):
        return v.model_dump(mode="json")
    if "numpy" in sys.modules and isinstance(v, sys.modules["numpy"].generic):
        return v.item()
    return repr(v)
