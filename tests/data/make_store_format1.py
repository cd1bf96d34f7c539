"""Make tests/data/store-format1/: a small store written by manifest format 1 (whole manifests).

It was made by the code of main at 944c3f7 (the last commit before manifest format 2), from a
throwaway export of that commit, so that the store holds what that code wrote, not what a newer
writer would:

    git -C /work/main archive 944c3f7 | tar -x -C /tmp/kitaru-main
    PYTHONPATH=/tmp/kitaru-main python tests/data/make_store_format1.py tests/data/store-format1

Only ``config`` and ``db/data.mdb`` are kept (the lock file is remade on open; data.mdb is
some 120 KB, small enough to keep uncompressed). Next to them, ``expected.json``: every
execution as that code read it back (msgspec's JSON of each Manifest), which
tests/store/test_store_migration.py compares against.
Everything is fixed (ids, times, values), so running it again gives the same manifests.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import tempfile
from pathlib import Path

import msgspec

from kitaru_store import Repository
from kitaru_store import manifests as mf

T0 = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
EXEC_IDS = ["0f" * 16, "1e" * 16, "2d" * 16]


def _at(seconds: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def _entry(
    w: object, n: int, name: str, value: object, *, kind: str = "manual", cp: str | None = None
) -> mf.Entry:
    stored = w.put_value(value)  # type: ignore[attr-defined]
    return mf.Entry(
        artifact_id=f"{n:032x}",
        name=name,
        kind=kind,
        artifact_type="output" if kind == "checkpoint_output" else "blob",
        object_id=stored.object_id,
        size=stored.size,
        serializer=stored.serializer,
        created_at=_at(n),
        checkpoint=cp,
        invocation_id=cp,
        tags=("t",) if n % 2 else (),
        metadata={"n": n, "nested": {"deep": [n]}} if n % 3 == 0 else {},
    )


def build(repo: Repository) -> None:
    a, b, c = EXEC_IDS
    # a: a completed flow with checkpoints, replaced entries, a wait and metadata.
    with repo.writer() as w:
        w.create_execution("pipeline", exec_id=a, started_at=_at(0), metadata={"origin": "test"})
        inputs = w.put_value({"args": [1], "kwargs": {}})
        w.update_execution(a, input_object_id=inputs.object_id)
    for i in range(5):
        with repo.writer() as w:
            cp = f"step_{i}"
            e = _entry(w, 100 + i, "output", {"step": i}, kind="checkpoint_output", cp=cp)
            w.add_entry(a, e)
            w.set_checkpoint(
                a,
                mf.CheckpointRecord(
                    invocation_id=cp,
                    name="step",
                    status="completed",
                    started_at=_at(10 + i),
                    ended_at=_at(11 + i),
                    output_object_id=e.object_id,
                    upstream=(f"step_{i - 1}",) if i else (),
                    attempts=(mf.Attempt(started_at=_at(10 + i), ended_at=_at(11 + i)),),
                    metadata={"i": i},
                    seq=i,
                ),
            )
    with repo.writer() as w:  # a replaced entry goes to the end; a checkpoint replaced in place
        w.replace_entry(
            a, _entry(w, 200, "output", {"step": 1, "again": True}, kind="checkpoint_output", cp="step_1")
        )
        w.set_checkpoint(
            a,
            mf.CheckpointRecord(
                invocation_id="step_1", name="step", status="overridden", started_at=_at(11), seq=1
            ),
        )
        w.add_entry(a, _entry(w, 201, "notes", "a note"))
        w.set_wait(a, mf.WaitRecord(name="approve", status="pending", created_at=_at(30), question="ok?"))
        w.set_wait(a, mf.WaitRecord(name="second", status="pending", created_at=_at(31)))
    with repo.writer() as w:
        answer = w.put_value(True)
        w.set_wait(
            a,
            mf.WaitRecord(
                name="approve",
                status="answered",
                created_at=_at(30),
                question="ok?",
                answered_at=_at(40),
                value_object_id=answer.object_id,
                answered_by={"user": "me"},
            ),
        )
        result = w.put_value("done")
        w.merge_metadata(a, {"extra": [1, 2, 3]})
        w.update_execution(a, status="completed", ended_at=_at(50), result_object_id=result.object_id)
    # b: a failed replay of a, with an owner and a cancel request recorded.
    with repo.writer() as w:
        w.create_execution("pipeline", exec_id=b, started_at=_at(60), replay_of=a)
        w.add_entry(b, _entry(w, 300, "partial", list(range(50))))
        w.mutate(
            b,
            lambda m: msgspec.structs.replace(
                m,
                owner=mf.Owner(pid=4242, host="builder", boot_id="boot", proc_start=7, claimed_at=_at(60)),
                cancel_request=mf.CancelRequest(requested_at=_at(65), by="me@builder (pid 1)", reason="stop"),
            ),
        )
    with repo.writer() as w:
        w.update_execution(
            b,
            status="failed",
            ended_at=_at(70),
            failure=mf.Failure(type="ValueError", message="boom", traceback="tb", checkpoint="step_2"),
        )
    # c: another flow, still waiting.
    with repo.writer() as w:
        w.create_execution("other", exec_id=c, started_at=_at(80), status="waiting")
        w.set_wait(
            c, mf.WaitRecord(name="input", status="pending", created_at=_at(81), schema={"type": "int"})
        )


def main(dest: str) -> None:
    out = Path(dest)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        repo = Repository.open(root)
        build(repo)
        expected = {e: msgspec.to_builtins(repo.get_execution(e, observe=False)) for e in EXEC_IDS}
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / "config", out / "config")
        shutil.copy(root / "db" / "data.mdb", out / "data.mdb")
    (out / "expected.json").write_bytes(msgspec.json.format(msgspec.json.encode(expected)) + b"\n")


if __name__ == "__main__":
    main(sys.argv[1])
