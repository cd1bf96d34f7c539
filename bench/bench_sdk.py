"""SDK overheads: `import kitaru`, per-checkpoint cost, 1,000 small saves in one checkpoint.

    python bench/bench_sdk.py [--quick] [--json]

Each figure is printed next to a baseline measured in the same run (a bare interpreter start, a
plain function call plus one synced LMDB commit, the raw hash+compress+put loop), and against the
target from the issue. Runs on temporary stores under /tmp; never touches ~.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _median_subprocess(code: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        )
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_import(runs: int) -> dict[str, float]:
    bare = _median_subprocess("pass", runs)
    kitaru = _median_subprocess("import kitaru", runs)
    # In-process import time (what -X importtime reports), without interpreter start-up.
    in_process = []
    for _ in range(runs):
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "import time; t=time.perf_counter(); import kitaru; print(time.perf_counter()-t)",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        in_process.append(float(out))
    return {
        "interpreter_s": bare,
        "python_c_import_kitaru_s": kitaru,
        "import_kitaru_in_process_s": statistics.median(in_process),
        "import_overhead_s": kitaru - bare,
    }


def _median_command(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_cli(runs: int) -> dict[str, float]:
    """`kitaru-store --help` and `kitaru-store log` (on the store the other benchmarks filled)."""
    exe = shutil.which("kitaru-store")
    cli = [exe] if exe else [sys.executable, "-m", "kitaru_store.cli"]
    return {
        "help_s": _median_command([*cli, "--help"], runs),
        "log_s": _median_command([*cli, "log", "-n", "20"], runs),
        "interpreter_s": _median_command([sys.executable, "-c", "pass"], runs),
    }


def bench_checkpoints(n: int, reps: int) -> dict[str, float]:
    import kitaru
    from kitaru_store import Repository

    @kitaru.checkpoint
    def trivial(i: int) -> int:
        return i

    @kitaru.flow
    def many(count: int) -> int:
        last = None
        for i in range(count):
            last = trivial(i)
        return last.load() if last is not None else -1

    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        assert many.run(n).wait() == n - 1
        best = min(best, time.perf_counter() - t0)
    # Baseline: the same number of synced LMDB commits of one small record each.
    repo = Repository.open()
    backend = repo._backend()
    t0 = time.perf_counter()
    for i in range(n):
        backend.update(lambda wt, i=i: wt.put(b"meta", b"bench-%d" % i, b"x" * 64))
    commit = time.perf_counter() - t0
    return {
        "checkpoints": n,
        "flow_s": best,
        "per_checkpoint_ms": best / n * 1000,
        "synced_commit_ms": commit / n * 1000,
        "ratio_vs_commit": best / commit,
    }


def bench_saves(n: int, size: int, reps: int) -> dict[str, float]:
    import kitaru
    from kitaru_store import Repository, hashing
    from kitaru_store.codec import encode

    payloads = [(f"record {i} " * (size // 10 + 1))[:size] for i in range(n)]

    @kitaru.checkpoint
    def save_all(tag: str) -> int:
        for i, p in enumerate(payloads):
            kitaru.save(f"{tag}-{i}", p + tag, type="context")
        return n

    @kitaru.flow
    def saving(tag: str) -> int:
        return save_all(tag)

    best = float("inf")
    for r in range(reps):
        t0 = time.perf_counter()
        assert saving.run(f"r{r}").wait() == n
        best = min(best, time.perf_counter() - t0)
    # Raw: hash + compress + put, all n values in one synced transaction.
    repo = Repository.open()
    backend = repo._backend()
    raw_best = float("inf")
    for r in range(reps):
        blobs = [(p + f"raw{r}").encode() for p in payloads]
        t0 = time.perf_counter()
        records = [(hashing.digest(b), encode(b)) for b in blobs]

        def txn(wt, records=records):
            for key, rec in records:
                wt.put(b"objects", key, rec)

        backend.update(txn)
        raw_best = min(raw_best, time.perf_counter() - t0)
    return {
        "saves": n,
        "value_bytes": size,
        "flow_s": best,
        "saves_per_s": n / best,
        "raw_s": raw_best,
        "ratio_vs_raw": best / raw_best,
    }


PY_C_LABEL = 'python -c "import kitaru" vs python -c pass'


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kitaru-bench-"))
    os.environ["KITARU_STORE"] = str(tmp / "store")
    try:
        results = {
            "import": bench_import(5 if args.quick else 15),
            "checkpoints": bench_checkpoints(100, 3 if args.quick else 10),
            "saves": bench_saves(1000, 1024, 3 if args.quick else 10),
        }
        results["cli"] = bench_cli(5 if args.quick else 15)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    imp, cp, sv = results["import"], results["checkpoints"], results["saves"]
    print(f"{'measure':44} {'value':>12} {'baseline':>12} {'ratio':>7} {'target':>10}")
    print(
        f"{'import kitaru, in process':44} {imp['import_kitaru_in_process_s'] * 1000:10.1f}ms"
        f" {'':>12} {'':>7} {'< 150 ms':>10}"
    )
    with_kitaru, bare = imp["python_c_import_kitaru_s"], imp["interpreter_s"]
    print(f"{PY_C_LABEL:44} {with_kitaru * 1000:10.1f}ms {bare * 1000:10.1f}ms {with_kitaru / bare:7.2f}")
    print(
        f"{'checkpoint overhead (100 trivial, per call)':44} {cp['per_checkpoint_ms']:10.3f}ms"
        f" {cp['synced_commit_ms']:10.3f}ms {cp['ratio_vs_commit']:7.2f} {'< 1 ms':>10}"
    )
    print(
        f"{'1,000 saves of 1 KiB in one checkpoint':44} {sv['flow_s'] * 1000:10.1f}ms"
        f" {sv['raw_s'] * 1000:10.1f}ms {sv['ratio_vs_raw']:7.2f} {'< 200 ms':>10}"
    )
    print(f"{'  = saves per second':44} {sv['saves_per_s']:12.0f}")
    cli = results["cli"]
    for label, key in (("kitaru-store --help", "help_s"), ("kitaru-store log -n 20 (small store)", "log_s")):
        print(
            f"{label:44} {cli[key] * 1000:10.1f}ms {cli['interpreter_s'] * 1000:10.1f}ms"
            f" {cli[key] / cli['interpreter_s']:7.2f} {'< 150 ms':>10}"
        )
    print("baselines: interpreter start; one synced LMDB commit per checkpoint; raw hash+zstd+put")
    print("of the same 1,000 values in one synced transaction. The saves figure includes the flow's")
    print("and the checkpoint's commits.")


if __name__ == "__main__":
    main()
