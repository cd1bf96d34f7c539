"""Memory across executions: an agent that remembers what it learned in earlier runs.

    python examples/memory/memory_across_executions.py

Each run reads the facts the flow remembered before, adds one, and counts its runs. Memory is
versioned: `history` shows every value a key had and which execution wrote it.
"""

from __future__ import annotations

from kitaru import checkpoint, flow, memory


@checkpoint
def learn(topic: str, known: list[str]) -> list[str]:
    fact = f"{topic} is content-addressed" if "store" in topic else f"{topic} was studied"
    return [*known, fact] if fact not in known else known


@flow
def study(topic: str) -> list[str]:
    known = memory.get("facts", scope="flow", default=[])
    facts = learn(topic, known).load()
    memory.set("facts", facts, scope="flow")
    memory.set("runs", memory.get("runs", scope="flow", default=0) + 1, scope="flow")
    return facts


def main() -> dict[str, object]:
    first = study.run("the artifact store")
    second = study.run("replay")
    third = study.run("replay")  # nothing new: the value is unchanged, a version is added, no bytes
    history = memory.history("facts", flow="study")
    return {
        "facts": third.wait(),
        "runs": memory.get("runs", flow="study"),
        "versions": [v.version for v in history],
        "written_by": [v.written_by.exec_id for v in history]
        == [first.exec_id, second.exec_id, third.exec_id],
        "first_version": memory.get("facts", flow="study", version=1),
    }


if __name__ == "__main__":
    for key, value in main().items():
        print(f"{key}: {value}")
