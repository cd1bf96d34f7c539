"""overhead: fixed costs. Per-checkpoint cost, ``import kitaru``, ``kitaru-store --help`` and ``log``.

* checkpoints: a flow of 100 checkpoint calls with trivial bodies, ``flow.run()`` timed whole
  (best of N), divided by 100 (target < 1 ms). Each call commits once; the baseline is one
  synced LMDB commit of one small record, on the same disk with the store's flags. The
  marginal cost, (flow of 100 - flow of 0) / 100, is shown too.
* flow length: ms per checkpoint in flows of 200 and of 3,000 trivial checkpoints, each in a
  fresh store, interleaved (best of N): the cost of a checkpoint must not grow with the flow
  (target: the 3,000-checkpoint flow's at most 1.3 times the 200-checkpoint flow's).
* import kitaru: in a fresh interpreter, the time of the ``import kitaru`` statement (median of
  N; target < 150 ms); and the wall time of ``python -c "import kitaru"`` against ``python -c pass``.
* kitaru-store --help and kitaru-store log -n 20 (a store of 20 executions): wall time of the
  command, interpreter start included (median of N; target < 150 ms).
"""

from __future__ import annotations

import cProfile
import os
import pstats
import subprocess
import sys
from typing import Any

from common import (
    Context,
    RawStore,
    Result,
    SectionReport,
    Table,
    best,
    fmt,
    fmt_ratio,
    log,
    median,
    store_env,
    timed,
    wall_times,
)

CHECKPOINT_TARGET_MS = 1.0
FLOW_LENGTHS = (200, 3000)
FLOW_LENGTH_TARGET = 1.3  # ms/checkpoint of the longer flow over that of the shorter, at most
IMPORT_TARGET_MS = 150.0
CLI_TARGET_MS = 150.0
IMPORT_PROBE = "import time; t = time.perf_counter(); import kitaru; print(time.perf_counter() - t)"


def measure_checkpoints(ctx: Context, n: int, reps: int) -> dict[str, Any]:
    """Flows of ``n`` and of 0 checkpoints, interleaved with ``n`` synced commits on a raw LMDB env.

    Interleaved because a commit's fsync costs what the disk's other users leave it: a baseline
    taken minutes apart from the flows would not be comparable.
    """
    import flows

    path = ctx.tmp.new()
    raw_path = ctx.tmp.new()
    raw = RawStore(raw_path)
    raw.commit_one(-1)
    full, empty, commits = [], [], []
    with store_env(path):
        flows.run(flows.bench_checkpoints, 2)  # warm-up: first store open, lazy imports
        for r in range(reps):
            full.append(timed(lambda: flows.run(flows.bench_checkpoints, n))[0])
            empty.append(timed(lambda: flows.run(flows.bench_checkpoints, 0))[0])
            t, _ = timed(lambda r=r: [raw.commit_one(r * n + i) for i in range(n)])
            commits.append(t / n)
    raw.close()
    ctx.tmp.drop(raw_path)
    ctx.tmp.drop(path)
    return {
        "checkpoints": n,
        "flow_s": full,
        "empty_flow_s": empty,
        "commit_s": commits,
        "per_checkpoint_ms": best(full) / n * 1e3,
        "per_checkpoint_ms_median": median(full) / n * 1e3,
        "marginal_ms": (best(full) - best(empty)) / n * 1e3,
        "empty_flow_ms": best(empty) * 1e3,
        "synced_commit_ms": best(commits) * 1e3,
        "synced_commit_ms_median": median(commits) * 1e3,
    }


def measure_flow_lengths(ctx: Context, lengths: tuple[int, ...], reps: int) -> dict[str, Any]:
    """ms per checkpoint of a flow of each length (best of ``reps``, each run in a fresh store).

    The lengths are interleaved within each repetition, so that the disk's other users weigh on
    every length alike (a commit's fsync costs what they leave it).
    """
    import flows

    times: dict[int, list[float]] = {n: [] for n in lengths}
    for _ in range(reps):
        for n in lengths:
            path = ctx.tmp.new()
            with store_env(path):
                flows.run(flows.bench_checkpoints, 2)  # the store's first open, lazy imports
                times[n].append(timed(lambda n=n: flows.run(flows.bench_checkpoints, n))[0])
            ctx.tmp.drop(path)
    return {
        "reps": reps,
        "flow_s": {str(n): t for n, t in times.items()},
        "per_checkpoint_ms": {str(n): best(t) / n * 1e3 for n, t in times.items()},
        "per_checkpoint_ms_median": {str(n): median(t) / n * 1e3 for n, t in times.items()},
    }


