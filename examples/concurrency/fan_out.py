"""Checkpoints in parallel: map() over inputs and submit() single calls, on a thread pool.

    python examples/concurrency/fan_out.py

Invocation ids are handed out in call order (score, score_2, ...), so a replay matches every
call to its recorded output however the threads were scheduled.
"""

from __future__ import annotations

from kitaru import KitaruClient, checkpoint, flow


@checkpoint
def score(document: str) -> int:
    return sum(ord(c) for c in document) % 100


@checkpoint
def best(scores: list[int]) -> int:
    return max(scores)


@flow
def rank(documents: list[str]) -> int:
    scores = score.map(documents)  # one concurrent call per document, outputs in input order
    extra = score.submit("a late addition")  # a future: pass it on like an output handle
    return best([*scores, extra])


def main() -> dict[str, object]:
    docs = [f"document {i}" for i in range(8)]
    handle = rank.run(docs)
    calls = KitaruClient().executions.get(handle.exec_id).checkpoints
    replayed = rank.replay(handle.exec_id)
    return {
        "best": handle.wait(),
        "calls": [c.invocation_id for c in calls],
        "replay_reused": sorted(
            {c.status for c in KitaruClient().executions.get(replayed.exec_id).checkpoints}
        ),
    }


if __name__ == "__main__":
    for key, value in main().items():
        print(f"{key}: {value}")
