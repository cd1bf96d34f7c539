"""Save and load artifacts: the example from the "Save and Load Artifacts" guide.

Run it with `python examples/basic_flow/flow_with_artifacts.py` (or `uv run ...`). It writes to
the default store: $KITARU_STORE, else the nearest .kitaru/ directory, else your user data dir.
"""

from __future__ import annotations

import kitaru
from kitaru import KitaruClient, checkpoint, flow


@checkpoint
def research(topic: str) -> str:
    notes = f"Research notes about {topic}."
    kitaru.save("research_context", {"topic": topic, "notes": notes}, type="context")
    return notes


@checkpoint
def follow_up(prev_exec_id: str) -> str:
    # Load checkpoint output by checkpoint name.
    previous_notes = kitaru.load(prev_exec_id, "research")
    # Load explicit named artifact.
    context = kitaru.load(prev_exec_id, "research_context")
    return f"{previous_notes} [topic={context['topic']}]"


@flow
def research_flow(topic: str) -> str:
    return research(topic)


@flow
def follow_up_flow(prev_exec_id: str) -> str:
    return follow_up(prev_exec_id)


def main(topic: str = "durable execution") -> tuple[str, str, str, str]:
    first = research_flow.run(topic)
    first_result = first.wait()
    second = follow_up_flow.run(first.exec_id)
    second_result = second.wait()
    return first.exec_id, first_result, second.exec_id, second_result


if __name__ == "__main__":
    first_id, first_result, second_id, second_result = main()
    print(f"research execution:  {first_id}")
    print(f"  result:            {first_result}")
    print(f"follow-up execution: {second_id}")
    print(f"  result:            {second_result}")
    context = KitaruClient().executions.get(first_id).artifact("research_context")
    print(
        f"  saved artifact:    {context.name} (type={context.type}, kind={context.kind}) = {context.load()}"
    )
