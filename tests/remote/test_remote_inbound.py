"""What a remote may send: every body read with a cap, records exactly their length, pulled data
checked like user input (kitaru_store/remote/inbound.py), against moto's S3 server on loopback."""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from remote_helpers import add_remote, make_execution, pull_failure

from kitaru_store import (
    CorruptManifestError,
    CorruptObjectError,
    InvalidIdError,
    InvalidNameError,
    Repository,
    codec,
    layout,
)
from kitaru_store import manifests as mf
from kitaru_store.errors import ManifestTooLargeError
from kitaru_store.remote import inbound, settings
from kitaru_store.remote.errors import RemoteTooLargeError
from kitaru_store.remote.s3 import S3Transport, read_capped
from kitaru_store.remote.sync import Remote, manifest_path, object_path

Stores = Callable[[str], Repository]


def _remote(repo: Repository, *, jobs: int = 4) -> Remote:
    spec = settings.get(repo.root)
    return Remote(repo, spec, jobs=jobs, transport=S3Transport(spec, pool=jobs + 2))


def _pushed(stores: Stores, url: str, endpoint: str, values: dict[str, Any]) -> tuple[Repository, str]:
    a = stores("a")
    exec_id = make_execution(a, values)
    add_remote(a, url, endpoint)
    _remote(a).push()
    return a, exec_id


def _puller(stores: Stores, url: str, endpoint: str) -> Repository:
    b = stores("b")
    add_remote(b, url, endpoint)
    return b


def _assert_untouched(b: Repository) -> None:
    assert b.count_executions() == 0
    assert b.stats().objects == 0
    assert b.fsck().ok


@pytest.fixture
def body_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every byte read from an S3 response body (botocore's StreamingBody)."""
    from botocore.response import StreamingBody

    read = StreamingBody.read
    counted = [0]

    def counting(self: Any, amt: int | None = None) -> bytes:
        data: bytes = read(self, amt)
        counted[0] += len(data)
        return data

    monkeypatch.setattr(StreamingBody, "read", counting)
    return counted


def _replace_object(s3: Any, bucket: str, object_id: str, body: bytes) -> None:
    s3.put_object(Bucket=bucket, Key=f"team/{object_path(layout.object_key(object_id))}", Body=body)


# --- caps ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "size"),
    [(codec.KIND_DATA, inbound.MAX_DATA_RECORD + 1), (codec.KIND_INDEX, inbound.MAX_INDEX_RECORD + 1)],
    ids=["data-record", "chunk-index"],
)
def test_a_record_over_its_cap_is_refused_without_being_read(
    stores: Stores,
    url: str,
    s3_endpoint: str,
    s3: Any,
    bucket: str,
    body_bytes: list[int],
    kind: int,
    size: int,
) -> None:
    a, exec_id = _pushed(stores, url, s3_endpoint, {"note": "short"})
    victim = a.resolve_name(exec_id, "note").object_id
    _replace_object(s3, bucket, victim, bytes((1, kind, 0)) + bytes(size - 3))
    b = _puller(stores, url, s3_endpoint)
    error = pull_failure(_remote(b), CorruptObjectError)
    assert error.object_id == victim and "larger than any record" in error.message
    assert body_bytes[0] < 4096  # config and manifest, and 16 bytes of the record: never its body
    _assert_untouched(b)


def test_a_body_without_a_content_length_is_read_only_to_its_cap() -> None:
    """A server that sends no (or a wrong) Content-Length: reading stops one byte past the cap."""

    class Endless(io.RawIOBase):
        served = 0

        def readinto(self, buffer: Any) -> int:
            n = len(buffer)
            buffer[:n] = b"\x01" * n
            self.served += n
            return n

    stream = Endless()
    with pytest.raises(RemoteTooLargeError) as caught:
        read_capped(stream, None, inbound.MAX_DATA_RECORD, "objects/x")
    assert stream.served == inbound.MAX_DATA_RECORD + 1
    assert caught.value.head == b"\x01" * 16
    assert read_capped(io.BytesIO(b"abc"), None, 3, "k") == b"abc"


