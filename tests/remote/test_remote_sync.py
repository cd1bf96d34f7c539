"""push, pull and clone against moto's S3 server on loopback."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import pytest
from remote_helpers import T0, add_remote, good_and_bad, make_execution, pull_failure, remote_keys

from kitaru_store import CorruptObjectError, ObjectNotFoundError, Repository, hashing, layout, objects
from kitaru_store import manifests as mf
from kitaru_store.errors import IdCollisionError
from kitaru_store.remote import (
    RemoteConflictError,
    RemoteError,
    RemoteNotFoundError,
    RemotePullError,
    hooks,
    settings,
)
from kitaru_store.remote.errors import RemoteAuthError
from kitaru_store.remote.s3 import S3Transport
from kitaru_store.remote.sync import Remote, clone, object_path

Stores = Callable[[str], Repository]
BIG = 1536 << 10  # 1.5 MiB: chunked (over 1 MiB + 64 KiB)


def _values(seed: int) -> dict[str, Any]:
    return {"small": {"seed": seed, "words": ["kitaru"] * 8}, "text": f"notes {seed} " * 50}


def _big(seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(BIG)


def _remote(repo: Repository, *, jobs: int = 4, transport: Any = None) -> Remote:
    spec = settings.get(repo.root)
    return Remote(repo, spec, jobs=jobs, transport=transport or S3Transport(spec, pool=jobs + 2))


def _puts(remote: Remote) -> list[str]:
    """Record the key of every PutObject request this remote's client sends."""
    keys: list[str] = []
    lock = threading.Lock()

    def seen(params: dict[str, Any], **_: Any) -> None:
        with lock:
            keys.append(params["Key"])

    remote.transport.client.meta.events.register("provide-client-params.s3.PutObject", seen)  # type: ignore[attr-defined]
    return keys


def _needed(repo: Repository, exec_ids: list[str]) -> set[str]:
    """Every object key (hex) the executions need on a remote: values and their chunks."""
    out: set[str] = set()
    with repo._backend().read(buffers=True) as rt:
        for exec_id in exec_ids:
            for oid in mf.referenced_ids(repo.get_execution(exec_id)):
                key = layout.object_key(oid)
                out.add(oid)
                record = rt.get_view(b"objects", key)
                assert record is not None
                out.update(k.hex() for k in objects.chunk_keys(record, key))
    return out


def _manifest_bytes(repo: Repository, exec_id: str) -> bytes:
    """The local manifest in its whole form, which a remote holds (the store keeps head and parts)."""
    return mf.encode_manifest(repo.get_execution(exec_id, observe=False))


# --- push and clone --------------------------------------------------------------------------


def test_push_lays_out_the_remote_and_clone_copies_everything(
    stores: Stores, url: str, s3_endpoint: str, s3: Any, bucket: str
) -> None:
    a = stores("a")
    e1 = make_execution(a, _values(1))
    e2 = make_execution(a, {**_values(2), "big": _big(2)})
    e3 = make_execution(a, _values(3), status="running", started_at=T0 + dt.timedelta(hours=1))
    add_remote(a, url, s3_endpoint)

    report = _remote(a).push()
    assert sorted(report.pushed) == sorted([e1, e2, e3])
    needed = _needed(a, [e1, e2, e3])
    assert report.objects_uploaded == len(needed) and report.objects_present == 0
    keys = remote_keys(s3, bucket)
    assert "config" in keys
    assert {k for k in keys if k.startswith("manifests/")} == {f"manifests/{e}" for e in (e1, e2, e3)}
    assert {k for k in keys if k.startswith("objects/")} == {f"objects/{k[:2]}/{k}" for k in needed}
    config = s3.get_object(Bucket=bucket, Key="team/config")["Body"].read()
    assert b'"kind": "kitaru-remote"' in config and b'"store_id"' in config
    # The remote manifest is the local manifest's whole form, byte for byte; records are the LMDB records.
    body = s3.get_object(Bucket=bucket, Key=f"team/manifests/{e2}")["Body"].read()
    assert body == _manifest_bytes(a, e2)
    big_id = a.resolve_name(e2, "big").object_id
    index = s3.get_object(Bucket=bucket, Key=f"team/{object_path(bytes.fromhex(big_id))}")["Body"].read()
    assert index[:3] == bytes((1, 1, 0)) or index[:3] == bytes((1, 1, 1))  # version 1, kind index

    b, pulled = clone(url, str(a.root.parent / "b"), endpoint_url=s3_endpoint)
    assert sorted(pulled.fetched) == sorted([e1, e2, e3])
    assert pulled.objects_fetched == len(needed)
    for exec_id in (e1, e2, e3):
        assert _manifest_bytes(b, exec_id) == _manifest_bytes(a, exec_id)
    assert b.get_value(big_id) == _big(2)
    assert b.get_value(b.resolve_name(e1, "small").object_id) == _values(1)["small"]
    assert [s.exec_id for s in b.list_executions()] == [s.exec_id for s in a.list_executions()]
    assert a.fsck().ok and b.fsck().ok
    assert settings.get(b.root).url == url


