"""Replay after a failure: fix the cause, then retry in place or replay into a new execution.

    python examples/replay/replay_after_failure.py

The first run fails in `write_report` (the "API" is down). `retry` re-runs the same execution:
`research` is not run again, its recorded output is reused. `replay(..., from_="write_report",
overrides=...)` then makes a new execution that reuses `research` and injects another summary.
"""

from __future__ import annotations

from kitaru import KitaruClient, checkpoint, flow

SERVICE = {"up": False}
RUNS: list[str] = []


@checkpoint
def research(topic: str) -> str:
    RUNS.append("research")
    return f"{topic}: three findings."


@checkpoint(retries=1)
def write_report(summary: str) -> str:
    RUNS.append("write_report")
    if not SERVICE["up"]:
        raise ConnectionError("report service unavailable")
    return f"REPORT -- {summary}"


@flow
def report_flow(topic: str) -> str:
    summary = research(topic)
    return write_report(summary)


def main() -> dict[str, object]:
    first = report_flow.run("durable agents")
    failed = KitaruClient().executions.get(first.exec_id)
    attempts = len(failed.checkpoints[-1].attempts)

    SERVICE["up"] = True
    RUNS.clear()
    retried = report_flow.retry(first.exec_id)
    retry_runs = list(RUNS)

    RUNS.clear()
    replayed = report_flow.replay(
        first.exec_id, from_="write_report", overrides={"research": "an edited summary"}
    )
    return {
        "first_status": failed.status,
        "failure": failed.failure.message if failed.failure else None,
        "attempts": attempts,
        "retry_result": retried.wait(),
        "retry_ran": retry_runs,
        "replay_result": replayed.wait(),
        "replay_of": KitaruClient().executions.get(replayed.exec_id).replay_of == first.exec_id,
    }


if __name__ == "__main__":
    for key, value in main().items():
        print(f"{key}: {value}")
