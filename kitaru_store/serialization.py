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

Data classes, msgspec Structs and pydantic models are stored as data (their fields plus the import
path of their class). On load the class is imported and must still be a data class, Struct or
pydantic model: a store cannot make us call an arbitrary function. Resolving the class imports its
module, so a tampered store can make an installed module load (never code from the store itself).
numpy and pandas are imported only when a value needs them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import importlib
import os
import pickle
import struct
import sys
import uuid
import warnings
from typing import Any

import msgspec

from . import buffers
from .errors import PickleNotAllowedError, SerializationError

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


def _pack(v: Any) -> Any:
    t = type(v)
    if t is str or t is float or t is bool or v is None or t is bytes:
        return v
    if t is int:
        return v if _INT_MIN <= v <= _INT_MAX else msgspec.msgpack.Ext(X_BIGINT, str(v).encode())
    if t is list:
        return [_pack(x) for x in v]
    if t is dict:
        keys = [_pack(k) for k in v]
        if any(type(k) is msgspec.msgpack.Ext for k in keys):
            # Tuple, datetime, ... keys pack to Ext, which cannot be a map key: store the pairs.
            return _ext(X_DICT, [[k, _pack(x)] for k, x in zip(keys, v.values(), strict=True)])
        return dict(zip(keys, (_pack(x) for x in v.values()), strict=True))
    if t is tuple:
        return _ext(X_TUPLE, [_pack(x) for x in v])
    if t is set or t is frozenset:
        return _ext(X_SET if t is set else X_FROZENSET, [_pack(x) for x in v])
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
        return _ext(X_ENUM, [_qualified(t), _pack(v.value)])
    if isinstance(v, msgspec.Struct):
        fields = {f: _pack(getattr(v, f)) for f in v.__struct_fields__}
        return _ext(X_OBJECT, ["struct", _qualified(t), fields])
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        fields = {f.name: _pack(getattr(v, f.name)) for f in dataclasses.fields(v)}
        return _ext(X_OBJECT, ["dataclass", _qualified(t), fields])
    if "pydantic" in sys.modules and isinstance(v, sys.modules["pydantic"].BaseModel):
        fields = {k: _pack(getattr(v, k)) for k in type(v).model_fields}
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
    import numpy as np

    head_len, pad = struct.unpack_from("<II", view, 0)
    header = _dec.decode(view[8 : 8 + head_len])
    if header.get("dtype") == "O":
        items = header["items"]
        out = np.empty(len(items), dtype=object)
        for i, item in enumerate(items):
            out[i] = item
        return out.reshape(header["shape"])
    dtype = np.lib.format.descr_to_dtype(_descr(header["descr"]))
    data = view[8 + head_len + pad :]
    arr = np.frombuffer(data, dtype=dtype) if len(data) else np.empty(0, dtype=dtype)
    arr = arr.reshape(header["shape"], order="F" if header["fortran"] else "C")
    if not arr.flags.writeable and arr.nbytes < writable_copy_below:
        arr = arr.copy(order="K")
    return arr


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


def _column_from(tree: Any) -> Any:
    import pandas as pd

    kind = tree[0]
    if kind == "np":
        return tree[1]
    if kind == "cat":
        codes = _column_from(tree[1])
        return pd.Categorical.from_codes(codes, categories=_index_from(tree[2]), ordered=tree[3])
    if kind == "dttz":
        return pd.DatetimeIndex(_column_from(tree[1])).tz_localize("UTC").tz_convert(tree[2])
    values = tree[1]
    return pd.array(values, dtype=None if tree[2] == "object" else tree[2]) if tree[2] != "object" else values


def _index_tree(index: Any) -> Any:
    import pandas as pd

    if isinstance(index, pd.RangeIndex):
        return ["range", index.start, index.stop, index.step, _pack(index.name)]
    if isinstance(index, pd.MultiIndex):
        return ["multi", _pack(list(index)), _pack(list(index.names))]
    return ["index", _column(pd.Series(index)), _pack(index.name)]


def _index_from(tree: Any) -> Any:
    import pandas as pd

    kind = tree[0]
    if kind == "range":
        return pd.RangeIndex(tree[1], tree[2], tree[3], name=(tree[4]))
    if kind == "multi":
        return pd.MultiIndex.from_tuples((tree[1]), names=(tree[2]))
    values = _column_from(tree[1])
    return pd.Index(values, name=(tree[2]))


def _frame_tree(df: Any) -> Any:
    columns = [_column(df.iloc[:, i]) for i in range(df.shape[1])]
    return {"columns": _index_tree(df.columns), "index": _index_tree(df.index), "data": columns}