def test_second_push_uploads_nothing_and_shared_objects_are_skipped(
    stores: Stores, url: str, s3_endpoint: str
) -> None:
    a = stores("a")
    e1 = make_execution(a, {**_values(1), "big": _big(1)})
    add_remote(a, url, s3_endpoint)
    first = _remote(a)
    first_puts = _puts(first)
    first.push()
    assert len(first_puts) == len(_needed(a, [e1])) + 2  # objects, config, one manifest

    again = _remote(a)
    puts = _puts(again)
    report = again.push()
    assert report.up_to_date == [e1] and report.pushed == []
    assert puts == []

    # A new execution sharing the big value: only its new objects go up.
    e2 = make_execution(a, {"big": _big(1), "fresh": "only here"})
    third = _remote(a)
    puts = _puts(third)
    report = third.push()
    assert report.pushed == [e2] and report.up_to_date == [e1]
    fresh = a.resolve_name(e2, "fresh").object_id
    assert sorted(puts) == sorted([f"team/{object_path(bytes.fromhex(fresh))}", f"team/manifests/{e2}"])
    assert report.objects_present == 1  # the big value's index; its chunks were never looked at


def test_an_execution_finishing_after_its_first_push_replaces_the_remote_version(
    stores: Stores, url: str, s3_endpoint: str, s3: Any, bucket: str
) -> None:
    a = stores("a")
    exec_id = make_execution(a, _values(1), status="running")
    add_remote(a, url, s3_endpoint)
    _remote(a).push()
    b, _ = clone(url, str(a.root.parent / "b"), endpoint_url=s3_endpoint)
    assert b.get_execution(exec_id).status == "running"

    with a.writer() as w:
        result = w.put_value("the result")
        w.update_execution(
            exec_id,
            status="completed",
            ended_at=T0 + dt.timedelta(minutes=5),
            result_object_id=result.object_id,
        )
    report = _remote(a).push()
    assert report.pushed == [exec_id]
    assert s3.get_object(Bucket=bucket, Key=f"team/manifests/{exec_id}")["Body"].read() == _manifest_bytes(
        a, exec_id
    )

    pulled = _remote(b).pull()
    assert pulled.updated == [exec_id] and pulled.objects_fetched == 1
    assert b.get_execution(exec_id).status == "completed"
    assert b.get_value(result.object_id) == "the result"
    assert [s.status for s in b.list_executions()] == ["completed"]  # the time index followed
    assert b.fsck().ok
    assert _remote(b).pull().up_to_date == [exec_id]


def test_pull_fetches_only_missing_objects_and_single_executions(
    stores: Stores, url: str, s3_endpoint: str
) -> None:
    a = stores("a")
    e1 = make_execution(a, _values(1))
    add_remote(a, url, s3_endpoint)
    _remote(a).push()
    b, _ = clone(url, str(a.root.parent / "b"), endpoint_url=s3_endpoint)

    e2 = make_execution(a, {**_values(1), "extra": [1, 2, 3]})  # shares two objects with e1
    e3 = make_execution(a, _values(3))
    _remote(a).push()
    report = _remote(b).pull([e2[:8]])  # a unique prefix of an id on the remote
    assert report.fetched == [e2] and report.objects_fetched == 1 and report.objects_present == 2
    assert b.count_executions() == 2
    report = _remote(b).pull()
    assert report.fetched == [e3] and sorted(report.up_to_date) == sorted([e1, e2])
    assert b.fsck().ok
    with pytest.raises(RemoteNotFoundError):
        _remote(b).pull(["ffffffff"])


# --- verification ----------------------------------------------------------------------------


