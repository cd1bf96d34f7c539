"""A human approval with kitaru.wait(), as in the guide: the question is built from summary.load().

    python examples/human_approval/approve_summary.py

The first run stops at the wait: the execution is persisted as `waiting` and `run()` returns.
Someone (here: this script, through KitaruClient) answers; `resume` continues the same
execution, reusing `research`, and the wait returns the answer.
"""

from __future__ import annotations

import kitaru
from kitaru import KitaruClient, checkpoint, flow


@checkpoint
def research(topic: str) -> str:
    return f"{topic} makes long-running agents survive crashes and restarts."


@checkpoint
def write_report(summary: str) -> str:
    return f"REPORT: {summary}"


@flow
def research_agent(topic: str) -> str:
    summary = research(topic)
    summary_text = summary.load()

    approved = kitaru.wait(
        name="approve_summary",
        question=f"Approve this summary?\n\n{summary_text}",
        schema=bool,
    )
    if not approved:
        return "Report rejected by reviewer."
    return write_report(summary)


def main(answer: bool = True) -> dict[str, object]:
    client = KitaruClient()
    handle = research_agent.run("Durable execution")
    status_after_run = handle.status
    pending = client.executions.pending_waits(handle.exec_id)
    client.executions.input(handle.exec_id, wait="approve_summary", value=answer)
    resumed = client.executions.resume(handle.exec_id)
    return {
        "status_after_run": status_after_run,
        "question": pending[0].question,
        "result": resumed.wait(),
        "status": client.executions.get(handle.exec_id).status,
    }


if __name__ == "__main__":
    client = KitaruClient()
    handle = research_agent.run("Durable execution")
    print(f"execution {handle.exec_id} is {handle.status}")
    for wait in client.executions.pending_waits(handle.exec_id):
        print(f"waiting on {wait.name} ({wait.schema}):\n{wait.question}\n")
    client.executions.input(handle.exec_id, wait="approve_summary", value=True)
    resumed = client.executions.resume(handle.exec_id)
    print(f"after approval: {resumed.status}: {resumed.wait()}")
