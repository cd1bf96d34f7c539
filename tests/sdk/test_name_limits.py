"""Names at their limits: characters for every name, UTF-8 bytes for those that are part of an
LMDB key (names.MAX_NAME_BYTES). At the limit a multi-byte name is accepted and round-trips; one
byte over it is an InvalidNameError that says the limit, and the store is unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import kitaru
from kitaru import InvalidNameError, KitaruClient, checkpoint, flow
from kitaru import memory as kmemory
from kitaru_store import Repository
from kitaru_store.cli import cli
from kitaru_store.names import LMDB_MAX_KEY, MAX_NAME, MAX_NAME_BYTES, MEMORY_KEY_BYTES

EMOJI = "\U0001f600"  # 4 bytes of UTF-8


def of_bytes(n: int) -> str:
    """A name of exactly ``n`` bytes of UTF-8, mostly 4-byte characters."""
    return EMOJI * (n // 4) + "a" * (n % 4)


def snapshot(store: Path) -> dict[bytes, list[tuple[bytes, bytes]]]:
    repo = Repository.open(store)
    with repo.kv.read() as rt:
        dbs = (b"manifests", b"exec_time", b"exec_flow", b"refs", b"memory")
        return {db: list(rt.items(db)) for db in dbs}


def test_the_byte_limits_are_what_the_keys_leave(store_path: Path) -> None:
    assert Repository.open(store_path)._backend().env.max_key_size() == LMDB_MAX_KEY == 511
    assert MAX_NAME_BYTES == {"flow name": 486, "pin name": 507, "memory namespace": 499}
    assert MEMORY_KEY_BYTES == 500


def test_flow_name_at_its_byte_limit_runs_and_one_byte_over_is_refused(store_path: Path) -> None:
    name = of_bytes(MAX_NAME_BYTES["flow name"])

    @flow(name=name)
    def long_named() -> int:
        kmemory.set("k", 1, scope="flow")
        return 7

    handle = long_named.run()
    assert handle.wait() == 7
    listed = KitaruClient().executions.list(flow=name)
    assert [e.exec_id for e in listed] == [handle.exec_id] and listed[0].flow_name == name
    assert kmemory.get("k", flow=name) == 1
    before = snapshot(store_path)
    with pytest.raises(InvalidNameError, match=r"487 bytes of UTF-8, at most 486") as info:
        flow(name=of_bytes(487))(lambda: 1)
    assert "486 bytes" in (info.value.hint or "")
    with pytest.raises(InvalidNameError, match="at most 486"):
        Repository.open(store_path).create_execution(of_bytes(487))
    assert KitaruClient().executions.list(flow=of_bytes(600)) == []  # a lookup finds nothing
    assert snapshot(store_path) == before


def test_artifact_and_checkpoint_names_are_limited_in_characters(store_path: Path) -> None:
    longest = EMOJI * MAX_NAME  # 1,020 bytes: neither name is part of a key
    artifact = "\u00e9" * MAX_NAME  # 510 bytes, another name

    @checkpoint(name=longest)
    def step() -> str:
        kitaru.save(artifact, {"v": 1}, tags=[longest])
        return "done"

    @flow
    def host() -> str:
        return step()

    handle = host.run()
    assert handle.wait() == "done"
    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.artifact(artifact).load() == {"v": 1}
    manifest = Repository.open(store_path).get_execution(handle.exec_id)
    assert [c.name for c in manifest.checkpoints] == [longest]
    assert [e.tags for e in manifest.entries if e.name == artifact] == [(longest,)]
    before = snapshot(store_path)
    with pytest.raises(InvalidNameError, match="longer than 255 characters"):
        checkpoint(name=longest + EMOJI)(lambda: 1)
    saved: list[BaseException] = []

    @checkpoint
    def over() -> None:
        try:
            kitaru.save(artifact + "a", 1)
        except InvalidNameError as exc:
            saved.append(exc)

    @flow
    def host_over() -> None:
        over()

    host_over.run().wait()
    assert saved and "255 characters" in str(saved[0])
    assert snapshot(store_path)[b"refs"] == before[b"refs"]


def test_memory_key_and_namespace_at_their_byte_limits(store_path: Path) -> None:
    namespace = "ns"
    key = of_bytes(MEMORY_KEY_BYTES - len(namespace))  # 498 bytes, 125 characters
    kmemory.set(key, "at the limit", namespace=namespace)
    assert kmemory.get(key, namespace=namespace) == "at the limit"
    assert [i.key for i in kmemory.list(namespace=namespace)] == [key]
    longest_ns = of_bytes(MAX_NAME_BYTES["memory namespace"])
    kmemory.set("k", 2, namespace=longest_ns)
    assert kmemory.get("k", namespace=longest_ns) == 2
    before = snapshot(store_path)
    with pytest.raises(InvalidNameError, match=r"499 bytes of UTF-8, at most 500|at most 500"):
        kmemory.set(key + "a", 1, namespace=namespace)
    with pytest.raises(InvalidNameError, match="at most 499"):
        kmemory.set("k", 1, namespace=longest_ns + "a")
    assert kmemory.list(namespace=namespace, prefix=key + "a") == []  # a lookup finds nothing
    assert snapshot(store_path) == before


def test_pin_names_at_their_byte_limit_in_the_store_and_the_cli(store_path: Path) -> None:
    repo = Repository.open(store_path)
    oid = repo.put_value("kept").object_id
    name = of_bytes(MAX_NAME_BYTES["pin name"])
    repo.pin(name, oid)
    assert repo.pins() == {name: oid}
    before = snapshot(store_path)
    with pytest.raises(InvalidNameError, match="508 bytes of UTF-8, at most 507"):
        repo.pin(name + "a", oid)
    assert repo.unpin(name + "a") is False
    runner = CliRunner()
    result = runner.invoke(cli, ["pin", name + "a", oid, "--json"])
    assert result.exit_code != 0
    error = json.loads(result.output)
    assert error["error"] == "InvalidNameError" and "at most 507" in error["message"]
    assert "fsck" not in result.output
    assert snapshot(store_path) == before
    result = runner.invoke(cli, ["log", "--flow", of_bytes(900)])
    assert result.exit_code == 0 and "no executions match" in result.output
    assert runner.invoke(cli, ["unpin", name]).exit_code == 0
    assert repo.pins() == {}


def test_lone_surrogates_are_refused_not_an_encoding_crash(store_path: Path) -> None:
    repo = Repository.open(store_path)
    oid = repo.put_value(1).object_id
    bad: Any = "a\ud800b"
    for call in (lambda: repo.pin(bad, oid), lambda: repo.create_execution(bad)):
        with pytest.raises(InvalidNameError, match="lone surrogates"):
            call()


@pytest.mark.parametrize("flow_name", [of_bytes(MAX_NAME_BYTES["flow name"] + 1), "a\x00b", "x/../y"])
def test_an_imported_manifest_has_its_flow_name_checked(store_path: Path, flow_name: str) -> None:
    """A pulled manifest names its flow: that name is part of a key too, so it is checked like
    one given to the API, before anything is written."""
    from kitaru_store import ids
    from kitaru_store import manifests as mf

    repo = Repository.open(store_path)
    before = snapshot(store_path)
    manifest = mf.Manifest(
        exec_id=ids.new_uuid(), flow_name=flow_name, status="completed", started_at=mf.utcnow()
    )
    writer = repo.writer()
    with pytest.raises(InvalidNameError) as info:
        writer.put_manifest(manifest, expect=None)
        writer.commit()
    writer.abort()
    assert info.value.exec_id == manifest.exec_id
    assert snapshot(store_path) == before