def _frame_from(tree: Any) -> Any:
    import pandas as pd

    index = _index_from(tree["index"])
    columns = _index_from(tree["columns"])
    data = {i: _column_from(c) for i, c in enumerate(tree["data"])}
    df = pd.DataFrame(data, index=index)
    df.columns = columns
    return df


# --- decoding --------------------------------------------------------------------------------


def _import_class(path: str, kind: str) -> type | None:
    module_name, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    if not isinstance(obj, type):
        return None
    ok = {
        "dataclass": dataclasses.is_dataclass(obj),
        "struct": issubclass(obj, msgspec.Struct),
        "pydantic": "pydantic" in sys.modules and issubclass(obj, sys.modules["pydantic"].BaseModel),
        "enum": issubclass(obj, enum.Enum),
    }.get(kind, False)
    if not ok:
        raise SerializationError(
            f"stored {kind} names {path}, which is not a {kind} class",
            hint="the store may have been tampered with; it will not be turned into an object",
        )
    return obj


def _make_object(kind: str, path: str, fields: dict[str, Any]) -> Any:
    cls = _import_class(path, kind)
    if cls is None:
        warnings.warn(
            f"class {path} cannot be imported; loading its fields as a dict", RuntimeWarning, stacklevel=4
        )
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


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == X_TUPLE:
        return tuple(_dec.decode(data))
    if code in (X_SET, X_FROZENSET):
        items = _dec.decode(data)
        return set(items) if code == X_SET else frozenset(items)
    if code == X_DATETIME:
        return dt.datetime.fromisoformat(bytes(data).decode())
    if code == X_DATE:
        return dt.date.fromisoformat(bytes(data).decode())
    if code == X_TIME:
        return dt.time.fromisoformat(bytes(data).decode())
    if code == X_TIMEDELTA:
        days, seconds, micros = _dec.decode(data)
        return dt.timedelta(days=days, seconds=seconds, microseconds=micros)
    if code == X_BIGINT:
        return int(bytes(data).decode())
    if code == X_DECIMAL:
        return decimal.Decimal(bytes(data).decode())
    if code == X_UUID:
        return uuid.UUID(bytes=bytes(data))
    if code == X_COMPLEX:
        re, im = _dec.decode(data)
        return complex(re, im)
    if code == X_BYTEARRAY:
        return bytearray(data)
    if code == X_DICT:
        return {k: v for k, v in _dec.decode(data)}
    if code == X_ENUM:
        path, value = _dec.decode(data)
        cls = _import_class(path, "enum")
        return value if cls is None else cls(value)
    if code == X_OBJECT:
        kind, path, fields = _dec.decode(data)
        return _make_object(kind, path, fields)
    if code == X_NDARRAY:
        return _numpy_from(memoryview(bytes(data)), writable_copy_below=1 << 62)
    if code == X_NPSCALAR:
        return _numpy_from(memoryview(bytes(data)))[()]
    if code == X_DATAFRAME:
        return _frame_from(_dec.decode(data))
    if code == X_SERIES:
        import pandas as pd

        name, column, index = _dec.decode(data)
        return pd.Series(_column_from(column), index=_index_from(index), name=name)
    raise SerializationError(f"unknown extension type {code} in stored value", hint="upgrade kitaru")


_dec = msgspec.msgpack.Decoder(ext_hook=_ext_hook)


# --- public API ------------------------------------------------------------------------------


def serialize(value: Any, *, allow_pickle: bool | None = None) -> tuple[bytes | bytearray | memoryview, str]:
    """``(tagged bytes, serializer name)`` for ``value``."""
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
    except RecursionError:
        raise SerializationError(
            f"cannot serialize a value of type {_qualified(t)}: it contains itself or nests too deeply",
            hint="store plain data without cycles, nested less than a few hundred levels deep",
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


def deserialize(data: bytes | bytearray | memoryview, *, allow_pickle: bool | None = None) -> Any:
    """The value behind tagged bytes. numpy data is viewed in place, not copied, when it is large."""
    name = serializer_name(data)
    view = memoryview(data)
    body = view[1:]
    try:
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
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(f"cannot decode a stored {name} value: {exc}") from exc
    if not pickle_allowed(allow_pickle):
        raise PickleNotAllowedError(
            "this value was stored with pickle, and loading a pickle runs code",
            hint="load it with allow_pickle=True or KITARU_ALLOW_PICKLE=1 only if you trust the store",
        )
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
