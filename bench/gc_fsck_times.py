#!/usr/bin/env python
"""gc, fsck and stats times on one store, best of N calls in this process (docs/benchmarks.md,
"Round 4"). Compare two trees on the same store by running it with each on PYTHONPATH:

    PYTHONPATH=/tmp/old-tree python bench/gc_fsck_times.py /tmp/store --generate   # once
    PYTHONPATH=/tmp/old-tree python bench/gc_fsck_times.py /tmp/store
    PYTHONPATH=. python bench/gc_fsck_times.py /tmp/store

``--generate`` writes 5,000 executions of 10 small distinct values each (50,000 objects) into a
new store first, in 5 writer commits.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
import uuid
from collections.abc import Callable

import kitaru_store
from kitaru_store import Entry, Repository


def generate(repo: Repository, executions: int = 5000, values: int = 10) -> None:
    n = 0
    for _ in range(5):
        with repo.writer() as w:
            for e in range(executions // 5):
                exec_id = w.create_execution(f"flow{e % 7}")
                for i in range(values):
                    sv = w.put_value(f"value {n}")
                    n += 1
                    entry = Entry(
                        artifact_id=uuid.uuid4().hex,
                        name=f"e{i}",
                        kind="manual",
                        artifact_type="blob",
                        object_id=sv.object_id,
                        size=sv.size,
                        serializer=sv.serializer,
                        created_at=dt.datetime.now(dt.UTC),
                    )
                    w.add_entry(exec_id, entry)


def best(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--generate", action="store_true")
    args = ap.parse_args()
    repo = Repository.open(args.store)
    if args.generate:
        generate(repo)
    cases: dict[str, Callable[[], object]] = {
        "fsck_full": lambda: repo.fsck(),
        "fsck_sample_0.01": lambda: repo.fsck(sample=0.01, seed=1),
        "gc_dry": lambda: repo.gc(grace=0, dry_run=True),
        "stats": lambda: repo.stats(),
    }
    found = " ".join(f"{k}={best(fn, args.repeat) * 1000:.0f}ms" for k, fn in cases.items())
    print(os.path.dirname(kitaru_store.__file__), found)


if __name__ == "__main__":
    main()