def test_a_valid_record_followed_by_junk_is_refused(
    stores: Stores, url: str, s3_endpoint: str, s3: Any, bucket: str
) -> None:
    a, exec_id = _pushed(stores, url, s3_endpoint, {"note": "x" * 601})
    victim = a.resolve_name(exec_id, "note").object_id
    with a._backend().read() as rt:
        record = rt.get(b"objects", layout.object_key(victim))
    assert record is not None and codec.is_compressed(record)
    _replace_object(s3, bucket, victim, record + random.Random(1).randbytes(64 << 10))
    b = _puller(stores, url, s3_endpoint)
    error = pull_failure(_remote(b), CorruptObjectError, match="follow the zstd frame")
    assert error.object_id == victim
    _assert_untouched(b)


def test_a_manifest_over_its_cap_is_refused_without_being_read(
    stores: Stores, url: str, s3_endpoint: str, s3: Any, bucket: str, body_bytes: list[int]
) -> None:
    _, exec_id = _pushed(stores, url, s3_endpoint, {"note": "short"})
    s3.put_object(Bucket=bucket, Key=f"team/{manifest_path(exec_id)}", Body=bytes(inbound.MAX_MANIFEST + 1))
    b = _puller(stores, url, s3_endpoint)
    pull_failure(_remote(b), CorruptManifestError, match="larger than a manifest may be")
    assert body_bytes[0] < 4096
    _assert_untouched(b)


def test_the_manifest_cap_holds_on_write(stores: Stores) -> None:
    a = stores("a")
    exec_id = make_execution(a, {"note": "short"})
    before = a.get_execution(exec_id)
    with pytest.raises(ManifestTooLargeError) as caught, a.writer() as w:
        w.merge_metadata(exec_id, {"blob": "x" * mf.MAX_MANIFEST_SIZE})
    assert caught.value.exec_id == exec_id
    assert a.get_execution(exec_id) == before
    assert a.fsck().ok


