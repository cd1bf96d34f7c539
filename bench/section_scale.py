"""scale: gc, fsck and log on a generated store of N executions and M objects (default 100,000 / 1,000,000).

The store is generated with ``Repository.writer()`` directly: 10,000 executions per writer (one
write transaction), each execution with M/N small entries of distinct values (about 40 bytes, so
below the size where zstd is tried) and one checkpoint record whose output is the last entry.
Executions start one second apart, in five flows.

Each operation then runs in a fresh subprocess (``run.py --worker scale ...``) that reports its
time (the operation's own call, measured in process), its peak RSS (``VmHWM``: this counts
the LMDB pages the process mapped in by reading, which are page cache) and its peak anonymous
memory (RssAnon, sampled every 20 ms: the process's own heap). In order:

1. ``log``: ``Repository.list_executions(limit=20)`` in process (3 fresh processes, median of the
   first call) and ``kitaru-store --store DIR log -n 20`` (median wall time of 5), and the time to
   the first 20 lines of ``kitaru-store log`` without ``-n``;
2. ``fsck --sample 0.01`` and a full ``fsck``;
3. ``gc --dry-run`` (grace 0) on the full store: nothing to remove, the cost of mark and scan;
4. delete 10% of the executions (every tenth, ``Repository.delete_execution``);
5. ``gc --dry-run`` and then ``gc`` (grace 0), which removes their objects; then a sampled fsck.

Targets: gc <= 60 s, first page of log <= 100 ms; memory bounded (peak RSS reported).
"""

from __future__ import annotations

import cProfile
import datetime as dt
import json
import os
import subprocess
import sys
import time
from typing import Any

from common import (
    BENCH_DIR,
    Context,
    MemorySampler,
    MiB,
    Result,
    SectionReport,
    Table,
    close_store,
    fmt,
    log,
    median,
    wall_times,
)

GC_TARGET_S = 60.0
LOG_TARGET_MS = 100.0
GEN_BATCH = 10_000  # executions per writer (one write transaction)
FLOWS = [f"flow_{k}" for k in range(5)]
BASE_TIME = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


# --- generation ---------------------------------------------------------------------------------


def generate(path: str, executions: int, objects: int, progress: bool = True) -> dict[str, Any]:
    from kitaru_store import CheckpointRecord, Entry, Repository

    repo = Repository.open(path)
    per, extra = divmod(objects, executions)
    one_second = dt.timedelta(seconds=1)
    t0 = time.perf_counter()
    made = 0
    for start in range(0, executions, GEN_BATCH):
        stop = min(executions, start + GEN_BATCH)
        aids = os.urandom(16 * (per + 1) * (stop - start)).hex()
        a = 0
        with repo.writer() as w:
            for i in range(start, stop):
                started = BASE_TIME + dt.timedelta(seconds=i)
                eid = w.create_execution(FLOWS[i % len(FLOWS)], started_at=started, status="completed")
                k = per + (1 if i < extra else 0)
                oid = ""
                for j in range(k):
                    data = b"bexecution %08d value %04d of a generated store" % (i, j)
                    oid = w.put_bytes(data)
                    last = j == k - 1
                    w.add_entry(
                        eid,
                        Entry(
                            artifact_id=aids[a : a + 32],
                            name="step" if last else f"value_{j}",
                            kind="checkpoint_output" if last else "manual",
                            artifact_type="output",
                            object_id=oid,
                            size=len(data),
                            serializer="bytes",
                            created_at=started,
                            checkpoint="step",
                            invocation_id="step",
                        ),
                    )
                    a += 32
                    made += 1
                w.set_checkpoint(
                    eid,
                    CheckpointRecord(
                        invocation_id="step",
                        name="step",
                        status="completed",
                        started_at=started,
                        ended_at=started + one_second,
                        output_object_id=oid or None,
                        seq=1,
                    ),
                )
                w.update_execution(eid, ended_at=started + one_second)
        if progress and (stop * 10 // executions != start * 10 // executions or stop == executions):
            rate = made / (time.perf_counter() - t0)
            print(
                f"    generated {stop:,} executions, {made:,} objects ({rate:,.0f} objects/s)",
                file=sys.stderr,
            )
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "executions": executions, "objects": made, "objects_per_s": made / seconds}


# --- the worker (one operation per process) ---------------------------------------------------


def _anon_now_kib() -> int:
    return MemorySampler.status_kib("RssAnon")


