"""dedup: what repeated and nearly repeated values cost, in store bytes (``repo.stats().stored_bytes``).

* the same 1 MiB value (text, and random floats) saved by 100 checkpoints of one flow, each
  checkpoint its own commit: stored bytes against a store where one checkpoint saved it once
  (target: about 1x, <= 1.05);
* a 100 MiB random float64 array saved, then a copy with 1% of its bytes changed in 4 regions
  (4 x 256 KiB) saved by a second flow: extra stored bytes / value bytes (target <= 5%). For
  reference, the same 1% spread over 64 regions of 16 KiB (no target).
"""

from __future__ import annotations

import cProfile
from typing import Any

import numpy as np
from common import (
    Context,
    KiB,
    MiB,
    Result,
    SectionReport,
    Table,
    log,
    store_env,
    timed,
)

SAME_TARGET = 1.05
EDIT_TARGET_PCT = 5.0


def _stored(path: str) -> int:
    from kitaru_store import Repository

    return int(Repository.open(path).stats().stored_bytes)


def _file(path: str) -> int:
    from kitaru_store import Repository

    return int(Repository.open(path).stats().file_bytes)


def same_value(ctx: Context, flavour: str, value: Any, copies: int) -> dict[str, Any]:
    import flows

    out: dict[str, Any] = {"flavour": flavour, "copies": copies}
    one = ctx.tmp.new()
    with store_env(one):
        flows.STATE["value"] = value
        t1, _ = timed(lambda: flows.run(flows.bench_save_same, 1))
        out["one_copy_stored"] = _stored(one)
        out["one_copy_file"] = _file(one)
    many = ctx.tmp.new()
    with store_env(many):
        tn, _ = timed(lambda: flows.run(flows.bench_save_same, copies))
        out["stored"] = _stored(many)
        out["file"] = _file(many)
    flows.STATE.clear()
    ctx.tmp.drop(one)
    ctx.tmp.drop(many)
    out["ratio"] = out["stored"] / out["one_copy_stored"]
    out["first_flow_ms"] = t1 * 1e3
    out["per_repeat_ms"] = tn / copies * 1e3
    return out


def edited_value(ctx: Context, size: int, regions: int) -> dict[str, Any]:
    import flows

    rng = np.random.default_rng(2024)
    base = rng.standard_normal(size // 8)
    changed = size // 100
    region = changed // regions
    edited = base.copy()
    view = edited.view(np.uint8)
    slots = size // region
    starts = sorted(int(s) * region for s in rng.choice(slots, regions, replace=False))
    for s in starts:
        view[s : s + region] = rng.integers(0, 256, region, dtype=np.uint8)
    path = ctx.tmp.new()
    with store_env(path):
        flows.STATE.update(names=["big"], values=[base])
        t1, _ = timed(lambda: flows.run(flows.bench_save, "first"))
        s1 = _stored(path)
        flows.STATE.update(names=["big"], values=[edited])
        t2, _ = timed(lambda: flows.run(flows.bench_save, "edited"))
        s2 = _stored(path)
    flows.STATE.clear()
    ctx.tmp.drop(path)
    extra = s2 - s1
    return {
        "value_bytes": size,
        "changed_bytes": region * regions,
        "regions": regions,
        "region_bytes": region,
        "offsets": starts,
        "first_stored": s1,
        "extra_stored": extra,
        "extra_pct": 100.0 * extra / size,
        "first_save_s": t1,
        "edited_save_s": t2,
    }


def run(ctx: Context, report: SectionReport) -> None:
    copies = 100
    text = ctx.corpus.slices(MiB, 1, offset=40)[0]
    floats = np.random.default_rng(5).standard_normal(MiB // 8)
    log("  dedup: the same 1 MiB value saved 100 times")
    same = [same_value(ctx, "text", text, copies), same_value(ctx, "floats", floats, copies)]
    size = 32 * MiB if ctx.quick else 100 * MiB
    log(f"  dedup: a {size // MiB} MiB value with 1% changed")
    few = edited_value(ctx, size, 4)
    many = edited_value(ctx, size, 64)
    report.data.update(same_1mib=same, edit_few_regions=few, edit_many_regions=many)
    t = Table("dedup (stored bytes = repo.stats().stored_bytes)", ["measure", "result", "detail"])
    for s in same:
        t.rows.append(
            [
                f"same 1 MiB {s['flavour']} value, {copies} checkpoints",
                f"{s['ratio']:.3f} x one copy",
                f"{s['stored']:,} B vs {s['one_copy_stored']:,} B; data.mdb {s['file'] / MiB:.1f} vs "
                f"{s['one_copy_file'] / MiB:.1f} MiB; {s['per_repeat_ms']:.2f} ms per checkpoint",
            ]
        )
    for e in (few, many):
        t.rows.append(
            [
                f"{size // MiB} MiB floats, 1% changed in {e['regions']} regions"
                f" of {e['region_bytes'] // KiB} KiB",
                f"+{e['extra_pct']:.2f}% stored",
                f"{e['extra_stored']:,} B extra ({e['first_stored']:,} B for the first copy); "
                f"saves {e['first_save_s']:.2f} s / {e['edited_save_s']:.2f} s",
            ]
        )
    report.tables.append(t)
    for s in same:
        report.results.append(
            Result(
                "dedup",
                f"same 1 MiB {s['flavour']} value saved {copies}x: stored",
                s["ratio"],
                "x one copy",
                target=f"<= {SAME_TARGET:.2f}x",
                ok=s["ratio"] <= SAME_TARGET,
            )
        )
    report.results.append(
        Result(
            "dedup",
            f"{size // MiB} MiB value, 1% changed in 4 regions: extra stored",
            few["extra_pct"],
            "%",
            target=f"<= {EDIT_TARGET_PCT:.0f}%",
            ok=few["extra_pct"] <= EDIT_TARGET_PCT,
        )
    )
    report.results.append(
        Result(
            "dedup",
            f"{size // MiB} MiB value, 1% changed in 64 regions: extra stored",
            many["extra_pct"],
            "%",
        )
    )


def profile(ctx: Context, case: str, prof: cProfile.Profile) -> str:
    """dedup:same (100 saves of one 1 MiB value) | dedup:edit (save of the edited 100 MiB value)."""
    import flows

    path = ctx.tmp.new()
    try:
        with store_env(path):
            if case in ("", "same"):
                flows.STATE["value"] = np.random.default_rng(5).standard_normal(MiB // 8)
                flows.run(flows.bench_save_same, 1)
                prof.runcall(lambda: flows.run(flows.bench_save_same, 100))
                return "dedup same: 100 checkpoints saving one 1 MiB floats value"
            if case != "edit":
                raise SystemExit("--profile dedup:CASE: CASE is same or edit")
            rng = np.random.default_rng(2024)
            base = rng.standard_normal(100 * MiB // 8)
            edited = base.copy()
            edited.view(np.uint8)[50 * MiB : 51 * MiB] = 0
            flows.STATE.update(names=["big"], values=[base])
            flows.run(flows.bench_save, "first")
            flows.STATE.update(names=["big"], values=[edited])
            prof.runcall(lambda: flows.run(flows.bench_save, "edited"))
            return "dedup edit: save of a 100 MiB value with 1 MiB changed"
    finally:
        flows.STATE.clear()
        ctx.tmp.drop(path)
