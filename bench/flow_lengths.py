"""ms per checkpoint in flows of several lengths, one-off (the overhead section runs 200 and 3,000).

    cd /tmp && python /work/wt-a/bench/flow_lengths.py 200,1000,3000,10000 --reps 4

Each flow (``flows.bench_checkpoints``: trivial checkpoints) runs in a fresh store under /tmp;
the lengths are interleaved within each repetition, so that the disk's other users weigh on
every length alike. Prints the best and the median per checkpoint, and each length's best over
the first length's. Set PYTHONPATH to measure another tree.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import flows
from common import best, median, store_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("lengths", help="comma-separated flow lengths, the first one the baseline")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]
    times: dict[int, list[float]] = {n: [] for n in lengths}
    for _ in range(args.reps):
        for n in lengths:
            root = tempfile.mkdtemp(prefix="kitaru-lengths-")
            with store_env(f"{root}/store"):
                flows.run(flows.bench_checkpoints, 2)  # the store's first open, lazy imports
                start = time.perf_counter()
                flows.run(flows.bench_checkpoints, n)
                times[n].append(time.perf_counter() - start)
            shutil.rmtree(root)
    base = best(times[lengths[0]]) / lengths[0]
    for n in lengths:
        per = best(times[n]) / n
        print(
            f"{n:>7} checkpoints: {per * 1e3:.3f} ms best, {median(times[n]) / n * 1e3:.3f} ms median,"
            f" {per / base:.2f} x the flow of {lengths[0]}"
        )


if __name__ == "__main__":
    main()