def worker(argv: list[str]) -> None:
    """``--worker scale OP PATH [JSON]``: run one operation, print ``RESULT <json>``."""
    op, path = argv[0], argv[1]
    opts = json.loads(argv[2]) if len(argv) > 2 else {}
    from kitaru_store import Repository

    out: dict[str, Any] = {"op": op}
    if op == "generate":
        baseline = _anon_now_kib()
        with MemorySampler() as mem:
            out.update(generate(path, opts["executions"], opts["objects"]))
    else:
        t0 = time.perf_counter()
        repo = Repository.open(path, create=False)
        out["open_s"] = time.perf_counter() - t0
        baseline = _anon_now_kib()
        with MemorySampler() as mem:
            t0 = time.perf_counter()
            if op == "log":
                out["first_page"] = len(repo.list_executions(limit=20))
                out["seconds"] = time.perf_counter() - t0
                t1 = time.perf_counter()
                repo.list_executions(limit=20)
                out["second_call_s"] = time.perf_counter() - t1
            elif op == "fsck":
                rep = repo.fsck(sample=opts.get("sample"))
                out["seconds"] = time.perf_counter() - t0
                out.update(
                    objects_total=rep.objects_total,
                    objects_checked=rep.objects_checked,
                    manifests_checked=rep.manifests_checked,
                    entries_checked=rep.entries_checked,
                    problems=len(rep.problems),
                    first_problems=[p.detail for p in rep.problems[:3]],
                )
            elif op == "gc":
                rep = repo.gc(grace=0, dry_run=bool(opts.get("dry_run")))
                out["seconds"] = time.perf_counter() - t0
                out.update(rep.to_dict())
            elif op == "delete":
                ids = [s.exec_id for s in repo.iter_executions()]
                doomed = ids[:: round(1 / opts["fraction"])]
                t1 = time.perf_counter()
                for exec_id in doomed:
                    repo.delete_execution(exec_id)
                out["seconds"] = time.perf_counter() - t0
                out["delete_s"] = time.perf_counter() - t1
                out["deleted"] = len(doomed)
            else:
                raise SystemExit(f"unknown scale operation {op}")
    out["baseline_anon_mib"] = baseline / 1024
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would report the parent's peak.
    out["peak_rss_mib"] = MemorySampler.status_kib("VmHWM") / 1024
    out["peak_anon_mib"] = mem.peak_anon_kib / 1024
    out["file_bytes"] = os.path.getsize(os.path.join(path, "db", "data.mdb"))
    print("RESULT " + json.dumps(out), flush=True)


def _run_worker(ctx: Context, op: str, path: str, **opts: Any) -> dict[str, Any]:
    argv = [sys.executable, str(BENCH_DIR / "run.py"), "--worker", "scale", op, path, json.dumps(opts)]
    res = subprocess.run(argv, stdout=subprocess.PIPE, text=True, env=ctx.env)
    if res.returncode != 0:
        raise RuntimeError(f"scale worker {op} failed (exit {res.returncode})")
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("RESULT "))
    return dict(json.loads(line[len("RESULT ") :]))


