"""Fuzzing what a pull decodes: records, chunk indexes, manifests, the config and the listing a
remote sends (kitaru_store/remote/inbound.py), then mutated objects through a real pull.

Every decoder is held to fuzz_helpers' contract: a value or a KitaruError, within the memory
bound. The last test pulls from moto's S3 server with one remote object or manifest mutated and
checks that the pull returns or raises typed, the local store stays fsck-clean, and every
execution the mutation did not touch still arrives.
"""

from __future__ import annotations

import importlib.util
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fuzz_helpers import EXAMPLES, FUZZ, decode_within_bounds, mutations
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kitaru_store import KitaruError, Repository, codec, hashing, ids, layout, objects
from kitaru_store import manifests as mf
from kitaru_store.backend import close_backend
from kitaru_store.remote import inbound
from kitaru_store.remote import settings as remote_settings
from kitaru_store.remote.s3 import S3Transport
from kitaru_store.remote.sync import Remote, manifest_path, object_path

REMOTE_TESTS = Path(__file__).resolve().parent.parent / "remote"
if str(REMOTE_TESTS) not in sys.path:
    sys.path.insert(0, str(REMOTE_TESTS))
from remote_helpers import add_remote, make_execution  # noqa: E402


def _load_remote_conftest() -> Any:
    """tests/remote/conftest.py under a name of its own: its moto server fixtures serve here too."""
    spec = importlib.util.spec_from_file_location("remote_conftest_for_fuzz", REMOTE_TESTS / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_remote_conftest = _load_remote_conftest()
s3_endpoint = _remote_conftest.s3_endpoint
s3 = _remote_conftest.s3
bucket = _remote_conftest.bucket


# --- valid payloads to mutate ----------------------------------------------------------------

_rng = random.Random(12)
_SMALL = b"kitaru " * 40  # compressible: a zstd record
_RAW = _rng.randbytes(300)  # incompressible: a raw record
_BIG = _rng.randbytes(1536 << 10)  # chunked


def _records() -> list[tuple[bytes, bytes]]:
    """(key, record) pairs: a zstd and a raw data record, and a chunk index (raw and zstd)."""
    out = [(hashing.digest(d), codec.encode(d)) for d in (_SMALL, _RAW)]
    prepared = objects.prepare(_BIG)
    index = prepared.pieces[-1].data
    out.append((prepared.key, codec.encode(index, kind=codec.KIND_INDEX, level=0)))
    import zstandard  # a zstd index record, which codec.encode would not make (random keys)

    packed = zstandard.ZstdCompressor(write_content_size=True).compress(bytes(index))
    out.append((prepared.key, bytes((1, codec.KIND_INDEX, codec.CODEC_ZSTD)) + packed))
    return out


RECORDS = _records()


def _manifest() -> bytes:
    import datetime as dt

    t0 = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    entry = mf.Entry(
        artifact_id="a" * 32,
        name="note",
        kind="manual",
        artifact_type="blob",
        object_id=RECORDS[0][0].hex(),
        size=len(_SMALL),
        serializer="bytes",
        created_at=t0,
        tags=("x",),
        metadata={"k": [1, {"n": None}]},
    )
    checkpoint = mf.CheckpointRecord(invocation_id="step", name="step", status="completed", started_at=t0)
    wait = mf.WaitRecord(name="ok?", status="pending", created_at=t0, metadata={"w": 1})
    return mf.encode_manifest(
        mf.Manifest(
            exec_id="b" * 32,
            flow_name="demo",
            status="completed",
            started_at=t0,
            entries=(entry,),
            checkpoints=(checkpoint,),
            waits=(wait,),
            metadata={"m": "v"},
        )
    )


MANIFEST = _manifest()
CONFIG = b'{"kind": "kitaru-remote", "format": 1, "store_id": "00", "created_at": "2025"}\n'


# Length fields overwritten with extreme values (any 1, 2 or 4 bytes).
_EXTREMES = [fill * width for fill in (b"\xff", b"\x00", b"\x7f") for width in (1, 2, 4)]


def mutated(valid: bytes) -> st.SearchStrategy[bytes]:
    return mutations([valid], _EXTREMES, most=3)


def _payloads(valid: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=4096), mutated(valid))


# --- the decoders ----------------------------------------------------------------------------


@FUZZ
@given(which=st.integers(0, len(RECORDS) - 1), data=st.data())
def test_fuzz_remote_records(which: int, data: st.DataObject) -> None:
    key, valid = RECORDS[which]
    record = data.draw(_payloads(valid))
    outcome = decode_within_bounds(
        lambda: inbound.verify_record(record, key, "fuzz", exec_id=None), len(record)
    )
    if not isinstance(outcome, KitaruError):
        kind, payload = outcome
        if kind == codec.KIND_DATA:
            assert hashing.digest(payload) == key  # accepted only if it is the object
        else:
            index = inbound.parse_index(payload, key, "fuzz", exec_id=None)
            assert sum(size for _, size in index.chunks) == index.size


