"""kitaru.llm() as a durable boundary, on the offline provider (no network, deterministic).

    python examples/llm/offline_llm.py

Point it at a real model by setting KITARU_LLM_BASE_URL (any OpenAI-compatible server: OpenAI,
Ollama, vLLM, llama.cpp), KITARU_LLM_API_KEY if it needs one, and KITARU_LLM_MODEL, and leaving
out model="offline".
"""

from __future__ import annotations

import kitaru
from kitaru import KitaruClient, checkpoint, flow

MODEL = "offline"


@checkpoint
def outline(topic: str) -> str:
    # Inside a checkpoint llm() returns the text; its records are named "outline.llm".
    return kitaru.llm(f"Outline a short post about {topic}.", model=MODEL, max_tokens=40)


@flow
def writer(topic: str) -> str:
    plan = outline(topic)
    # In the flow body llm() is a boundary of its own and returns an output handle.
    return kitaru.llm(f"Write the post from this outline: {plan.load()}", model=MODEL, name="draft")


def main() -> dict[str, object]:
    handle = writer.run("content-addressed storage")
    execution = KitaruClient().executions.get(handle.exec_id)
    records = [a for a in execution.artifacts if a.kind == "llm_record"]
    response = next(a for a in records if a.name == "draft")
    replayed = writer.replay(handle.exec_id)  # reuses every recorded call: no model is asked again
    return {
        "draft": handle.wait(),
        "records": sorted(f"{a.name} ({a.type})" for a in records),
        "tokens": response.metadata["total_tokens"],
        "replay_same": replayed.wait() == handle.wait(),
    }


if __name__ == "__main__":
    for key, value in main().items():
        print(f"{key}: {value}")