def test_pull_holds_at_most_jobs_records_at_once(
    stores: Stores, url: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory is bounded by jobs x the largest record, not by what an execution holds: of 40
    values of 256 KiB (10 MiB) pulled with 2 jobs, at most a few MiB are fetched and not yet
    written at any moment. (Counted, not traced: the S3 server shares this process.)"""
    from kitaru_store.repository import Writer

    rng = random.Random(5)
    _pushed(stores, url, s3_endpoint, {f"v{i}": rng.randbytes(256 << 10) for i in range(40)})
    b = _puller(stores, url, s3_endpoint)
    remote = _remote(b, jobs=2)
    held = {"fetched": 0, "written": 0, "peak": 0}
    real_get, real_flush = remote.transport.get, Writer.flush_objects

    def get(key: str, **kwargs: Any) -> Any:
        got = real_get(key, **kwargs)
        if got is not None and key.startswith("objects/"):
            held["fetched"] += len(got[0])
            held["peak"] = max(held["peak"], held["fetched"] - held["written"])
        return got

    def flush(self: Writer) -> None:
        held["written"] += self._pending.bytes
        real_flush(self)

    remote.transport.get = get  # type: ignore[method-assign]
    monkeypatch.setattr(Writer, "flush_objects", flush)
    report = remote.pull()
    assert len(report.fetched) == 1 and report.objects_fetched == 40
    assert held["fetched"] > 40 * (256 << 10)
    # the writer's flush batch (jobs x a data record) and the records fetched ahead of it
    assert held["peak"] <= 2 * 2 * inbound.MAX_DATA_RECORD, held
    assert b.fsck().ok


def _mutated_chunks(record: bytes) -> Iterator[bytes]:
    """A chunk index record with chunks that cannot be (a zero size, a wrong total)."""
    index = msgspec.msgpack.decode(codec.decode(record)[1])
    version, size, chunks = index
    yield codec.encode(msgspec.msgpack.encode([version, size, [[chunks[0][0], 0], *chunks[1:]]]), kind=1)
    yield codec.encode(msgspec.msgpack.encode([version, size + 1, chunks]), kind=1)


def test_a_chunk_index_with_impossible_sizes_is_refused(
    stores: Stores, url: str, s3_endpoint: str, s3: Any, bucket: str
) -> None:
    a, exec_id = _pushed(stores, url, s3_endpoint, {"big": random.Random(3).randbytes(1536 << 10)})
    big = a.resolve_name(exec_id, "big").object_id
    with a._backend().read() as rt:
        record = rt.get(b"objects", layout.object_key(big))
    assert record is not None
    for bad in _mutated_chunks(record):
        _replace_object(s3, bucket, big, bad)
        b = _puller(stores, url, s3_endpoint)
        error = pull_failure(_remote(b), CorruptObjectError)
        assert error.object_id == big
        _assert_untouched(b)
        b.close()
        import shutil

        from kitaru_store.backend import close_backend

        close_backend(str(b.root / "db"))
        shutil.rmtree(b.root)


# --- names and ids, checked like user input --------------------------------------------------


def _entry(m: mf.Manifest, **changes: Any) -> mf.Manifest:
    return msgspec.structs.replace(m, entries=(msgspec.structs.replace(m.entries[0], **changes),))


HOSTILE: dict[str, tuple[type[Exception], Callable[[mf.Manifest], mf.Manifest]]] = {
    "flow name with NUL": (InvalidNameError, lambda m: msgspec.structs.replace(m, flow_name="demo\x00x")),
    "flow name with ANSI": (InvalidNameError, lambda m: msgspec.structs.replace(m, flow_name="\x1b[2Jdemo")),
    "flow name with a C1 CSI": (
        InvalidNameError,
        lambda m: msgspec.structs.replace(m, flow_name="demo\x9b2J"),
    ),
    "artifact name with a bidi override": (InvalidNameError, lambda m: _entry(m, name="report\u202efdp.exe")),
    "flow name with a slash": (InvalidNameError, lambda m: msgspec.structs.replace(m, flow_name="../demo")),
    "artifact name with a slash": (InvalidNameError, lambda m: _entry(m, name="../../etc/passwd")),
    "artifact name with a newline": (InvalidNameError, lambda m: _entry(m, name="note\nfake line")),
    "tag with ANSI": (InvalidNameError, lambda m: _entry(m, tags=("ok", "\x1b[31mred"))),
    "artifact type with a control": (InvalidNameError, lambda m: _entry(m, artifact_type="blob\r")),
    "metadata key with ANSI": (InvalidNameError, lambda m: _entry(m, metadata={"\x1b]0;title\x07": 1})),
    "status with a tab": (InvalidNameError, lambda m: msgspec.structs.replace(m, status="completed\t")),
    "object id in capitals": (InvalidIdError, lambda m: _entry(m, object_id=m.entries[0].object_id.upper())),
    "object id with spaces": (
        InvalidIdError,
        lambda m: _entry(m, object_id="ab " + m.entries[0].object_id[3:]),
    ),
    "artifact id too short": (InvalidIdError, lambda m: _entry(m, artifact_id="abcd")),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_pulled_names_and_ids_are_checked_like_user_input(
    stores: Stores, url: str, s3_endpoint: str, s3: Any, bucket: str, case: str
) -> None:
    kind, mutate = HOSTILE[case]
    a = stores("a")
    good = make_execution(a, {"fine": 1}, flow="good")
    bad = make_execution(a, {"note": "short"})
    add_remote(a, url, s3_endpoint)
    _remote(a).push()
    hostile = mf.encode_manifest(mutate(a.get_execution(bad)))
    s3.put_object(Bucket=bucket, Key=f"team/{manifest_path(bad)}", Body=hostile)
    b = _puller(stores, url, s3_endpoint)
    error = pull_failure(_remote(b), kind)
    assert error.exec_id == bad
    assert [s.exec_id for s in b.list_executions()] == [good]
    assert b.fsck().ok
