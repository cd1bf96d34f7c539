"""The kitaru flows the suite runs. Imported only once kitaru is importable (after ``--src``).

Values reach the checkpoints through ``STATE``, never as flow arguments: a flow records its
arguments in the store (for replay), and the benchmark must not store its values twice.
"""

from __future__ import annotations

import time
from typing import Any

import kitaru

STATE: dict[str, Any] = {}


@kitaru.checkpoint
def save_values(tag: str) -> int:
    """kitaru.save every value of STATE["values"] under STATE["names"]; commits when it returns."""
    names, values = STATE["names"], STATE["values"]
    save = kitaru.save
    t0 = time.perf_counter()
    for name, value in zip(names, values, strict=True):
        save(name, value)
    STATE["save_body_s"] = time.perf_counter() - t0
    return len(values)


@kitaru.flow
def bench_save(tag: str) -> Any:
    return save_values(tag)


@kitaru.checkpoint
def load_values(exec_id: str) -> int:
    """kitaru.load STATE["load_names"] from ``exec_id``; stops early past STATE["load_budget_s"]."""
    names = STATE["load_names"]
    budget = STATE.get("load_budget_s")
    load = kitaru.load
    first = None
    n = 0
    t0 = time.perf_counter()
    for name in names:
        value = load(exec_id, name)
        if n == 0:
            first = value
        n += 1
        if budget and n % 64 == 0 and time.perf_counter() - t0 > budget:
            break
    STATE["load_s"] = time.perf_counter() - t0
    STATE["loaded"] = n
    STATE["first_loaded"] = first
    return n


@kitaru.flow
def bench_load(exec_id: str) -> Any:
    return load_values(exec_id)


@kitaru.checkpoint
def trivial(i: int) -> int:
    return i


@kitaru.flow
def bench_checkpoints(n: int) -> int:
    """``n`` checkpoint calls with trivial bodies (each commits once, when it ends)."""
    for i in range(n):
        trivial(i)
    return n


@kitaru.checkpoint
def save_same(i: int) -> int:
    kitaru.save("same", STATE["value"])
    return 0


@kitaru.flow
def bench_save_same(n: int) -> int:
    """The same value saved by ``n`` checkpoints, each its own commit."""
    for i in range(n):
        save_same(i)
    return n


def run(flow: Any, *args: Any) -> Any:
    """Run a flow; raise what it raised if it did not complete."""
    handle = flow.run(*args)
    if handle._status != "completed":
        raise RuntimeError(f"benchmark flow {flow.name} ended {handle._status}") from handle._error
    return handle


def warm_up(path: str) -> None:
    """Run every code path once on a throwaway store at ``path``: kitaru imports lazily."""
    import os

    import numpy as np

    from kitaru import KitaruClient
    from kitaru_store import Repository

    old = os.environ.get("KITARU_STORE")
    os.environ["KITARU_STORE"] = path
    try:
        STATE.update(names=["a", "b"], values=["text " * 50, np.arange(10.0)], load_names=["a", "b"])
        exec_id = run(bench_save, "warm-up").exec_id
        run(bench_load, exec_id)
        run(bench_checkpoints, 2)
        STATE["value"] = "same"
        run(bench_save_same, 2)
        for ref in KitaruClient(path).executions.get(exec_id).artifacts:
            ref.load()
        repo = Repository.open(path)
        repo.list_executions(limit=20)
        repo.stats()
        repo.fsck(sample=0.5)
        repo.gc(grace=3600, dry_run=True)
    finally:
        STATE.clear()
        if old is None:
            os.environ.pop("KITARU_STORE", None)
        else:
            os.environ["KITARU_STORE"] = old
