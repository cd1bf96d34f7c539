"""The flow the kill-and-retry harness interrupts (kill_retry.py), and what it must end with.

An importable module, not a script: an execution records the module and name of its flow, and
the retry runs in a new process that finds the flow from that record alone.

The flow ``killable`` runs sequential checkpoints with saves (small values, 1 MiB+ values in one
record, 3-5 MiB values that are chunked), then a fan-out (``.map`` or ``.submit``), then a
checkpoint that combines every output, and returns a value that contains the combined one. Every
value is a pure function of the plan, and the plan of its seed, so that any process can compute
the object ids an uninterrupted run stores (:func:`expected`).

Every checkpoint body first appends a line to the side log named by ``$KITARU_SIDE_LOG``
(execution, invocation id, pid), fsynced: the harness counts from it which process ran which
checkpoint, to prove that no checkpoint that had committed runs again after a kill.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

from workloads import make_value, object_id_of

import kitaru
from kitaru import context

SIDE_LOG_ENV = "KITARU_SIDE_LOG"


def log_run() -> None:
    """Append "this process runs this checkpoint invocation" to the side log, fsynced."""
    path = os.environ.get(SIDE_LOG_ENV)
    run = context.maybe_current_checkpoint()
    if not path or run is None:
        return
    line = {"exec": kitaru.current_execution_id(), "inv": run.invocation_id, "pid": os.getpid()}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (json.dumps(line, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _work(spec: dict[str, Any]) -> dict[str, Any]:
    log_run()
    for name, kind, seed in spec["saves"]:
        kitaru.save(name, make_value(kind, seed))
    time.sleep(spec["pause"])  # a window for the kill inside the body, before the commit
    return make_value("small", spec["out"])


@kitaru.checkpoint
def stage(spec: dict[str, Any]) -> dict[str, Any]:
    return _work(spec)


@kitaru.checkpoint
def part(spec: dict[str, Any]) -> dict[str, Any]:
    return _work(spec)


def combined(values: list[dict[str, Any]]) -> dict[str, Any]:
    return {"seeds": [v["seed"] for v in values], "chars": sum(len(v["text"]) for v in values)}


@kitaru.checkpoint
def combine(staged: list[dict[str, Any]], fanned: list[dict[str, Any]]) -> dict[str, Any]:
    log_run()
    return combined([*staged, *fanned])


@kitaru.flow
def killable(plan: dict[str, Any]) -> dict[str, Any]:
    staged = [stage.with_id(f"stage-{i}")(spec) for i, spec in enumerate(plan["stages"])]
    if plan["fan_out"] == "map":
        fanned = list(part.map(plan["fan"]))
    else:
        fanned = [part.submit(spec, id=f"fan-{j}") for j, spec in enumerate(plan["fan"])]
    out = combine(staged, fanned)
    return {"tag": plan["tag"], "combined": out}  # a handle inside a plain value: stored at the end


def _spec(rng: random.Random, tag: str, where: str, *, big: float, pause: float) -> dict[str, Any]:
    saves = [(f"{tag}-{where}-s{j}", "small", rng.getrandbits(40)) for j in range(rng.randrange(1, 3))]
    roll = rng.random()
    if roll < big / 2:
        saves.append((f"{tag}-{where}-mib", "mib", rng.getrandbits(40)))
    elif roll < big:
        saves.append((f"{tag}-{where}-big", "chunked", rng.getrandbits(40)))
    return {"saves": saves, "out": rng.getrandbits(40), "pause": rng.uniform(0.0, pause)}


def make_plan(seed: int) -> dict[str, Any]:
    """3-4 stages (half of them save a 1 MiB+ or chunked value), a fan-out of 3-5, a combine."""
    rng = random.Random(seed)
    tag = f"k{seed}"
    stages = [_spec(rng, tag, f"stage{i}", big=0.5, pause=0.04) for i in range(rng.randrange(3, 5))]
    # Items of unequal length: a kill often finds later items committed and an earlier one running.
    fan = [_spec(rng, tag, f"fan{j}", big=0.15, pause=0.25) for j in range(rng.randrange(3, 6))]
    return {"tag": tag, "stages": stages, "fan": fan, "fan_out": rng.choice(("map", "submit"))}


def fan_ids(plan: dict[str, Any]) -> list[str]:
    """The invocation ids of the fan-out: ``.map`` numbers them part, part_2, ...; submit names them."""
    if plan["fan_out"] == "map":
        return ["part" if j == 0 else f"part_{j + 1}" for j in range(len(plan["fan"]))]
    return [f"fan-{j}" for j in range(len(plan["fan"]))]


def expected(seed: int) -> dict[str, Any]:
    """What an uninterrupted run of the plan of ``seed`` stores: the object id of every save, of
    every checkpoint output by invocation id, and of the result (computed without the store)."""
    plan = make_plan(seed)
    specs = {f"stage-{i}": spec for i, spec in enumerate(plan["stages"])}
    specs.update(zip(fan_ids(plan), plan["fan"], strict=True))
    values = {
        name: object_id_of(make_value(kind, s)) for spec in specs.values() for name, kind, s in spec["saves"]
    }
    outs = {inv: make_value("small", spec["out"]) for inv, spec in specs.items()}
    together = combined(list(outs.values()))
    outputs = {inv: object_id_of(value) for inv, value in outs.items()}
    outputs["combine"] = object_id_of(together)
    return {
        "status": "completed",
        "values": values,
        "outputs": outputs,
        "result": object_id_of({"tag": plan["tag"], "combined": together}),
    }