def _tamper(s3: Any, bucket: str, key: str) -> None:
    path = f"team/{object_path(bytes.fromhex(key))}"
    body = bytearray(s3.get_object(Bucket=bucket, Key=path)["Body"].read())
    assert body[2] == 0, "a raw record, so that flipping a payload byte keeps it decodable"
    body[-1] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=path, Body=bytes(body))


def test_a_tampered_remote_object_is_rejected_and_nothing_is_stored(
    stores: Stores, url: str, s3_endpoint: str, s3: Any, bucket: str
) -> None:
    a = stores("a")
    exec_id = make_execution(a, {"note": "short"})  # 6 bytes: a raw record
    add_remote(a, url, s3_endpoint)
    _remote(a).push()
    victim = a.resolve_name(exec_id, "note").object_id
    _tamper(s3, bucket, victim)

    b = stores("b")
    add_remote(b, url, s3_endpoint)
    error = pull_failure(_remote(b), CorruptObjectError)
    assert error.object_id == victim and victim in str(error)
    assert b.count_executions() == 0
    assert b.stats().objects == 0
    assert b.fsck().ok


def test_a_tampered_chunk_is_rejected_and_its_execution_not_imported(
    stores: Stores, url: str, s3_endpoint: str, s3: Any, bucket: str
) -> None:
    a = stores("a")
    exec_id = make_execution(a, {"big": _big(7)})  # random bytes: raw chunk records
    add_remote(a, url, s3_endpoint)
    _remote(a).push()
    big = a.resolve_name(exec_id, "big").object_id
    chunks = sorted(_needed(a, [exec_id]) - {big})
    _tamper(s3, bucket, chunks[0])

    b = stores("b")
    add_remote(b, url, s3_endpoint)
    error = pull_failure(_remote(b), CorruptObjectError)
    assert error.object_id == chunks[0]
    assert b.count_executions() == 0
    assert not b.has_object(chunks[0]) and not b.has_object(big)
    assert b.fsck().ok


def test_push_refuses_to_spread_a_damaged_local_object(stores: Stores, url: str, s3_endpoint: str) -> None:
    a = stores("a")
    exec_id = make_execution(a, {"note": "short"})
    key = layout.object_key(a.resolve_name(exec_id, "note").object_id)
    a._backend().update(lambda wt: wt.put(b"objects", key, b"\x01\x00\x00damaged"))
    add_remote(a, url, s3_endpoint)
    with pytest.raises(CorruptObjectError):
        _remote(a).push()


# --- interrupted push ------------------------------------------------------------------------


class _Flaky:
    """A transport whose object uploads fail after ``allowed`` of them (a dropped connection)."""

    def __init__(self, inner: S3Transport, allowed: int) -> None:
        self.inner = inner
        self.allowed = allowed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put(self, key: str, body: bytes, **kwargs: Any) -> str:
        if key.startswith("objects/"):
            if self.allowed <= 0:
                raise RemoteError("connection reset (simulated)")
            self.allowed -= 1
        return self.inner.put(key, body, **kwargs)


def test_an_interrupted_push_leaves_no_manifest_and_resumes_without_duplicate_uploads(
    stores: Stores, url: str, s3_endpoint: str, s3: Any, bucket: str
) -> None:
    a = stores("a")
    exec_id = make_execution(a, {**_values(5), "big": _big(5)})
    add_remote(a, url, s3_endpoint)
    needed = _needed(a, [exec_id])
    spec = settings.get(a.root)

    broken = _Flaky(S3Transport(spec), allowed=3)
    first = Remote(a, spec, jobs=1, transport=broken)
    first_puts = _puts(first)
    with pytest.raises(RemoteError, match="simulated"):
        first.push()
    keys = remote_keys(s3, bucket)
    assert not any(k.startswith("manifests/") for k in keys)  # a remote manifest never dangles
    orphans = {k.rsplit("/", 1)[1] for k in keys if k.startswith("objects/")}
    assert len(orphans) == 3 and orphans < needed

    second = _remote(a)
    second_puts = _puts(second)
    report = second.push()
    assert report.pushed == [exec_id]
    assert report.objects_present == 3 and report.objects_uploaded == len(needed) - 3
    uploaded_first = [k for k in first_puts if "/objects/" in k]
    uploaded_second = [k for k in second_puts if "/objects/" in k]
    assert not set(uploaded_first) & set(uploaded_second)
    assert len(uploaded_second) == len(set(uploaded_second))
    assert {k.rsplit("/", 1)[1] for k in uploaded_first + uploaded_second} == needed

    b, _ = clone(url, str(a.root.parent / "b"), endpoint_url=s3_endpoint)
    assert b.fsck().ok and b.get_value(b.resolve_name(exec_id, "big").object_id) == _big(5)