def _first_lines_s(argv: list[str], lines: int, env: dict[str, str]) -> float:
    """Seconds until ``argv`` has printed ``lines`` lines (then it is stopped)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    for seen, _ in enumerate(proc.stdout, 1):
        if seen >= lines:
            break
    elapsed = time.perf_counter() - t0
    proc.kill()
    proc.wait()
    return elapsed


# --- the section -----------------------------------------------------------------------------------


def run(ctx: Context, report: SectionReport) -> None:
    n, m = ctx.scale_executions, ctx.scale_objects
    path = ctx.tmp.new("scale")
    ops: dict[str, dict[str, Any]] = {}

    def step(key: str, what: str, op: str, **opts: Any) -> dict[str, Any]:
        log(f"  scale: {what}")
        res = _run_worker(ctx, op, path, **opts)
        ops[key] = res | {"what": what}
        return res

    try:
        gen = step(
            "generate", f"generate {n:,} executions / {m:,} objects", "generate", executions=n, objects=m
        )
        log("  scale: log (in process and CLI)")
        log_runs = [_run_worker(ctx, "log", path) for _ in range(3)]
        ops["log"] = log_runs[0] | {"seconds_all": [r["seconds"] for r in log_runs]}
        log_ms = median([r["seconds"] for r in log_runs]) * 1e3
        cli_log = wall_times([*ctx.cli, "--store", path, "log", "-n", "20"], 5, ctx.env_cached)
        cli_log_ms = median(cli_log) * 1e3
        cli_nolimit_ms = _first_lines_s([*ctx.cli, "--store", path, "log"], 21, ctx.env_cached) * 1e3
        fsck_s = step("fsck_sample", "fsck --sample 0.01", "fsck", sample=0.01)
        fsck = step("fsck", "fsck (full)", "fsck")
        gc0 = step("gc_dry_full", "gc --dry-run (grace 0), nothing to collect", "gc", dry_run=True)
        dele = step("delete", "delete 10% of the executions", "delete", fraction=0.1)
        gc_dry = step("gc_dry", "gc --dry-run (grace 0) after the deletions", "gc", dry_run=True)
        gc = step("gc", "gc (grace 0) after the deletions", "gc", dry_run=False)
        after = step("fsck_after_gc", "fsck --sample 0.01 after gc", "fsck", sample=0.01)
    finally:
        ctx.tmp.drop(path)

    report.data.update(
        executions=n,
        objects=m,
        operations=ops,
        log_in_process_ms=log_ms,
        cli_log_ms=cli_log_ms,
        cli_log_wall_s=cli_log,
        cli_log_no_limit_first_page_ms=cli_nolimit_ms,
    )
    t = Table(
        f"scale: {n:,} executions, {m:,} objects "
        f"(data.mdb {gen['file_bytes'] / MiB:,.0f} MiB after generation)",
        ["operation", "time", "result", "peak RSS", "peak anon", "anon - baseline", "data.mdb"],
    )

    def row(label: str, r: dict[str, Any], time_text: str, result: str) -> None:
        t.rows.append(
            [
                label,
                time_text,
                result,
                fmt(r["peak_rss_mib"], "MiB"),
                fmt(r["peak_anon_mib"], "MiB"),
                fmt(r["peak_anon_mib"] - r["baseline_anon_mib"], "MiB"),
                fmt(r["file_bytes"] / MiB, "MiB"),
            ]
        )

    row(
        f"generate (Repository.writer(), {GEN_BATCH:,} executions per commit)",
        gen,
        fmt(gen["seconds"], "s"),
        f"{gen['objects']:,} objects, {gen['objects_per_s']:,.0f}/s",
    )
    row(
        "list_executions(limit=20), first call",
        ops["log"],
        fmt(log_ms, "ms"),
        f"{ops['log']['first_page']} rows",
    )
    t.rows.append(["kitaru-store log -n 20 (wall)", fmt(cli_log_ms, "ms"), "", "", "", "", ""])
    t.rows.append(
        ["kitaru-store log, time to first 20 rows (wall)", fmt(cli_nolimit_ms, "ms"), "", "", "", "", ""]
    )
    row(
        "fsck --sample 0.01",
        fsck_s,
        fmt(fsck_s["seconds"], "s"),
        f"{fsck_s['objects_checked']:,} objects re-hashed, {fsck_s['problems']} problems",
    )
    row(
        "fsck (full)",
        fsck,
        fmt(fsck["seconds"], "s"),
        f"{fsck['objects_checked']:,} objects, {fsck['manifests_checked']:,} manifests, "
        f"{fsck['problems']} problems",
    )
    row(
        "gc --dry-run, nothing to collect",
        gc0,
        fmt(gc0["seconds"], "s"),
        f"{gc0['objects_live']:,} live, {gc0['objects_removed']:,} would go",
    )
    row(
        f"delete {dele['deleted']:,} executions (one commit each)",
        dele,
        fmt(dele["delete_s"], "s"),
        f"{dele['delete_s'] / dele['deleted'] * 1e3:.2f} ms each",
    )
    row(
        "gc --dry-run after the deletions",
        gc_dry,
        fmt(gc_dry["seconds"], "s"),
        f"{gc_dry['objects_removed']:,} would go",
    )
    row(
        "gc after the deletions",
        gc,
        fmt(gc["seconds"], "s"),
        f"{gc['objects_removed']:,} removed ({gc['bytes_removed'] / MiB:,.1f} MiB)",
    )
    row(
        "fsck --sample 0.01 after gc",
        after,
        fmt(after["seconds"], "s"),
        f"{after['problems']} problems",
    )
    t.notes = [
        "time: the operation's call in its own process (store open excluded). peak RSS: VmHWM, which",
        "includes LMDB pages mapped in by reading (page cache). peak anon: the process's own memory",
        "(RssAnon, sampled every 20 ms); anon - baseline: its growth over the process after imports and",
        "store open.",
        "Every operation is measured once; list_executions in three fresh processes, the CLI five times.",
    ]
    report.tables.append(t)

    per_obj = m or 1
    report.results += [
        Result(
            "scale",
            "gc after deleting 10% (grace 0)",
            gc["seconds"],
            "s",
            target="<= 60 s",
            ok=gc["seconds"] <= GC_TARGET_S,
        ),
        Result(
            "scale",
            "gc --dry-run, full store",
            gc0["seconds"],
            "s",
            target="<= 60 s",
            ok=gc0["seconds"] <= GC_TARGET_S,
        ),
        Result(
            "scale",
            "log first page, list_executions(limit=20)",
            log_ms,
            "ms",
            target="<= 100 ms",
            ok=log_ms <= LOG_TARGET_MS,
        ),
        Result(
            "scale",
            "kitaru-store log -n 20 (wall, CLI)",
            cli_log_ms,
            "ms",
            target="<= 100 ms",
            ok=cli_log_ms <= LOG_TARGET_MS,
        ),
        Result("scale", "kitaru-store log (no -n), first 20 rows (wall)", cli_nolimit_ms, "ms"),
        Result("scale", "fsck full", fsck["seconds"], "s"),
        Result("scale", "fsck --sample 0.01", fsck_s["seconds"], "s"),
        Result("scale", f"generate {n:,} executions / {m:,} objects", gen["seconds"], "s"),
        Result(
            "scale",
            "gc memory growth (peak anon - baseline)",
            _growth(gc),
            "MiB",
            target=f"bounded? {_growth(gc) * MiB / per_obj:.0f} B/object",
        ),
        Result(
            "scale",
            "fsck memory growth (peak anon - baseline)",
            _growth(fsck),
            "MiB",
            target=f"bounded? {_growth(fsck) * MiB / per_obj:.0f} B/object",
        ),
        Result("scale", "gc peak RSS (incl. mapped LMDB pages)", gc["peak_rss_mib"], "MiB"),
        Result("scale", "fsck peak RSS (incl. mapped LMDB pages)", fsck["peak_rss_mib"], "MiB"),
        Result("scale", "LMDB file after generation", gen["file_bytes"] / MiB, "MiB"),
    ]
    report.results.append(
        Result(
            "scale",
            "fsck after gc: problems",
            float(after["problems"]),
            "",
            target="0",
            ok=after["problems"] == 0,
        )
    )


def _growth(r: dict[str, Any]) -> float:
    return float(r["peak_anon_mib"] - r["baseline_anon_mib"])


# --- profiling ---------------------------------------------------------------------------------------

PROFILE_OPS = ("generate", "log", "cli_log", "cli_log_all", "fsck", "fsck_sample", "gc_dry", "gc")


def profile(ctx: Context, case: str, prof: cProfile.Profile) -> Any:
    """scale:CASE on a store sized by --scale-*; with --scale-store DIR, generated once and kept.

    CASE: generate, log (20 x list_executions(limit=20)), cli_log (a `kitaru-store log -n 20`
    process), cli_log_all (`kitaru-store log`, every row), fsck, fsck_sample, gc_dry, gc (deletes
    10% of the executions first: on a kept store, of what is left).
    """
    import pstats

    from kitaru_store import Repository

    case = case or "gc"
    if case not in PROFILE_OPS:
        raise SystemExit(f"--profile scale:CASE: CASE is one of {', '.join(PROFILE_OPS)}")
    n, m = ctx.scale_executions, ctx.scale_objects
    kept = ctx.scale_store
    path = kept or ctx.tmp.new("scale")
    try:
        if case == "generate":
            if kept and os.path.exists(os.path.join(kept, "config")):
                raise SystemExit(f"--profile scale:generate: {kept} holds a store already")
            os.makedirs(path, exist_ok=True)
            prof.runcall(generate, path, n, m)
            return f"scale generate: {n:,} executions, {m:,} objects"
        if not os.path.exists(os.path.join(path, "config")):
            log(f"  generating {n:,} executions / {m:,} objects in {path}")
            os.makedirs(path, exist_ok=True)
            _run_worker(ctx, "generate", path, executions=n, objects=m)
        repo = Repository.open(path, create=False)
        size = f"{repo.count_executions():,} executions in {path}"
        if case in ("cli_log", "cli_log_all"):
            out = os.path.join(ctx.tmp.root, "cli-log.prof")
            argv = [
                sys.executable,
                "-m",
                "cProfile",
                "-o",
                out,
                "-m",
                "kitaru_store.cli",
                "--store",
                path,
                "log",
            ]
            argv += ["-n", "20"] if case == "cli_log" else []
            for _ in range(2):  # the first run writes the bytecode caches
                subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=ctx.env_cached)
            return f"scale {case}: one `kitaru-store {' '.join(argv[7:])}` process, {size}", pstats.Stats(out)
        if case == "gc":
            _run_worker(ctx, "delete", path, fraction=0.1)
        if case == "log":
            prof.runcall(lambda: [repo.list_executions(limit=20) for _ in range(20)])
        elif case == "fsck":
            prof.runcall(repo.fsck)
        elif case == "fsck_sample":
            prof.runcall(lambda: repo.fsck(sample=0.01))
        else:
            prof.runcall(lambda: repo.gc(grace=0, dry_run=case == "gc_dry"))
    finally:
        if not kept:
            ctx.tmp.drop(path)
        else:
            close_store(path)
    what = {
        "gc": "gc (grace 0) after deleting 10% of the executions",
        "log": "20 x list_executions(limit=20)",
    }
    return f"scale {what.get(case, case)}: {size}"