def measure_import(env: dict[str, str], runs: int) -> dict[str, Any]:
    probe = [sys.executable, "-c", IMPORT_PROBE]
    subprocess.run(probe, check=True, capture_output=True, env=env)  # warm-up (writes bytecode caches)
    in_process = [
        float(subprocess.run(probe, check=True, capture_output=True, text=True, env=env).stdout)
        for _ in range(runs)
    ]
    bare = wall_times([sys.executable, "-c", "pass"], runs, env)
    with_kitaru = wall_times([sys.executable, "-c", "import kitaru"], runs, env)
    return {
        "import_in_process_s": in_process,
        "python_c_pass_s": bare,
        "python_c_import_kitaru_s": with_kitaru,
        "import_ms": median(in_process) * 1e3,
        "interpreter_ms": median(bare) * 1e3,
        "python_c_import_ms": median(with_kitaru) * 1e3,
    }


def measure_cli(ctx: Context, env: dict[str, str], runs: int, store: str) -> dict[str, Any]:
    help_s = wall_times([*ctx.cli, "--help"], runs, env)
    log_s = wall_times([*ctx.cli, "--store", store, "log", "-n", "20"], runs, env)
    return {
        "help_s": help_s,
        "log_s": log_s,
        "help_ms": median(help_s) * 1e3,
        "log_ms": median(log_s) * 1e3,
    }


def run(ctx: Context, report: SectionReport) -> None:
    import flows

    reps = 3 if ctx.quick else 10
    runs = 5 if ctx.quick else 15
    log("  overhead: 100-checkpoint flow")
    cp = measure_checkpoints(ctx, 100, reps)
    log(f"  overhead: flows of {' and '.join(map(str, FLOW_LENGTHS))} checkpoints")
    lengths = measure_flow_lengths(ctx, FLOW_LENGTHS, 3 if ctx.quick else 5)
    log("  overhead: import kitaru, kitaru-store --help / log")
    store = ctx.tmp.new()
    with store_env(store):
        for _ in range(20):
            flows.run(flows.bench_checkpoints, 1)
    # Start-up is measured with bytecode caches (what an installed package has); when this
    # environment turns them off (PYTHONDONTWRITEBYTECODE), also as it runs here.
    variants = {"cached": ctx.env_cached}
    if ctx.env.get("PYTHONDONTWRITEBYTECODE"):
        variants["no bytecode cache"] = ctx.env
    startup = {}
    for name, env in variants.items():
        startup[name] = {"import": measure_import(env, runs), "cli": measure_cli(ctx, env, runs, store)}
    ctx.tmp.drop(store)
    report.data.update(checkpoints=cp, startup=startup, flow_lengths=lengths)

    t = Table("overhead", ["measure", "value", "baseline", "ratio", "target"])
    commit = cp["synced_commit_ms"]
    t.rows += [
        [
            "flow of 100 trivial checkpoints, per checkpoint",
            fmt(cp["per_checkpoint_ms"], "ms"),
            fmt(commit, "ms") + " (1 synced LMDB commit)",
            fmt_ratio(cp["per_checkpoint_ms"] / commit),
            "< 1 ms",
        ],
        [
            "  marginal: (flow of 100 - flow of 0) / 100",
            fmt(cp["marginal_ms"], "ms"),
            fmt(commit, "ms"),
            fmt_ratio(cp["marginal_ms"] / commit),
            "",
        ],
        ["  flow of 0 checkpoints (start + end)", fmt(cp["empty_flow_ms"], "ms"), "", "", ""],
    ]
    short, long = (str(n) for n in FLOW_LENGTHS)
    per, medians = lengths["per_checkpoint_ms"], lengths["per_checkpoint_ms_median"]
    growth = per[long] / per[short]
    t.rows += [
        [f"flow of {short} trivial checkpoints, per checkpoint", fmt(per[short], "ms"), "", "", ""],
        [
            f"flow of {long} trivial checkpoints, per checkpoint",
            fmt(per[long], "ms"),
            fmt(per[short], "ms") + f" (flow of {short})",
            fmt_ratio(growth),
            f"<= {FLOW_LENGTH_TARGET}",
        ],
    ]
    report.results.append(
        Result(
            "overhead",
            f"per checkpoint, flow of {long} over flow of {short}",
            per[long],
            "ms",
            per[short],
            "ms",
            f"flow of {short}",
            growth,
            f"<= {FLOW_LENGTH_TARGET}",
            growth <= FLOW_LENGTH_TARGET,
        )
    )
    for name, st in startup.items():
        imp, cli = st["import"], st["cli"]
        bare = imp["interpreter_ms"]
        base = fmt(bare, "ms") + " (python -c pass)"
        tag = f" [{name}]"
        target = "< 150 ms" if name == "cached" else ""
        t.rows += [
            ["import kitaru, in process" + tag, fmt(imp["import_ms"], "ms"), "", "", target],
            [
                'python -c "import kitaru", wall' + tag,
                fmt(imp["python_c_import_ms"], "ms"),
                base,
                fmt_ratio(imp["python_c_import_ms"] / bare),
                "",
            ],
            [
                "kitaru-store --help, wall" + tag,
                fmt(cli["help_ms"], "ms"),
                base,
                fmt_ratio(cli["help_ms"] / bare),
                target,
            ],
            [
                "kitaru-store log -n 20 (20 executions), wall" + tag,
                fmt(cli["log_ms"], "ms"),
                base,
                fmt_ratio(cli["log_ms"] / bare),
                target,
            ],
        ]
        checks = [
            ("import kitaru (in process)", imp["import_ms"], IMPORT_TARGET_MS),
            ("kitaru-store --help (wall)", cli["help_ms"], CLI_TARGET_MS),
            ("kitaru-store log -n 20, small store (wall)", cli["log_ms"], CLI_TARGET_MS),
        ]
        for measure, value, limit in checks:
            report.results.append(
                Result(
                    "overhead",
                    measure + ("" if name == "cached" else f" [{name}]"),
                    value,
                    "ms",
                    bare,
                    "ms",
                    "python -c pass",
                    value / bare,
                    f"< {limit:.0f} ms" if name == "cached" else "",
                    value < limit if name == "cached" else None,
                )
            )
    t.notes = [
        f"checkpoints: best of {reps} flows (median per checkpoint {cp['per_checkpoint_ms_median']:.3f} ms);"
        f" start-up: median of {runs} runs after a warm-up run.",
        f"flows of {short} and {long}: best of {lengths['reps']}, interleaved, each in a fresh store"
        f" (median per checkpoint {medians[short]:.3f} / {medians[long]:.3f} ms).",
        "[cached]: bytecode caches on (PYTHONPYCACHEPREFIX under the temporary root), as for an installed",
        "package. [no bytecode cache]: as this environment runs Python (PYTHONDONTWRITEBYTECODE=1), every",
        "kitaru module compiled at every start.",
    ]
    report.tables.append(t)
    report.results.insert(
        0,
        Result(
            "overhead",
            "per checkpoint, flow of 100 trivial checkpoints",
            cp["per_checkpoint_ms"],
            "ms",
            commit,
            "ms",
            "one synced LMDB commit",
            cp["per_checkpoint_ms"] / commit,
            "< 1 ms",
            cp["per_checkpoint_ms"] < CHECKPOINT_TARGET_MS,
        ),
    )