# --- racing pushers --------------------------------------------------------------------------


class _Gate:
    """A transport whose first manifest write waits until every racing pusher has reached theirs:
    all of them decided on what the remote held before any of them wrote."""

    def __init__(self, inner: S3Transport, barrier: threading.Barrier) -> None:
        self.inner = inner
        self.barrier = barrier
        self.gated = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put(self, key: str, body: bytes, **kwargs: Any) -> str:
        if key.startswith("manifests/") and not self.gated:
            self.gated = True
            self.barrier.wait(timeout=20)
        return self.inner.put(key, body, **kwargs)


def _race(*jobs: Callable[[], Any]) -> list[Any]:
    results: list[Any] = [None] * len(jobs)

    def run(i: int) -> None:
        try:
            results[i] = jobs[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_pushers_of_different_executions_both_land(stores: Stores, url: str, s3_endpoint: str) -> None:
    a, b = stores("a"), stores("b")
    ea = [make_execution(a, _values(10 + i)) for i in range(3)]
    eb = [make_execution(b, {**_values(20 + i), "shared": "same in both"}) for i in range(3)]
    add_remote(a, url, s3_endpoint)
    add_remote(b, url, s3_endpoint)
    barrier = threading.Barrier(2)
    ra = _remote(a, transport=_Gate(S3Transport(settings.get(a.root)), barrier))
    rb = _remote(b, transport=_Gate(S3Transport(settings.get(b.root)), barrier))
    results = _race(ra.push, rb.push)
    assert sorted(results[0].pushed) == sorted(ea) and sorted(results[1].pushed) == sorted(eb)
    c, report = clone(url, str(a.root.parent / "c"), endpoint_url=s3_endpoint)
    assert sorted(report.fetched) == sorted(ea + eb)
    assert c.fsck().ok


def test_pushers_of_the_same_version_agree(stores: Stores, url: str, s3_endpoint: str) -> None:
    a = stores("a")
    exec_id = make_execution(a, _values(1))
    add_remote(a, url, s3_endpoint)
    barrier = threading.Barrier(2)
    spec = settings.get(a.root)
    one = _remote(a, transport=_Gate(S3Transport(spec), barrier))
    two = _remote(a, transport=_Gate(S3Transport(spec), barrier))
    results = _race(one.push, two.push)
    outcomes = sorted((r.pushed, r.up_to_date) for r in results)
    assert outcomes == [([], [exec_id]), ([exec_id], [])]  # one created it, the other found it


def _diverge(
    a: Repository, b: Repository, exec_id: str, change_a: dict[str, Any], change_b: dict[str, Any]
) -> None:
    a.update_execution(exec_id, **change_a)
    b.update_execution(exec_id, **change_b)


def test_racing_pushers_of_one_execution_the_newer_version_wins(
    stores: Stores, url: str, s3_endpoint: str, s3: Any, bucket: str
) -> None:
    a = stores("a")
    exec_id = make_execution(a, _values(1), status="running")
    add_remote(a, url, s3_endpoint)
    _remote(a).push()
    b, _ = clone(url, str(a.root.parent / "b"), endpoint_url=s3_endpoint)
    # a finishes the run (a later event); b only changes metadata.
    _diverge(
        a, b, exec_id, {"status": "completed", "ended_at": T0 + dt.timedelta(hours=1)}, {"metadata": {"x": 1}}
    )
    for order in ((a, b), (b, a)):
        barrier = threading.Barrier(2)
        remotes = [_remote(r, transport=_Gate(S3Transport(settings.get(r.root)), barrier)) for r in order]
        results = _race(*(r.push for r in remotes))
        assert not any(isinstance(r, Exception) for r in results), results
        by_store = dict(zip((str(r.root) for r in order), results, strict=True))
        assert exec_id in by_store[str(a.root)].pushed + by_store[str(a.root)].up_to_date
        assert exec_id in by_store[str(b.root)].behind + by_store[str(b.root)].pushed
        body = s3.get_object(Bucket=bucket, Key=f"team/manifests/{exec_id}")["Body"].read()
        assert body == _manifest_bytes(a, exec_id)
    # b takes a's version on pull: it is newer.
    assert _remote(b).pull().updated == [exec_id]
    assert b.get_execution(exec_id).status == "completed" and b.fsck().ok


def test_racing_pushers_of_diverged_versions_surface_a_typed_conflict(
    stores: Stores, url: str, s3_endpoint: str, s3: Any, bucket: str
) -> None:
    a = stores("a")
    exec_id = make_execution(a, _values(1))
    add_remote(a, url, s3_endpoint)
    _remote(a).push()
    b, _ = clone(url, str(a.root.parent / "b"), endpoint_url=s3_endpoint)
    _diverge(a, b, exec_id, {"metadata": {"owner": "a"}}, {"metadata": {"owner": "b"}})
    barrier = threading.Barrier(2)
    ra = _remote(a, transport=_Gate(S3Transport(settings.get(a.root)), barrier))
    rb = _remote(b, transport=_Gate(S3Transport(settings.get(b.root)), barrier))
    results = _race(ra.push, rb.push)
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], RemoteConflictError)
    assert errors[0].exec_ids == [exec_id] and "--force" in str(errors[0])
    winner = a if results[0] is not errors[0] else b
    loser = b if winner is a else a
    body = s3.get_object(Bucket=bucket, Key=f"team/manifests/{exec_id}")["Body"].read()
    assert body == _manifest_bytes(winner, exec_id)  # one whole version, never a mix

    # The loser sees the conflict on pull too, and --force settles it either way.
    pulled = _remote(loser).pull(raise_on_conflict=False)
    assert pulled.conflicts == [exec_id]
    assert _remote(loser).push(force=True).pushed == [exec_id]
    assert s3.get_object(Bucket=bucket, Key=f"team/manifests/{exec_id}")["Body"].read() == _manifest_bytes(
        loser, exec_id
    )
    assert _remote(winner).pull(force=True).updated == [exec_id]
    assert _manifest_bytes(winner, exec_id) == _manifest_bytes(loser, exec_id)
    assert winner.fsck().ok and loser.fsck().ok


