"""Helpers for the remote tests (a module of its own: conftest modules share one name)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from kitaru_store import Entry, Repository
from kitaru_store.remote import settings


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
