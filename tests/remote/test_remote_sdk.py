"""The SDK side: write-through on commit, and load() falling back to the remote."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from remote_helpers import add_remote, remote_keys

import kitaru
from kitaru import checkpoint, flow
from kitaru_store import Repository
from kitaru_store import manifests as mf
from kitaru_store.backend import close_backend
from kitaru_store.remote import RemoteNotFoundError, settings
from kitaru_store.remote.sync import Remote, clone


@checkpoint
def fetch(n: int) -> list[int]:
    return list(range(n))


@checkpoint
def total(xs: list[int]) -> int:
    return sum(xs)


@flow
def pipeline(n: int) -> int:
    return total(fetch(n))


_remote_view: dict[str, Any] = {}


@checkpoint
def look_at_remote(xs: list[int]) -> list[str]:
    """What the remote holds while the flow runs: the checkpoints of the one manifest there."""
    s3, bucket = _remote_view["s3"], _remote_view["bucket"]
    (key,) = [k for k in remote_keys(s3, bucket) if k.startswith("manifests/")]
    body = s3.get_object(Bucket=bucket, Key=f"team/{key}")["Body"].read()
    manifest = mf.decode_manifest(body)
    return [manifest.status, *sorted(c.invocation_id for c in manifest.checkpoints)]


@flow
def watched(n: int) -> list[str]:
    return look_at_remote(fetch(n))


@checkpoint
def reader(exec_id: str) -> int:
    return len(kitaru.load(exec_id, "fetch"))


@flow
def consumer(exec_id: str) -> int:
    return reader(exec_id)


def test_write_through_pushes_each_change_of_a_running_flow(
    store_path: Path, url: str, s3_endpoint: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    repo = Repository.open(store_path)
    add_remote(repo, url, s3_endpoint, write_through=True)
    handle = pipeline.run(5)
    assert handle.wait() == 10
    keys = remote_keys(s3, bucket)
    assert f"manifests/{handle.exec_id}" in keys
    # The remote holds the finished version: nothing is left to push.
    report = Remote.open(Repository.open(store_path)).push()
    assert report.up_to_date == [handle.exec_id] and report.pushed == []
    other, _ = clone(url, str(tmp_path / "other"), endpoint_url=s3_endpoint)
    try:
        manifest = other.get_execution(handle.exec_id)
        assert manifest.status == "completed"
        assert {c.invocation_id for c in manifest.checkpoints} == {"fetch", "total"}
        assert other.get_value(manifest.result_object_id or "") == 10
        assert other.fsck().ok
    finally:
        close_backend(str(tmp_path / "other" / "db"))


def test_write_through_happens_when_a_checkpoint_ends(
    store_path: Path, url: str, s3_endpoint: str, s3: Any, bucket: str
) -> None:
    repo = Repository.open(store_path)
    add_remote(repo, url, s3_endpoint, write_through=True)
    _remote_view.update(s3=s3, bucket=bucket)
    handle = watched.run(3)
    # While look_at_remote ran, the remote had the running execution with fetch's record.
    assert handle.wait() == ["running", "fetch"]


def test_a_failing_write_through_warns_and_the_flow_goes_on(store_path: Path, s3_endpoint: str) -> None:
    repo = Repository.open(store_path)
    add_remote(repo, "s3://no-such-bucket-kitaru/x", s3_endpoint, write_through=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        handle = pipeline.run(3)
    assert handle.wait() == 3
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    # One warning: after a failure write-through pauses, so the other commits do not wait on it.
    assert len(messages) == 1, messages
    assert "write-through push to remote 'origin' failed" in messages[0]
    assert "does not exist" in messages[0] and "kitaru-store push" in messages[0]


def test_load_in_a_checkpoint_falls_back_to_the_remote(
    store_path: Path, url: str, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Machine A runs the pipeline and pushes it.
    first = tmp_path / "machine-a"
    monkeypatch.setenv("KITARU_STORE", str(first))
    produced = pipeline.run(4)
    a = Repository.open(first)
    add_remote(a, url, s3_endpoint)
    Remote.open(a).push()
    fetched_id = a.resolve_name(produced.exec_id, "fetch").object_id
    # Machine B has the manifest but lost the object (a partial copy); the fallback fetches it.
    monkeypatch.setenv("KITARU_STORE", str(store_path))
    b = Repository.open(store_path)
    add_remote(b, url, s3_endpoint, fallback=True)
    Remote.open(b).pull()
    key = bytes.fromhex(fetched_id)
    b._backend().update(lambda wt: wt.delete(b"objects", key))
    assert not b.has_object(fetched_id)
    handle = consumer.run(produced.exec_id)
    assert handle.wait() == 4
    assert Repository.open(store_path).has_object(fetched_id)
    close_backend(str(first / "db"))


def test_remote_code_is_not_imported_by_kitaru_or_the_cli_help() -> None:
    code = (
        "import sys, kitaru, kitaru_store\n"
        "from kitaru_store.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "try:\n    main(['push', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('boto3', 'botocore', 'moto', 'kitaru_store.remote.sync')"
        " if m in sys.modules))\n"
    )
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip().splitlines()[-1] == "[]", probe.stderr


def test_sdk_remote_settings(
    store_path: Path, url: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = Repository.open(store_path)
    assert settings.sdk_remotes(repo.root) == (None, None)
    add_remote(repo, url, s3_endpoint, name="backup")
    assert settings.sdk_remotes(repo.root) == (None, None)  # configured, but not opted in
    monkeypatch.setenv("KITARU_REMOTE", "backup")
    spec = settings.get(repo.root, "backup")
    assert settings.sdk_remotes(repo.root) == (spec, spec)
    monkeypatch.setenv("KITARU_REMOTE", "nope")
    with pytest.raises(RemoteNotFoundError):
        settings.sdk_remotes(repo.root)