def test_local_changes_after_a_pull_are_ahead_not_conflicts(
    stores: Stores, url: str, s3_endpoint: str
) -> None:
    a = stores("a")
    exec_id = make_execution(a, _values(1), status="running")
    add_remote(a, url, s3_endpoint)
    _remote(a).push()
    b, _ = clone(url, str(a.root.parent / "b"), endpoint_url=s3_endpoint)
    b.update_execution(exec_id, metadata={"resumed": "on b"})  # no newer event: only tracking can tell
    assert _remote(b).pull().ahead == [exec_id]
    assert _remote(b).push().pushed == [exec_id]
    assert _remote(a).pull().updated == [exec_id]
    assert a.get_execution(exec_id).metadata == {"resumed": "on b"}


# --- remote problems -------------------------------------------------------------------------


def test_missing_remote_bucket_and_foreign_prefix(
    stores: Stores, s3_endpoint: str, s3: Any, bucket: str
) -> None:
    a = stores("a")
    make_execution(a, _values(1))
    add_remote(a, f"s3://{bucket}/empty", s3_endpoint, name="empty")
    with pytest.raises(RemoteNotFoundError, match="no kitaru remote"):
        Remote.open(a, "empty").pull()
    add_remote(a, "s3://no-such-bucket-kitaru/x", s3_endpoint, name="nobucket")
    with pytest.raises(RemoteNotFoundError, match="does not exist"):
        Remote.open(a, "nobucket").push()
    s3.put_object(Bucket=bucket, Key="foreign/file.txt", Body=b"not ours")
    add_remote(a, f"s3://{bucket}/foreign", s3_endpoint, name="foreign")
    with pytest.raises(RemoteError, match="holds other data"):
        Remote.open(a, "foreign").push()
    s3.put_object(Bucket=bucket, Key="other/config", Body=b'{"kind": "something-else", "format": 1}')
    add_remote(a, f"s3://{bucket}/other", s3_endpoint, name="other")
    with pytest.raises(RemoteError, match="not a kitaru remote"):
        Remote.open(a, "other").pull()
    with pytest.raises(RemoteNotFoundError):
        clone(f"s3://{bucket}/empty", str(a.root.parent / "c"), endpoint_url=s3_endpoint)
    assert not (a.root.parent / "c").exists()


