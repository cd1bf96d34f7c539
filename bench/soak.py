"""Reliability soak: the CI harness of tests/reliability/, run long.

    python bench/soak.py                 # >= 200 SIGKILLs, 4 x 1,000 concurrent saves, 500 bit flips
    python bench/soak.py --quick         # a smoke run of the same (a minute or so)
    python bench/soak.py --kills 1000 --corruptions 5000 --seed 7 --keep /tmp/soak
    python bench/soak.py --only kill-retry --flow-kills 120   # phase 4 alone

Phases:

1. crashes: flows, manifest-heavy flows, gc(grace=0) racing flows, and compaction, each run in
   child processes and SIGKILLed, half the time at a random moment and half the time in a named
   phase (hashing, staging, commit, gc mark/scan/sweep, compaction copy); after every kill the
   store is reopened, fsck'd and held to the journal of runs that had returned;
2. concurrency: 4 writer processes x 1,000 kitaru.save() calls with a gc(grace=0) loop and a
   reader alongside; then the same from a 1 MiB map that the writers must grow;
3. corruption: single-bit flips in object records (data, chunks, chunk indexes) and manifests;
4. kill-retry: a multi-checkpoint flow (saves of every size, a .map/.submit fan-out) SIGKILLed,
   or SIGTERMed, at random moments and retried from a new process each time, until it completes
   with the result of an uninterrupted run, no committed checkpoint run again (kill_retry.py).

Prints a summary table with the figures and exits 1 on any violation (listed after the table).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reliability"))
sys.path.insert(0, str(ROOT))

import harness  # noqa: E402
import kill_retry  # noqa: E402

# share of the kills per crash mode (gc rounds kill two processes: a writer and the gc)
SHARES = {"flows": 0.3, "manifest": 0.2, "gc": 0.25, "compact": 0.25}
PHASES = ("crash", "concurrency", "corruption", "kill-retry")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=200, help="SIGKILLs in all (default 200)")
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--saves", type=int, default=1000, help="kitaru.save() calls per writer")
    p.add_argument("--corruptions", type=int, default=500, help="bit flips (default 500)")
    p.add_argument(
        "--flow-kills", type=int, default=120, help="SIGKILLs of flows, each then retried (default 120)"
    )
    p.add_argument("--only", choices=PHASES, action="append", help="run only this phase (repeatable)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", type=Path, help="work here and keep the stores (default: a temp dir)")
    p.add_argument("--quick", action="store_true", help="small numbers: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.kills, args.saves, args.corruptions, args.flow_kills = 20, 100, 40, 20
    phases = set(args.only or PHASES)

    work = args.keep or Path(tempfile.mkdtemp(prefix="kitaru-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    total = harness.Figures()
    sections: list[tuple[str, harness.Figures]] = []
    try:
        for n, (mode, share) in enumerate(SHARES.items() if "crash" in phases else ()):
            kills = max(2, round(args.kills * share))
            print(f"crash/{mode}: {kills} kills ...", flush=True)
            f = harness.run_crash(mode, kills, work / "crash", seed=args.seed + n, rounds_per_store=25)
            sections.append((f"crash/{mode}", f))
            total.merge(f)
            print(f"  {f.kills} kills, {f.verifications} verifications, {f.seconds:.0f} s", flush=True)
        concurrency = (("concurrency", None), ("concurrency/tiny-map", {"KITARU_MAP_SIZE": str(1 << 20)}))
        for label, env in concurrency if "concurrency" in phases else ():
            print(f"{label}: {args.writers} x {args.saves} saves + gc loop + reader ...", flush=True)
            where = work / label.replace("/", "-")
            where.mkdir(parents=True, exist_ok=True)
            f = harness.run_concurrency(
                where / "store", where, writers=args.writers, saves=args.saves, env=env, timeout=1800
            )
            sections.append((label, f))
            total.merge(f)
            print(f"  {f.saves_written} saves, {f.gc_runs} gc runs, {f.seconds:.0f} s", flush=True)
        if "corruption" in phases:
            print(f"corruption: {args.corruptions} bit flips ...", flush=True)
            f = harness.run_corruption(work / "corruption" / "store", args.corruptions, seed=args.seed)
            sections.append(("corruption", f))
            total.merge(f)
        if "kill-retry" in phases:
            print(f"kill-retry: {args.flow_kills} SIGKILLs of flows, each then retried ...", flush=True)
            f = kill_retry.run_kill_retry(
                args.flow_kills, work / "kill-retry", seed=args.seed, keep_going=True
            )
            sections.append(("kill-retry", f))
            total.merge(f)
            print(
                f"  {f.kills} kills, {f.terms} SIGTERMs, {f.retries} retries, {f.seconds:.0f} s", flush=True
            )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    total.seconds = time.monotonic() - began
    print()
    print(summary(sections, total, args))
    if total.violations:
        print(f"\n{len(total.violations)} VIOLATIONS:")
        for v in total.violations[:50]:
            print(" -", v)
        return 1
    print("\nno violations")
    return 0


def summary(
    sections: list[tuple[str, harness.Figures]], total: harness.Figures, args: argparse.Namespace
) -> str:
    crash = [(label, f) for label, f in sections if label.startswith("crash/")]
    conc = [(label, f) for label, f in sections if label.startswith("concurrency")]
    rows: list[tuple[str, str]] = [("figure", "value"), ("---", "---")]
    if crash:
        rows.extend(crash_rows(crash))
    for label, f in conc:
        rows.append(
            (
                label,
                f"{args.writers} writers x {args.saves} saves: {f.saves_written} written, {f.saves_checked}"
                f" loads checked, {f.gc_runs} gc runs, {f.reader_reads} concurrent reads"
                + (f", {f.map_growths} map growths" if f.map_growths else "")
                + f", {f.seconds:.0f} s",
            )
        )
    corr = next((f for label, f in sections if label == "corruption"), None)
    if corr is not None:
        rows.append(("bit flips (records and manifests)", f"{corr.corruptions}"))
        rows.append(("  refused with an error naming the object", f"{corr.corruptions_detected}"))
        rows.append(("  harmless (exact bytes still returned)", f"{corr.corruptions_harmless}"))
        rows.append(("  listed by fsck", f"{corr.fsck_reported}"))
        rows.append(("  repaired by a later save", f"{corr.repairs}"))
        rows.append(
            ("  wrong data returned", f"{sum('WRONG' in v or 'DIFFERENT' in v for v in corr.violations)}")
        )
    kr = next((f for label, f in sections if label == "kill-retry"), None)
    if kr is not None:
        rows.append(("flows SIGKILLed, then retried", f"{kr.kills}"))
        rows.append(("flows SIGTERMed, then retried", f"{kr.terms}"))
        kr_phases = ", ".join(f"{k} {v}" for k, v in sorted(kr.kills_by_phase.items(), key=lambda kv: -kv[1]))
        rows.append(("  interrupted while in", kr_phases))
        rows.append(("  retries (each a new process)", f"{kr.retries}"))
        rows.append(("  executions completed after their retries", f"{kr.retry_chains}"))
        rows.append(("  committed checkpoints held to not running again", f"{kr.committed_checked}"))
        rows.append(
            (
                "  signals with nothing to retry",
                f"{kr.signals_early} before the execution existed, {kr.signals_after_commit} after its"
                f" last commit, {kr.signals_late} after the process ended",
            )
        )
        rows.append(
            (
                "  retries signalled before they took the execution over",
                f"{kr.signals_before_claim} (counted as kills: another retry followed)",
            )
        )
        rows.append(
            (
                "  store verifications (fsck, every value)",
                f"{kr.verifications}: {kr.executions_verified} executions, {kr.values_checked} values"
                f" ({kr.bytes_checked / 2**30:.1f} GiB) reloaded and hashed",
            )
        )
        rows.append(("  time", f"{kr.seconds:.0f} s"))
    if total.known_issues:
        rows.append(("known issues hit", ", ".join(f"{k} {v}" for k, v in total.known_issues.items())))
    rows.append(("violations", f"{len(total.violations)}"))
    rows.append(("wall time", f"{total.seconds:.0f} s"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"| {k.ljust(width)} | {v} |" for k, v in rows)


def crash_rows(crash: list[tuple[str, harness.Figures]]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    rows.append(("SIGKILLs survived", f"{sum(f.kills for _, f in crash)}"))
    for label, f in crash:
        rows.append((f"  {label}", f"{f.kills} kills in {f.verifications} rounds, {f.seconds:.0f} s"))
    by_phase = sum((f.kills_by_phase for _, f in crash), collections.Counter[str]())
    phases = ", ".join(f"{k} {v}" for k, v in sorted(by_phase.items(), key=lambda kv: -kv[1]))
    rows.append(("  killed while in", phases))
    rows.append(("store reopened + fsck'd after a kill", f"{sum(f.verifications for _, f in crash)}"))
    rows.append(("executions journaled as returned", f"{sum(f.executions_promised for _, f in crash)}"))
    rows.append(
        (
            "journaled executions re-verified",
            f"{sum(f.executions_verified for _, f in crash)} (every one after every later kill)",
        )
    )
    rows.append(("cut-short executions verified", f"{sum(f.incomplete_verified for _, f in crash)}"))
    rows.append(
        (
            "values loaded and hashed (crash)",
            f"{sum(f.values_checked for _, f in crash)}"
            f" ({sum(f.bytes_checked for _, f in crash) / 2**30:.1f} GiB)",
        )
    )
    return rows


if __name__ == "__main__":
    sys.exit(main())
