"""The execution summary's stored layout (summary.py): what it holds, how it is refused, and the
MessagePack summaries written before it."""

from __future__ import annotations

import datetime as dt
import struct

import pytest
from blake3 import blake3
from hypothesis import given, settings
from hypothesis import strategies as st
from store_helpers import T0

from kitaru_store import Repository, checksum, summary
from kitaru_store import manifests as mf
from kitaru_store.errors import CorruptSummaryError, InvalidIdError, StoreFormatError, UsageError
from kitaru_store.manifests import STATUSES, ExecutionSummary

EXEC = "0123456789abcdef0123456789abcdef"


def _fields(s: object) -> list[tuple[str, object]]:
    return [(name, getattr(s, name)) for name in ExecutionSummary.__struct_fields__]


def _tz(t: dt.datetime | None) -> object:
    return None if t is None else t.tzinfo


offsets = st.builds(dt.timezone, st.integers(-23 * 60, 23 * 60).map(lambda m: dt.timedelta(minutes=m)))
datetimes = st.datetimes(timezones=offsets | st.none())  # years 1 to 9999, naive or with an offset
texts = st.text(st.characters(exclude_categories=("Cs",)))  # UTF-8 encodes every one
summaries = st.builds(
    ExecutionSummary,
    exec_id=st.binary(min_size=16, max_size=16).map(bytes.hex),
    flow_name=texts,
    status=st.sampled_from(STATUSES) | texts,
    started_at=datetimes,
    ended_at=st.none() | datetimes,
    artifact_count=st.integers(0, 2**32 - 1),
    checkpoint_count=st.integers(0, 2**32 - 1),
    replay_of=st.none() | texts,
)


@settings(max_examples=300, deadline=None)
@given(summaries)
def test_a_summary_reads_back_as_written(s: ExecutionSummary) -> None:
    """Every field, at every time Python has (an offset reads back as UTC, as msgspec reads it;
    a naive time stays naive), through both makers: ExecutionSummary and the fast path's."""
    stored = mf.encode_summary(s)
    assert stored[0] == summary.LAYOUT and not summary.is_msgpack(stored)
    for got in (mf.decode_summary(stored), summary.decode(stored, summary.PlainSummary)):
        assert _fields(got) == _fields(s)
        assert _tz(got.started_at) == (None if s.started_at.tzinfo is None else dt.UTC)
        assert _tz(got.ended_at) == (None if s.ended_at is None or s.ended_at.tzinfo is None else dt.UTC)
    assert type(mf.decode_summary(stored)) is ExecutionSummary


def test_the_layout_byte_by_byte() -> None:
    """docs/design.md 7.3's table, checked against the bytes."""
    s = ExecutionSummary(
        exec_id=EXEC,
        flow_name="ingest",
        status="failed",
        started_at=dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.UTC),
        ended_at=dt.datetime(1969, 12, 31, 23, 59, 59, 999999),  # naive, before 1970
        artifact_count=3,
        checkpoint_count=70000,
        replay_of=EXEC,
    )
    stored = mf.encode_summary(s)
    head = struct.pack(">BB16sqqII", 1, 1 | 2 | 8, bytes.fromhex(EXEC), 1_000_000, -1, 3, 70000)
    body = head + b"\x00\x06failed" + b"\x00\x06ingest" + b"\x00\x20" + EXEC.encode()
    assert stored == body + blake3(body).digest()
    plain = ExecutionSummary(exec_id=EXEC, flow_name="f", status="running", started_at=T0)
    assert len(mf.encode_summary(plain)) == summary.MIN_SIZE + len("running") + 1


def test_smaller_than_the_messagepack_it_replaces() -> None:
    s = ExecutionSummary(
        exec_id=EXEC,
        flow_name="ingest",
        status="completed",
        started_at=T0,
        ended_at=T0 + dt.timedelta(seconds=3),
        artifact_count=3,
        checkpoint_count=1,
    )
    assert len(mf.encode_summary(s)) == summary.MIN_SIZE + len("completed") + len("ingest") == 93
    assert len(checksum.seal(mf.encode(s))) == 186  # what encode_summary wrote before


def _sealed(body: bytes) -> bytes:
    return body + blake3(body).digest()


def test_damage_is_a_corrupt_summary_error() -> None:
    s = ExecutionSummary(exec_id=EXEC, flow_name="f", status="running", started_at=T0, replay_of="r")
    stored = mf.encode_summary(s)
    body = stored[: -summary.DIGEST]
    cases = {
        "too short": stored[: summary.MIN_SIZE - 1],
        "checksum": stored[:-1] + bytes([stored[-1] ^ 1]),
        "a byte": stored[:20] + bytes([stored[20] ^ 1]) + stored[21:],
        "cut": _sealed(body[:-3]),  # replay_of runs past the end
        "no flow name": _sealed(body[: struct.calcsize(">BB16sqqII") + 2 + len("running")]),
        "not UTF-8": _sealed(body.replace(b"\x00\x01f", b"\x00\x01\xff")),
        "time": _sealed(body[:18] + struct.pack(">q", 2**63 - 1) + body[26:]),
        "empty": b"",
    }
    for what, data in cases.items():
        with pytest.raises(CorruptSummaryError):
            mf.decode_summary(data)
        with pytest.raises(CorruptSummaryError):
            summary.decode(data, summary.PlainSummary)
        assert what