@FUZZ
@given(body=_payloads(MANIFEST))
def test_fuzz_remote_manifests(body: bytes) -> None:
    outcome = decode_within_bounds(lambda: inbound.decode_manifest(body, "b" * 32, "fuzz"), len(body))
    if not isinstance(outcome, KitaruError):
        assert outcome.exec_id == "b" * 32
        inbound.check_manifest(outcome)  # what was accepted passes the checks again


@FUZZ
@given(body=_payloads(CONFIG))
def test_fuzz_remote_config(body: bytes) -> None:
    outcome = decode_within_bounds(lambda: inbound.decode_config(body, "s3://fuzz", "fuzz"), len(body))
    if not isinstance(outcome, KitaruError):
        assert isinstance(outcome, dict) and isinstance(outcome["format"], int)


class _Listing:
    """A transport whose LIST answers what the test says (keys and ETags from the remote)."""

    counts: dict[str, int] = {}

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self.items = items

    def list(self, prefix: str) -> Iterator[tuple[str, str]]:
        return iter(self.items)


_keys = st.one_of(
    st.text(max_size=80).map(lambda t: "manifests/" + t),
    st.sampled_from(["manifests/" + "c" * 32, "manifests/" + "C" * 32, "manifests/" + "c" * 31 + "\n"]),
)


@settings(FUZZ, max_examples=max(20, EXAMPLES // 4))
@given(items=st.lists(st.tuples(_keys, st.text(max_size=40)), max_size=20))
def test_fuzz_remote_listing(items: list[tuple[str, str]]) -> None:
    remote = Remote.__new__(Remote)
    remote.transport = _Listing(items)  # type: ignore[assignment]
    listed = decode_within_bounds(remote.list_executions, sum(len(k) + len(e) for k, e in items))
    for exec_id in listed:
        assert len(exec_id) == ids.UUID_HEX and layout.uuid_key(exec_id).hex() == exec_id


# --- mutated objects through a real pull -----------------------------------------------------


@pytest.fixture
def pushed(s3_endpoint: str, bucket: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, list[str]]]]:
    """A remote holding three executions: a small value, a raw one, a chunked one. Yields the URL
    and, per execution, the remote keys it needs (its manifest and objects)."""
    url = f"s3://{bucket}/team"
    a = Repository.open(tmp_path / "a")
    made = [
        make_execution(a, {"small": _SMALL.decode()}, flow="small"),
        make_execution(a, {"raw": _RAW}, flow="raw"),
        make_execution(a, {"big": _BIG}, flow="big"),
    ]
    add_remote(a, url, s3_endpoint)
    Remote(a, remote_settings.get(a.root)).push()
    needs: dict[str, list[str]] = {}
    with a._backend().read(buffers=True) as rt:
        for exec_id in made:
            keys = [manifest_path(exec_id)]
            for oid in mf.referenced_ids(a.get_execution(exec_id)):
                key = layout.object_key(oid)
                record = rt.get_view(b"objects", key)
                assert record is not None
                keys += [object_path(k) for k in [key, *objects.chunk_keys(record, key)]]
            needs[exec_id] = keys
    yield url, needs
    close_backend(str(tmp_path / "a" / "db"))


@settings(
    FUZZ,
    max_examples=max(6, EXAMPLES // 25),
    suppress_health_check=[*FUZZ.suppress_health_check, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fuzz_a_real_pull_of_mutated_remote_objects(
    pushed: tuple[str, dict[str, list[str]]], s3_endpoint: str, s3: Any, bucket: str, data: st.DataObject
) -> None:
    url, needs = pushed
    exec_id = data.draw(st.sampled_from(sorted(needs)))
    key = data.draw(st.sampled_from(needs[exec_id]))
    original = s3.get_object(Bucket=bucket, Key=f"team/{key}")["Body"].read()
    body = data.draw(mutated(original[:4096] if len(original) > 65536 else original))
    if len(original) > 65536:  # a large chunk: mutate its head, keep the rest
        body += original[4096:]
    s3.put_object(Bucket=bucket, Key=f"team/{key}", Body=body)
    where = Path(tempfile.mkdtemp(prefix="kitaru-fuzz-pull-"))
    try:
        b = Repository.open(where)
        add_remote(b, url, s3_endpoint)
        remote = Remote(b, remote_settings.get(b.root), jobs=4)
        remote.transport = S3Transport(remote.spec, pool=6)
        try:
            report = remote.pull()
        except KitaruError as exc:
            report = getattr(exc, "report", None)
            assert report is not None, f"a pull stopped with {exc!r} instead of reporting the execution"
        touched = {e for e, keys in needs.items() if key in keys}
        arrived = set(report.fetched)
        assert set(needs) - touched <= arrived  # every untouched execution still arrives
        assert {f.exec_id for f in report.failed} <= touched
        assert b.fsck().ok
        for got in arrived:
            manifest = b.get_execution(got)
            for oid in mf.referenced_ids(manifest):
                b.get_bytes(oid)  # everything that arrived reads back verified
        close_backend(str(where / "db"))
    finally:
        s3.put_object(Bucket=bucket, Key=f"team/{key}", Body=original)
        shutil.rmtree(where, ignore_errors=True)
