"""Helpers for the remote tests (a module of its own: conftest modules share one name)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import pytest

from kitaru_store import Entry, KitaruError, Repository
from kitaru_store.remote import RemotePullError, settings


def remote_keys(s3: Any, bucket: str, prefix: str = "team/") -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"][len(prefix) :] for item in page.get("Contents", ()))
    return sorted(keys)


def add_remote(repo: Repository, url: str, endpoint: str, name: str = "origin", **flags: Any) -> None:
    settings.add(repo.root, settings.make_spec(name, url, endpoint_url=endpoint, **flags))


T0 = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def make_execution(
    repo: Repository,
    values: dict[str, Any],
    *,
    flow: str = "demo",
    status: str = "completed",
    started_at: dt.datetime = T0,
    artifact_ids: list[str] | None = None,
) -> str:
    """An execution holding ``values`` as manual entries; finished unless ``status`` says not.

    ``artifact_ids``: the entries' artifact ids, in order (default: new ones).
    """
    with repo.writer() as w:
        exec_id = w.create_execution(flow, started_at=started_at)
        for i, (name, value) in enumerate(values.items()):
            stored = w.put_value(value)
            w.add_entry(
                exec_id,
                Entry(
                    artifact_id=artifact_ids[i] if artifact_ids else uuid.uuid4().hex,
                    name=name,
                    kind="manual",
                    artifact_type="blob",
                    object_id=stored.object_id,
                    size=stored.size,
                    serializer=stored.serializer,
                    created_at=started_at + dt.timedelta(seconds=i + 1),
                ),
            )
        if status != "running":
            w.update_execution(
                exec_id, status=status, ended_at=started_at + dt.timedelta(seconds=len(values) + 1)
            )
    return exec_id


def pull_failure(remote: Any, kind: type[KitaruError], match: str | None = None, **kwargs: Any) -> Any:
    """Pull, which must leave out exactly one execution with a ``kind`` error (matching ``match``):
    the typed error, as the RemotePullError raised after everything else reports it."""
    with pytest.raises(RemotePullError) as caught:
        remote.pull(**kwargs)
    (failure,) = caught.value.failures
    assert isinstance(failure.error, kind), failure.error
    assert failure.error.exec_id == failure.exec_id == caught.value.exec_id
    if match is not None:
        assert re.search(match, str(failure.error)), str(failure.error)
    return failure.error


def flip_bit(s3: Any, bucket: str, key: str, *, at: int = -1) -> None:
    """Flip one bit of a key on the remote (at byte ``at``: by default the last)."""
    body = bytearray(s3.get_object(Bucket=bucket, Key=f"team/{key}")["Body"].read())
    body[at] ^= 0x01
    s3.put_object(Bucket=bucket, Key=f"team/{key}", Body=bytes(body))


def good_and_bad(repo: Repository, s3: Any, bucket: str, push: Any) -> tuple[list[str], dict[str, str]]:
    """Five good executions and two bad ones on the remote: one object and one manifest each with
    one flipped bit. Returns (good ids, bad id -> the error its pull must report)."""
    good = [make_execution(repo, {"n": i, "text": f"run {i}"}, flow=f"flow{i}") for i in range(5)]
    bad_object = make_execution(repo, {"note": "a raw record"}, flow="bad")
    bad_manifest = make_execution(repo, {"other": "value"}, flow="bad")
    push()
    victim = repo.resolve_name(bad_object, "note").object_id
    flip_bit(s3, bucket, f"objects/{victim[:2]}/{victim}")
    flip_bit(s3, bucket, f"manifests/{bad_manifest}", at=20)  # inside the checksummed bytes
    return good, {bad_object: "CorruptObjectError", bad_manifest: "CorruptManifestError"}