def test_missing_credentials_are_an_auth_error(
    stores: Stores, url: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = stores("a")
    add_remote(a, url, s3_endpoint)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key)
    with pytest.raises(RemoteAuthError) as caught:
        _remote(a).push()
    assert "AWS_ACCESS_KEY_ID" in (caught.value.hint or "")


def test_progress_key_orders_versions() -> None:
    base = mf.Manifest(exec_id="0" * 32, flow_name="f", status="running", started_at=T0)
    done = mf.Manifest(
        exec_id="0" * 32, flow_name="f", status="completed", started_at=T0, ended_at=T0 + dt.timedelta(1)
    )
    retried = mf.Manifest(exec_id="0" * 32, flow_name="f", status="running", started_at=T0, metadata={"a": 1})
    assert mf_compare(done, base) == "local" and mf_compare(base, done) == "remote"
    assert mf_compare(retried, base) == "local"  # more metadata keys, same times
    assert mf_compare(base, base) == "same"


def mf_compare(x: mf.Manifest, y: mf.Manifest) -> str:
    from kitaru_store.remote.sync import compare

    return compare(mf.encode_manifest(x), mf.encode_manifest(y), x.exec_id)


def test_tracking_files(stores: Stores, url: str, s3_endpoint: str) -> None:
    a = stores("a")
    exec_id = make_execution(a, _values(1))
    add_remote(a, url, s3_endpoint)
    _remote(a).push()
    tracked = settings.read_tracking(a.root, "origin", exec_id)
    assert tracked is not None and tracked.digest == hashing.hexdigest(_manifest_bytes(a, exec_id))
    settings.remove(a.root, "origin")
    assert not (a.root / settings.TRACKING_DIR / "origin").exists()


