#!/usr/bin/env python
"""The kitaru benchmark suite: the machine's limits next to kitaru_store and kitaru, as ratios.

    python bench/run.py                       # everything (~7 minutes at load 2 on 2 cores)
    python bench/run.py --quick               # a smoke run (~1-2 minutes)
    python bench/run.py --only raw,small      # some sections: raw, small, overhead, scale, dedup
    python bench/run.py --json results.json   # also write every measurement as JSON
    python bench/run.py --scale-executions 100000 --scale-objects 1000000   # size the scale test
    python bench/run.py --profile raw:floats-1MiB:save   # cProfile one case: .prof + top functions
    python bench/run.py --src /tmp/old-tree   # measure the kitaru/kitaru_store of another tree

Every section runs on fresh temporary stores under /tmp (``--tmp``), removed at the end, and
prints its tables; a summary of every measure against its target closes the run. Only ratios
measured in one run mean anything: absolute figures depend on the machine and its load, and the
load average is recorded at the start and end of every section. Throughputs are the best of
several repetitions (interference only ever adds time), with medians kept in the JSON.

Profile cases (``--profile SECTION:CASE``, several separated by commas):

* ``raw:CASE:OP``: CASE text-1KiB ... floats-64MiB; OP save, load, ref_load, put_bytes,
  get_bytes, put_value, get_value, raw_put, raw_get, raw_put_nz, raw_get_nz, blake3
* ``small:save``, ``small:load``, ``small:ref_load``
* ``overhead:checkpoints``, ``overhead:cli_log`` (a whole ``kitaru-store log`` process);
  ``overhead:import`` and ``overhead:cli`` (``python -X importtime``, slowest modules)
* ``scale:generate``, ``scale:log``, ``scale:cli_log``, ``scale:cli_log_all``, ``scale:fsck``,
  ``scale:fsck_sample``, ``scale:gc_dry``, ``scale:gc``: on a store of --scale-executions /
  --scale-objects (--quick: 10,000 / 100,000); ``--scale-store DIR`` generates it once and keeps
  it for the next profile runs (``scale:gc`` deletes 10% of what is left first)
* ``dedup:same``, ``dedup:edit``
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import (
    REPO_ROOT,
    Context,
    Corpus,
    SectionReport,
    TempRoot,
    bytecode_cached_env,
    code_state,
    load_average,
    log,
    machine_info,
    render_table,
    results_table,
)

SECTIONS = ["raw", "small", "overhead", "scale", "dedup"]


def _setup_src(src: str | None) -> Path:
    """Make ``src`` (a tree holding kitaru/ and kitaru_store/) the code measured, here and in children."""
    if not src:
        return REPO_ROOT
    root = Path(src).resolve()
    sys.path.insert(0, str(root))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])])
    return root


def _module(name: str) -> Any:
    import importlib

    return importlib.import_module(f"section_{name}")


def _cli(src: str | None) -> list[str]:
    script = Path(sys.executable).parent / "kitaru-store"
    if not src and script.exists():
        return [str(script)]
    found = None if src else shutil.which("kitaru-store")
    return [found] if found else [sys.executable, "-m", "kitaru_store.cli"]


def run_section(ctx: Context, name: str, args: argparse.Namespace) -> SectionReport:
    report = SectionReport(name)
    report.loadavg_start = load_average()
    log(f"== {name} (load average {report.loadavg_start})")
    t0 = time.perf_counter()
    mod = _module(name)
    if name == "raw" and args.sizes:
        mod.run(ctx, report, [s.strip() for s in args.sizes.split(",") if s.strip()])
    else:
        mod.run(ctx, report)
    report.seconds = time.perf_counter() - t0
    report.loadavg_end = load_average()
    return report


def print_section(report: SectionReport) -> None:
    print(
        f"\n## {report.name}  ({report.seconds:.0f} s; load average {report.loadavg_start} at start,"
        f" {report.loadavg_end} at end)\n",
        flush=True,
    )
    for t in report.tables:
        print(render_table(t) + "\n", flush=True)


def header(args: argparse.Namespace, ctx: Context, argv: Sequence[str]) -> dict[str, Any]:
    import kitaru
    import kitaru_store

    code = code_state(ctx.root)
    code["imported"] = [str(Path(m.__file__).parent) for m in (kitaru, kitaru_store) if m.__file__]
    return {
        "command": "python bench/run.py " + " ".join(argv),
        "mode": "quick" if args.quick else "full",
        "machine": machine_info(ctx.tmp.root),
        "code": code,
        "loadavg_at_start": load_average(),
        "scale": {"executions": ctx.scale_executions, "objects": ctx.scale_objects},
    }


def print_header(h: dict[str, Any]) -> None:
    m, c = h["machine"], h["code"]
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items())
    code = f"{c['root']} (source hash {c['source_hash']}"
    if "git_commit" in c:
        code += f", git {c['git_commit']} + {c['uncommitted_files']} uncommitted file(s) in kitaru*/"
    print(f"# kitaru benchmark suite ({h['mode']} run): {h['command']}")
    print(
        f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM; Python {m['python']}; {m['platform']}"
    )
    print(f"temporary stores on {m['temp_fs']}")
    print(f"libraries: {libs}")
    print(f"code: {code}); imported from {', '.join(c['imported'])}")
    print(f"load average at start: {h['loadavg_at_start']}", flush=True)


def profile(ctx: Context, specs: str, out_dir: str, top: int) -> None:
    os.makedirs(out_dir, exist_ok=True)
    for spec in filter(None, (s.strip() for s in specs.split(","))):
        section, _, case = spec.partition(":")
        if section not in SECTIONS:
            raise SystemExit(f"--profile: unknown section {section!r} (one of {', '.join(SECTIONS)})")
        prof = cProfile.Profile()
        load0 = load_average()
        t0 = time.perf_counter()
        mod = _module(section)
        extra = (top,) if section == "overhead" else ()
        what = mod.profile(ctx, case, prof, *extra)
        elapsed = time.perf_counter() - t0
        # A section returns a description, and either filled ``prof`` or returns its own Stats
        # (a profile taken in a subprocess); a description alone is a finished report.
        stats = None
        if isinstance(what, tuple):
            what, stats = what
        print(f"\n## profile {spec}: {what.splitlines()[0]}")
        print(f"(load average {load0} at start, {load_average()} at end; {elapsed:.1f} s in all)")
        if stats is None and not prof.getstats():
            print("\n".join(what.splitlines()[1:]))
            continue
        path = os.path.join(out_dir, spec.replace(":", "-").replace("/", "_") + ".prof")
        buf = io.StringIO()
        if stats is None:
            stats = pstats.Stats(prof)
        stats.dump_stats(path)
        stats.stream = buf  # type: ignore[attr-defined]
        st = stats
        st.strip_dirs().sort_stats("tottime").print_stats(top)
        st.sort_stats("cumulative").print_stats(top)
        print(f"wrote {path}  (python -m pstats {path})")
        print(buf.getvalue(), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        _setup_src(os.environ.get("KITARU_BENCH_SRC"))
        section = argv[1]
        _module(section).worker(argv[2:])
        return 0
    ap = argparse.ArgumentParser(
        prog="python bench/run.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--quick", action="store_true", help="a smoke run: fewer values, repetitions, smaller scale"
    )
    ap.add_argument("--only", metavar="NAMES", help=f"comma-separated sections: {','.join(SECTIONS)}")
    ap.add_argument("--json", metavar="FILE", help="write every measurement to FILE as JSON")
    ap.add_argument("--scale-executions", type=int, metavar="N", help="default 100,000 (quick 10,000)")
    ap.add_argument("--scale-objects", type=int, metavar="M", help="default 1,000,000 (quick 100,000)")
    ap.add_argument(
        "--scale-store",
        metavar="DIR",
        help="--profile scale:*: use (or generate once and keep) the store in DIR",
    )
    ap.add_argument("--sizes", help="raw section: a subset of 1KiB,1MiB,64MiB")
    ap.add_argument("--profile", metavar="SECTION:CASE", help="cProfile a case instead of running the suite")
    ap.add_argument("--profile-dir", default="/tmp/kitaru-bench-profiles", help="where .prof files go")
    ap.add_argument("--top", type=int, default=25, help="functions listed per profile (default 25)")
    ap.add_argument("--tmp", default="/tmp", help="where temporary stores go (default /tmp)")
    ap.add_argument("--src", metavar="DIR", help="measure the kitaru and kitaru_store found in DIR")
    ap.add_argument("--strict", action="store_true", help="exit 1 if any target fails")
    args = ap.parse_args(argv)

    sections = SECTIONS
    if args.only:
        sections = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = set(sections) - set(SECTIONS)
        if unknown:
            ap.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    root = _setup_src(args.src)
    if args.src:
        os.environ["KITARU_BENCH_SRC"] = str(root)
    tmp = TempRoot(args.tmp)
    # Anything that opens "the default store" lands in the temporary root, never in ~.
    os.environ["KITARU_STORE"] = os.path.join(tmp.root, "default-store")
    ctx = Context(
        quick=args.quick,
        tmp=tmp,
        corpus=Corpus(),
        root=root,
        env=dict(os.environ),
        env_cached=bytecode_cached_env(dict(os.environ), tmp.root),
        cli=_cli(args.src),
        scale_executions=args.scale_executions or (10_000 if args.quick else 100_000),
        scale_objects=args.scale_objects or (100_000 if args.quick else 1_000_000),
        scale_store=os.path.abspath(args.scale_store) if args.scale_store else None,
    )
    try:
        import flows

        warm = tmp.new("warm-up")
        flows.warm_up(warm)
        tmp.drop(warm)
        if args.profile:
            profile(ctx, args.profile, args.profile_dir, args.top)
            return 0
        h = header(args, ctx, argv)
        print_header(h)
        t_start = time.perf_counter()
        reports: list[SectionReport] = []
        errors: dict[str, str] = {}
        for name in sections:
            try:
                report = run_section(ctx, name, args)
            except Exception:
                errors[name] = traceback.format_exc()
                log(f"section {name} failed:\n{errors[name]}")
                print(f"\n## {name}: FAILED\n\n```\n{errors[name]}```", flush=True)
                continue
            reports.append(report)
            print_section(report)
        results = [r for rep in reports for r in rep.results if r.summary]
        elapsed = time.perf_counter() - t_start
        print(f"\n## summary ({elapsed:.0f} s; load average at end {load_average()})\n")
        print(render_table(results_table(results, "")))
        fails = sum(r.ok is False for r in results)
        passes = sum(r.ok is True for r in results)
        print(f"\n{passes} PASS, {fails} FAIL, {sum(r.ok is None for r in results)} INFO", flush=True)
        if args.json:
            doc = h | {
                "elapsed_s": elapsed,
                "loadavg_at_end": load_average(),
                "sections": {rep.name: rep.to_dict() for rep in reports},
                "errors": errors,
            }
            Path(args.json).write_text(json.dumps(doc, indent=2, default=str) + "\n")
            log(f"wrote {args.json}")
        if errors:
            return 2
        return 1 if args.strict and fails else 0
    finally:
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
