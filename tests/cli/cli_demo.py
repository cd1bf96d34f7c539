"""A small store with a few executions, for the CLI tests and for the examples in docs/cli.md."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from click.testing import Result

from kitaru_store import Repository
from kitaru_store.ids import new_uuid
from kitaru_store.manifests import Attempt, CheckpointRecord, Entry, Failure

T0 = dt.datetime(2025, 3, 14, 9, 26, 53, tzinfo=dt.UTC)
# Fixed execution ids, so that the examples in docs/cli.md can be reproduced as they are.
RESEARCH = "3f9c2a6e8b7d4c1fa0e5d2b4c6a8e1f7"
REPLAY = "b52e7d1c9a4f4e8b8c3d6a0f1e2b7c94"
INGEST = "d81a4c7f2e6b4a93b5c0e7f1a2d3c4b6"
RUNNING = "6c0e9b3a5d2f4178a9e4c1b7d8f2a053"

Run = Callable[..., Result]  # the `run` fixture of conftest.py: the CLI in-process


@dataclass
class Demo:
    research: str = ""  # completed run
    replay: str = ""  # replay of research, one output changed, one artifact added, one removed
    ingest: str = ""  # failed run
    running: str = ""  # still running
    objects: dict[str, str] = field(default_factory=dict)  # label -> object id


def _entry(
    stored: Any,
    name: str,
    *,
    kind: str = "manual",
    artifact_type: str = "blob",
    at: dt.datetime = T0,
    checkpoint: str | None = None,
    invocation_id: str | None = None,
    **extra: Any,
) -> Entry:
    return Entry(
        artifact_id=new_uuid(),
        name=name,
        kind=kind,  # type: ignore[arg-type]
        artifact_type=artifact_type,  # type: ignore[arg-type]
        object_id=stored.object_id,
        size=stored.size,
        serializer=stored.serializer,
        created_at=at,
        checkpoint=checkpoint,
        invocation_id=invocation_id,
        **extra,
    )


def _checkpoint_output(stored: Any, inv: str, name: str, at: dt.datetime, **extra: Any) -> Entry:
    return _entry(
        stored,
        inv,
        kind="checkpoint_output",
        artifact_type="output",
        at=at,
        checkpoint=name,
        invocation_id=inv,
        **extra,
    )


def build(repo: Repository) -> Demo:
    demo = Demo()
    s = dt.timedelta(seconds=1)
    with repo.writer() as w:
        question = w.put_value("What is content-addressed storage?")
        pages = w.put_value(["https://example.org/cas", "https://example.org/blake3"])
        summary = w.put_value(
            {"answer": "Storage keyed by a hash of the content.", "sources": 2, "score": 0.92}
        )
        notes = w.put_value("Looked at two pages.\nBoth agree.\n")
        raw = w.put_value(bytes(range(256)) * 2)
        llm = w.put_value({"model": "demo-1", "prompt_tokens": 812, "completion_tokens": 64})
        demo.objects.update(
            question=question.object_id,
            pages=pages.object_id,
            summary=summary.object_id,
            notes=notes.object_id,
            raw=raw.object_id,
            llm=llm.object_id,
        )
        ex = demo.research = w.create_execution(
            "research", exec_id=RESEARCH, started_at=T0, metadata={"user": "ada"}
        )
        w.add_entry(ex, _entry(question, "question", artifact_type="input", at=T0))
        w.set_checkpoint(
            ex,
            CheckpointRecord(
                invocation_id="fetch",
                name="fetch",
                status="completed",
                started_at=T0 + s,
                ended_at=T0 + 3 * s,
                output_object_id=pages.object_id,
                inputs=(question.object_id,),
                attempts=(Attempt(started_at=T0 + s, ended_at=T0 + 3 * s),),
            ),
        )
        w.add_entry(ex, _checkpoint_output(pages, "fetch", "fetch", T0 + 3 * s, inputs=(question.object_id,)))
        w.set_checkpoint(
            ex,
            CheckpointRecord(
                invocation_id="summarize",
                name="summarize",
                status="completed",
                started_at=T0 + 3 * s,
                ended_at=T0 + 7 * s,
                output_object_id=summary.object_id,
                inputs=(pages.object_id,),
                upstream=("fetch",),
                attempts=(Attempt(started_at=T0 + 3 * s, ended_at=T0 + 7 * s),),
            ),
        )
        w.add_entry(
            ex, _checkpoint_output(summary, "summarize", "summarize", T0 + 7 * s, inputs=(pages.object_id,))
        )
        w.add_entry(
            ex,
            _entry(
                notes,
                "notes",
                artifact_type="context",
                at=T0 + 6 * s,
                checkpoint="summarize",
                invocation_id="summarize",
                tags=("draft",),
                metadata={"reviewed": False},
            ),
        )
        w.add_entry(ex, _entry(raw, "raw", at=T0 + 2 * s, checkpoint="fetch", invocation_id="fetch"))
        w.add_entry(
            ex,
            _entry(
                llm,
                "summarize.llm",
                kind="llm_record",
                artifact_type="response",
                at=T0 + 5 * s,
                checkpoint="summarize",
                invocation_id="summarize",
            ),
        )
        w.update_execution(ex, status="completed", ended_at=T0 + 7 * s, result_object_id=summary.object_id)

    t1 = T0 + dt.timedelta(minutes=5)
    with repo.writer() as w:
        summary2 = w.put_value({"answer": "Storage keyed by a BLAKE3 hash of the content.", "sources": 2})
        verdict = w.put_value("accept")
        demo.objects.update(summary2=summary2.object_id, verdict=verdict.object_id)
        ex = demo.replay = w.create_execution(
            "research", exec_id=REPLAY, started_at=t1, replay_of=demo.research
        )
        w.add_entry(ex, _entry(question, "question", artifact_type="input", at=t1))
        w.add_entry(
            ex,
            _checkpoint_output(pages, "fetch", "fetch", t1, inputs=(question.object_id,)),
        )
        w.set_checkpoint(
            ex,
            CheckpointRecord(
                invocation_id="fetch",
                name="fetch",
                status="cached",
                started_at=t1,
                ended_at=t1,
                output_object_id=pages.object_id,
                inputs=(question.object_id,),
                reused_from=demo.research,
            ),
        )
        w.set_checkpoint(
            ex,
            CheckpointRecord(
                invocation_id="summarize",
                name="summarize",
                status="completed",
                started_at=t1,
                ended_at=t1 + 2 * s,
                output_object_id=summary2.object_id,
                inputs=(pages.object_id,),
                upstream=("fetch",),
                attempts=(Attempt(started_at=t1, ended_at=t1 + 2 * s),),
            ),
        )
        w.add_entry(
            ex, _checkpoint_output(summary2, "summarize", "summarize", t1 + 2 * s, inputs=(pages.object_id,))
        )
        w.add_entry(ex, _entry(notes, "notes", artifact_type="context", at=t1 + s))
        w.add_entry(ex, _entry(verdict, "verdict", artifact_type="output", at=t1 + 2 * s))
        w.update_execution(ex, status="completed", ended_at=t1 + 2 * s, result_object_id=summary2.object_id)

    t2 = T0 + dt.timedelta(hours=1)
    with repo.writer() as w:
        batch = w.put_value({"rows": [1, 2, 3]})
        demo.objects.update(batch=batch.object_id)
        boom = Failure(
            type="ConnectionError",
            message="upstream closed the connection",
            traceback='Traceback (most recent call last):\n  File "flow.py", line 12, in load\n'
            "ConnectionError: upstream closed the connection\n",
            checkpoint="load",
        )
        ex = demo.ingest = w.create_execution("ingest", exec_id=INGEST, started_at=t2)
        w.add_entry(ex, _entry(batch, "batch", artifact_type="input", at=t2))
        w.set_checkpoint(
            ex,
            CheckpointRecord(
                invocation_id="load",
                name="load",
                status="failed",
                started_at=t2,
                ended_at=t2 + 4 * s,
                inputs=(batch.object_id,),
                attempts=(
                    Attempt(started_at=t2, ended_at=t2 + s, failure=boom),
                    Attempt(started_at=t2 + 2 * s, ended_at=t2 + 4 * s, failure=boom),
                ),
                failure=boom,
            ),
        )
        w.update_execution(ex, status="failed", ended_at=t2 + 4 * s, failure=boom)

    t3 = T0 + dt.timedelta(hours=2)
    with repo.writer() as w:
        demo.running = w.create_execution("research", exec_id=RUNNING, started_at=t3)
        w.add_entry(demo.running, _entry(question, "question", artifact_type="input", at=t3))
    return demo