def test_a_newer_layout_or_flag_is_a_format_error_and_appended_fields_are_skipped() -> None:
    s = ExecutionSummary(exec_id=EXEC, flow_name="f", status="running", started_at=T0)
    body = mf.encode_summary(s)[: -summary.DIGEST]
    for newer in (b"\x02" + body[1:], body[:1] + b"\x10" + body[2:]):
        with pytest.raises(StoreFormatError, match="newer than this kitaru reads"):
            mf.decode_summary(_sealed(newer))
    # A newer writer's extra field, after the known ones and under the digest: read past.
    assert mf.decode_summary(_sealed(body + b"\x00\x05extra")) == s


def test_what_the_layout_cannot_hold_is_refused_when_written() -> None:
    ok = ExecutionSummary(exec_id=EXEC, flow_name="f", status="running", started_at=T0)
    for bad_id in ("x" * 32, EXEC.upper(), EXEC[:-2], ""):
        with pytest.raises(InvalidIdError):
            mf.encode_summary(ExecutionSummary(exec_id=bad_id, flow_name="f", status="s", started_at=T0))
    with pytest.raises(UsageError, match="artifact_count"):
        mf.encode_summary(ExecutionSummary(**{**_kw(ok), "artifact_count": 2**32}))
    with pytest.raises(UsageError, match="status"):
        mf.encode_summary(ExecutionSummary(**{**_kw(ok), "status": "é" * 40_000}))


def _kw(s: ExecutionSummary) -> dict[str, object]:
    return dict(_fields(s))


def test_a_status_too_long_for_the_summary_leaves_the_store_unchanged(repo: Repository) -> None:
    exec_id = repo.create_execution("flow", started_at=T0)
    with pytest.raises(UsageError):
        repo.update_execution(exec_id, status="x" * 70_000)
    assert repo.get_execution(exec_id).status == "running"
    assert [s.status for s in repo.iter_executions()] == ["running"]


# --- summaries written before this layout ----------------------------------------------------


def test_messagepack_summaries_are_read_and_rewritten_at_the_next_write(repo: Repository) -> None:
    """A store written before this layout: checksummed MessagePack summaries, and older ones
    without a checksum. Both list as they were; the execution's next write rewrites its summary
    in the layout."""
    with repo.writer() as w:
        sealed_id = w.create_execution("a", started_at=T0, status="completed")
        bare_id = w.create_execution("b", started_at=T0 + dt.timedelta(seconds=1), replay_of=sealed_id)
    with repo.kv.read() as rt:
        stored = dict(rt.items(b"exec_time"))
    old = {k: mf.encode(mf.decode_summary(v)) for k, v in stored.items()}
    sealed_key, bare_key = sorted(old)

    def write_old(wt: object) -> None:
        wt.put(b"exec_time", sealed_key, checksum.seal(old[sealed_key]))  # type: ignore[attr-defined]
        wt.put(b"exec_time", bare_key, old[bare_key])  # type: ignore[attr-defined]

    repo._backend().update(write_old)
    expected = [mf.decode_summary(stored[bare_key]), mf.decode_summary(stored[sealed_key])]
    assert list(repo.iter_executions()) == expected
    for key in (sealed_key, bare_key):
        with repo.kv.read() as rt:
            raw = rt.get(b"exec_time", key)
        assert raw is not None and summary.is_msgpack(raw)
        assert _fields(summary.decode(raw, summary.PlainSummary)) == _fields(mf.decode_summary(raw))
    repo.update_execution(bare_id, status="completed")
    with repo.kv.read() as rt:
        rewritten, untouched = rt.get(b"exec_time", bare_key), rt.get(b"exec_time", sealed_key)
    assert rewritten is not None and rewritten[0] == summary.LAYOUT
    assert untouched == checksum.seal(old[sealed_key])
    assert [s.status for s in repo.iter_executions()] == ["completed", "completed"]
    assert repo.fsck().problems == []


def test_damaged_messagepack_summaries_are_corrupt_summary_errors() -> None:
    s = ExecutionSummary(exec_id=EXEC, flow_name="f", status="running", started_at=T0)
    sealed = checksum.seal(mf.encode(s))
    damaged = sealed[:5] + bytes([sealed[5] ^ 1]) + sealed[6:]
    unknown = bytes([mf.encode(s)[0] + 1]) + mf.encode(s)[1:] + b"\xa5extra\x01"  # unchecked: no new field
    for data in (damaged, unknown, sealed[:10], b"\x80"):
        for decode in (mf.decode_summary, lambda d: summary.decode(d, summary.PlainSummary)):
            with pytest.raises(CorruptSummaryError):
                decode(data)