def test_load_fallback_fetches_missing_objects(
    stores: Stores, url: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = stores("a")
    exec_id = make_execution(a, {"big": _big(9), "small": {"k": "v"}})
    add_remote(a, url, s3_endpoint)
    _remote(a).push()
    big = a.resolve_name(exec_id, "big").object_id
    small = a.resolve_name(exec_id, "small").object_id

    b = hooks.attach(stores("b"))
    add_remote(b, url, s3_endpoint)  # without the opt-in: no fallback
    with pytest.raises(ObjectNotFoundError):
        b.get_value(small)
    monkeypatch.setenv("KITARU_REMOTE", "origin")  # the opt-in, for this process
    assert Repository.open(b.root).hooks.missing_object == []  # the core attaches nothing itself
    with pytest.raises(ObjectNotFoundError):
        Repository.open(b.root).get_value(small)
    b2 = hooks.open_repository(b.root)
    assert b2.get_value(small) == {"k": "v"}
    assert b2.get_value(big) == _big(9)
    assert b2.has_object(big) and b2.fsck().ok  # stored locally, chunks and all
    with pytest.raises(ObjectNotFoundError):
        b2.get_bytes("ab" * 32)  # not on the remote either
    monkeypatch.setenv("KITARU_REMOTE", "off")
    c = stores("c")
    settings.add(c.root, settings.make_spec("origin", url, endpoint_url=s3_endpoint, fallback=True))
    with pytest.raises(ObjectNotFoundError):
        hooks.open_repository(c.root).get_value(small)  # KITARU_REMOTE=off wins over remotes.json
    monkeypatch.delenv("KITARU_REMOTE")
    assert hooks.open_repository(c.root).get_value(small) == {"k": "v"}  # remotes.json's fallback flag


def test_without_remotes_nothing_is_attached(stores: Stores) -> None:
    a = hooks.attach(stores("a"))
    make_execution(a, _values(1))
    attached = hooks.attachment(a)
    assert attached is not None and attached.remotes() is None
    assert not (a.root / settings.REMOTES_FILE).exists()


def test_default_remote_selection_and_names(stores: Stores) -> None:
    a = stores("a")
    with pytest.raises(RemoteNotFoundError, match="no remote"):
        settings.get(a.root)
    settings.add(a.root, settings.make_spec("backup", "s3://bucket-one/x"))
    assert settings.get(a.root).name == "backup"  # the only one
    settings.add(a.root, settings.make_spec("mirror", "s3://bucket-two"))
    with pytest.raises(RemoteError, match="several remotes"):
        settings.get(a.root)
    settings.add(a.root, settings.make_spec("origin", "s3://bucket-three/a/b/"))
    assert settings.get(a.root).url == "s3://bucket-three/a/b"
    assert settings.get(a.root).location.prefix == "a/b/"
    for bad in ("", "-x", "a b", "x/y", "n" * 65):
        with pytest.raises(RemoteError, match="not a usable remote name"):
            settings.make_spec(bad, "s3://bucket-one")
    with pytest.raises(RemoteError, match="endpoint"):
        settings.make_spec("x", "s3://bucket-one", endpoint_url="ftp://host")
    (a.root / settings.REMOTES_FILE).write_text("{not json")
    with pytest.raises(RemoteError, match="not a remotes file"):
        settings.load(a.root)


def test_a_remote_manifest_with_deeply_nested_metadata_is_refused_typed(
    stores: Stores, url: str, s3_endpoint: str, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Metadata deeper than the writer allows (nesting.MAX_DEPTH) is refused like local input."""
    from kitaru_store import nesting
    from kitaru_store.errors import NestingTooDeepError
    from kitaru_store.remote.sync import manifest_path

    a = stores("a")
    exec_id = make_execution(a, {"note": "short"})
    good = make_execution(a, {"note": "fine"})
    add_remote(a, url, s3_endpoint)
    _remote(a).push()
    tree: Any = 1
    for _ in range(900):
        tree = {"a": tree}
    deep = a.get_execution(exec_id)
    with monkeypatch.context() as m:  # a hostile remote writes what kitaru would refuse
        m.setattr(nesting, "depth_exceeds", lambda tree, limit=0: False)
        body = mf.encode_manifest(mf.msgspec.structs.replace(deep, metadata={"tree": tree}))
    s3.put_object(Bucket=bucket, Key=f"team/{manifest_path(exec_id)}", Body=body)

    b = stores("b")
    add_remote(b, url, s3_endpoint)
    error = pull_failure(_remote(b), NestingTooDeepError)
    assert error.exec_id == exec_id
    assert [s.exec_id for s in b.list_executions()] == [good]  # the bad one blocks nothing else


def test_remote_names_checked_whole_and_remotes_json_like_remote_add(stores: Stores, tmp_path: Any) -> None:
    import json

    a = stores("a")
    for bad in ("origin\n", "origin\x1b[31m", "..", "a\x00b"):
        with pytest.raises(RemoteError, match="not a usable remote name"):
            settings.make_spec(bad, "s3://bucket-one")
    # A hand-edited (or planted) remotes.json: its names become directories under remote-tracking/.
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("mine")
    escape = "../../victim"
    for remotes in (
        {escape: {"url": "s3://bucket-one"}},
        {"origin\n": {"url": "s3://bucket-one"}},
        {"origin": {"url": 5}},
        {"origin": {"url": "s3://bucket-one", "endpoint_url": "ftp://host"}},
        {"origin": {"url": "s3://bucket-one", "fallback": "yes"}},
        {"origin": "s3://bucket-one"},
    ):
        (a.root / settings.REMOTES_FILE).write_text(json.dumps({"format": 1, "remotes": remotes}))
        with pytest.raises(RemoteError) as caught:
            settings.load(a.root)
        assert settings.REMOTES_FILE in caught.value.message
        with pytest.raises(RemoteError):
            settings.remove(a.root, next(iter(remotes)))
    assert (victim / "keep").read_text() == "mine"
    with pytest.raises(RemoteError):
        settings.write_tracking(a.root, escape, "0" * 32, settings.Tracked("e", "d"))
    assert not (tmp_path / "victim" / ("0" * 32)).exists()


# --- ids a pull may not take over ------------------------------------------------------------


def _artifact_ids(repo: Repository, exec_id: str) -> list[str]:
    return [e.artifact_id for e in repo.get_execution(exec_id).entries]


def test_a_pulled_execution_cannot_take_over_a_local_artifact_id(
    stores: Stores, url: str, s3_endpoint: str
) -> None:
    a = stores("a")
    theirs = make_execution(a, {"note": "remote value"}, flow="theirs")
    add_remote(a, url, s3_endpoint)
    _remote(a).push()
    b = stores("b")
    mine = make_execution(b, {"note": "local value"}, flow="mine", artifact_ids=_artifact_ids(a, theirs))
    aid = _artifact_ids(b, mine)[0]
    before = (b.stats().objects, _manifest_bytes(b, mine))
    add_remote(b, url, s3_endpoint)
    error = pull_failure(_remote(b), IdCollisionError)
    assert error.exec_id == theirs and error.artifact_id == aid and error.owner == mine
    assert aid in str(error) and theirs in str(error)
    manifest, entry = b.get_artifact(aid)
    assert manifest.exec_id == mine and b.get_value(entry.object_id) == "local value"
    assert [s.exec_id for s in b.list_executions()] == [mine]
    assert (b.stats().objects, _manifest_bytes(b, mine)) == before
    assert b.fsck().ok


def test_an_artifact_id_taken_while_the_pull_runs_is_refused_at_commit(
    stores: Stores, url: str, s3_endpoint: str
) -> None:
    """The check is made in the committing transaction: a local write between the pull's
    decision and its commit cannot be overwritten."""
    a = stores("a")
    theirs = make_execution(a, {"note": "remote value"})
    add_remote(a, url, s3_endpoint)
    _remote(a).push()
    b = stores("b")
    add_remote(b, url, s3_endpoint)
    remote = _remote(b)
    real_get = remote.transport.get
    raced: list[str] = []

    def get(key: str, **kwargs: Any) -> Any:
        if key.startswith("objects/") and not raced:  # after the manifest was read and checked
            raced.append(make_execution(b, {"x": 1}, artifact_ids=_artifact_ids(a, theirs)))
        return real_get(key, **kwargs)

    remote.transport.get = get  # type: ignore[method-assign]
    error = pull_failure(remote, IdCollisionError)
    assert error.owner == raced[0]
    assert [s.exec_id for s in b.list_executions()] == raced
    assert b.get_artifact(_artifact_ids(a, theirs)[0])[0].exec_id == raced[0]
    assert b.fsck().ok


def test_a_manifest_naming_one_artifact_id_twice_is_refused(
    stores: Stores, url: str, s3_endpoint: str, s3: Any, bucket: str
) -> None:
    import msgspec

    a = stores("a")
    exec_id = make_execution(a, {"one": 1, "two": 2})
    m = a.get_execution(exec_id)
    twice = msgspec.structs.replace(
        m, entries=(m.entries[0], msgspec.structs.replace(m.entries[1], artifact_id=m.entries[0].artifact_id))
    )
    add_remote(a, url, s3_endpoint)
    _remote(a).push()
    s3.put_object(Bucket=bucket, Key=f"team/manifests/{exec_id}", Body=mf.encode_manifest(twice))
    b = stores("b")
    add_remote(b, url, s3_endpoint)
    pull_failure(_remote(b), IdCollisionError, match="twice")
    assert b.count_executions() == 0 and b.fsck().ok


# --- one bad execution does not block the others ---------------------------------------------


def test_clone_and_pull_take_what_is_good_and_report_what_is_not(
    stores: Stores, url: str, s3_endpoint: str, s3: Any, bucket: str, tmp_path: Any
) -> None:
    a = stores("a")
    add_remote(a, url, s3_endpoint)
    good, bad = good_and_bad(a, s3, bucket, lambda: _remote(a).push())

    with pytest.raises(RemotePullError) as caught:
        clone(url, str(tmp_path / "c"), endpoint_url=s3_endpoint)
    error = caught.value
    assert sorted(error.report.fetched) == sorted(good) and not error.report.ok
    assert {f.exec_id: type(f.error).__name__ for f in error.failures} == bad
    assert sorted(error.exec_ids) == sorted(bad)
    for f in error.failures:
        assert f.error.exec_id == f.exec_id and f.exec_id[:12] in error.message
    c = Repository.open(tmp_path / "c")
    assert sorted(s.exec_id for s in c.list_executions()) == sorted(good)
    assert c.get_value(c.resolve_name(good[3], "text").object_id) == "run 3"
    assert c.fsck().ok

    # Reported, not raised, on request; and a later pull tries the bad ones again (only them).
    b = stores("b")
    add_remote(b, url, s3_endpoint)
    report = _remote(b).pull(raise_on_failure=False)
    assert sorted(report.fetched) == sorted(good) and [f.exec_id for f in report.failed] == sorted(bad)
    data = report.to_dict()
    assert data["ok"] is False
    assert {f["exec_id"]: f["error"] for f in data["failed"]} == bad
    assert all(f["message"] and f["hint"] for f in data["failed"])
    again = _remote(b).pull(raise_on_failure=False)
    assert sorted(again.up_to_date) == sorted(good) and len(again.failed) == 2