def importtime(ctx: Context, argv: list[str], top: int) -> str:
    """The slowest modules of ``python -X importtime`` for ``argv`` (cumulative microseconds)."""
    subprocess.run([sys.executable, *argv], capture_output=True, env=ctx.env_cached)  # bytecode caches
    res = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, env=ctx.env_cached
    )
    rows = []
    for line in res.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cum_us, name = (p.strip() for p in line[len("import time:") :].split("|"))
        rows.append((int(cum_us), int(self_us), name))
    total = sum(s for _, s, _ in rows)
    out = [f"python -X importtime {' '.join(argv)}: {total / 1e3:.1f} ms of imports (sum of self times)"]
    out.append(f"{'cumulative ms':>14} {'self ms':>8}  module")
    for cum, self_us, name in sorted(rows, reverse=True)[:top]:
        out.append(f"{cum / 1e3:14.1f} {self_us / 1e3:8.1f}  {name}")
    return "\n".join(out)


def cli_log_profile(ctx: Context) -> tuple[str, pstats.Stats]:
    """cProfile of a whole ``kitaru-store log -n 20`` process (imports included), 20 executions."""
    import flows

    path = ctx.tmp.new()
    out = os.path.join(ctx.tmp.root, "cli-log.prof")
    try:
        with store_env(path):
            for _ in range(20):
                flows.run(flows.bench_checkpoints, 1)
        argv = [sys.executable, "-m", "cProfile", "-o", out, "-m", "kitaru_store.cli", "--store", path]
        for _ in range(2):  # the first run writes the bytecode caches
            subprocess.run([*argv, "log", "-n", "20"], check=True, capture_output=True, env=ctx.env_cached)
        stats = pstats.Stats(out)
    finally:
        ctx.tmp.drop(path)
    return "overhead cli_log: one `kitaru-store log -n 20` process on a store of 20 executions", stats


def profile(ctx: Context, case: str, prof: cProfile.Profile, top: int = 25) -> Any:
    """overhead:checkpoints | overhead:cli_log (cProfile); overhead:import | overhead:cli (importtime)."""
    if case == "import":
        return importtime(ctx, ["-c", "import kitaru"], top)
    if case == "cli":
        return importtime(ctx, ["-m", "kitaru_store.cli", "--help"], top)
    if case == "cli_log":
        return cli_log_profile(ctx)
    if case not in ("", "checkpoints"):
        raise SystemExit("--profile overhead:CASE: CASE is checkpoints, cli_log, import or cli")
    import flows

    path = ctx.tmp.new()
    try:
        with store_env(path):
            flows.run(flows.bench_checkpoints, 2)
            prof.runcall(lambda: [flows.run(flows.bench_checkpoints, 100) for _ in range(5)])
    finally:
        ctx.tmp.drop(path)
    return "overhead checkpoints: 5 flows of 100 trivial checkpoints"
