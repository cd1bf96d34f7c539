"""small: 1 KiB values, many per checkpoint. Saves per second (target >= 10,000/s) and loads per second.

* kitaru.save: a flow whose one checkpoint saves N distinct 1 KiB text values (N = 10,000;
  quick 2,000). Timed: the whole ``flow.run()``: flow start, the saves, the checkpoint commit
  that makes them durable, flow end. saves/s = N / that time.
* durable at checkpoint end: a second, untimed flow saves N values in one checkpoint and then,
  in the flow body before the flow ends, a fresh process opens the store and reads them all.
  The store's LMDB environment syncs on commit (its flags are reported).
* kitaru.load: a checkpoint loading the values by name from the saving execution (time-boxed:
  it stops after a few seconds and reports the rate so far), and the same from an execution of
  1,000 values; ArtifactRef.load of every value, client side.
* baselines: the raw pipeline (BLAKE3 + zstd-3 + LMDB put of the N values in one synced write
  transaction; LMDB get + decompress + verify per value) and the store's Writer.put_value /
  Repository.get_value of the same values.
"""

from __future__ import annotations

import cProfile
import subprocess
import sys
import textwrap
from typing import Any

from common import (
    Context,
    KiB,
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
)

SAVES_TARGET = 10_000


def _sizes(ctx: Context) -> tuple[int, int, float]:
    """(values, repetitions, load time budget in seconds)."""
    return (2_000, 2, 2.0) if ctx.quick else (10_000, 5, 5.0)


def _values(ctx: Context, n: int, offset: int = 0) -> list[str]:
    return ctx.corpus.slices(KiB, n, offset)


def measure_saves(ctx: Context, values: list[str], reps: int) -> dict[str, Any]:
    import flows

    names = [f"a{i}" for i in range(len(values))]
    flow_s, body_s, exec_ids, paths = [], [], [], []
    for r in range(reps):
        path = ctx.tmp.new()
        with store_env(path):
            flows.STATE.update(names=names, values=values)
            t, handle = timed(lambda r=r: flows.run(flows.bench_save, f"r{r}"))
            flow_s.append(t)
            body_s.append(flows.STATE["save_body_s"])
            exec_ids.append(handle.exec_id)
            paths.append(path)
        flows.STATE.clear()
    # Keep the first store for the loads; drop the others.
    for p in paths[1:]:
        ctx.tmp.drop(p)
    return {"flow_s": flow_s, "body_s": body_s, "exec_id": exec_ids[0], "path": paths[0], "names": names}


def durability_check(ctx: Context, values: list[str]) -> dict[str, Any]:
    """Save in one checkpoint, then read every value from another process before the flow ends."""
    import flows

    import kitaru

    names = [f"d{i}" for i in range(len(values))]
    path = ctx.tmp.new()
    probe = textwrap.dedent(
        """
        import sys
        from kitaru_store import Repository
        repo = Repository.open(sys.argv[1], create=False)
        m = repo.get_execution(sys.argv[2])
        entries = [e for e in m.entries if e.kind == "manual"]
        ok = all(isinstance(repo.get_value(e.object_id), str) for e in entries)
        print(len(entries), int(ok))
        """
    )
    out: dict[str, Any] = {}

    @kitaru.flow
    def bench_durable() -> int:
        cp = flows.save_values("durable")
        exec_id = cp.exec_id
        res = subprocess.run(
            [sys.executable, "-c", probe, path, exec_id], capture_output=True, text=True, env=ctx.env
        )
        if res.returncode != 0:
            raise RuntimeError(res.stderr)
        seen, ok = map(int, res.stdout.split())
        out.update(visible_to_other_process=seen, readable=bool(ok))
        return seen

    with store_env(path):
        flows.STATE.update(names=names, values=values)
        flows.run(bench_durable)
        from kitaru_store import Repository

        repo = Repository.open(path)
        out["lmdb_env_flags"] = {
            k: v for k, v in repo._backend().env.flags().items() if k in ("sync", "metasync", "map_async")
        }
    flows.STATE.clear()
    ctx.tmp.drop(path)
    out["saved"] = len(values)
    out["durable"] = (
        out["visible_to_other_process"] == len(values)
        and out["readable"]
        and out["lmdb_env_flags"].get("sync") is True
        and out["lmdb_env_flags"].get("metasync") is True
    )
    return out


def measure_loads(ctx: Context, path: str, exec_id: str, names: list[str], budget: float) -> dict[str, Any]:
    import flows

    from kitaru import KitaruClient

    with store_env(path):
        flows.STATE.update(load_names=names[:64], load_budget_s=None)
        flows.run(flows.bench_load, exec_id)  # warm-up
        flows.STATE.update(load_names=names, load_budget_s=budget)
        t, _ = timed(lambda: flows.run(flows.bench_load, exec_id))
        loaded, load_s = flows.STATE["loaded"], flows.STATE["load_s"]
        flows.STATE.clear()
        client = KitaruClient(path)
        execution = client.executions.get(exec_id)
        refs = [a for a in execution.artifacts if a.kind == "manual"]
        [r.load() for r in refs]
        ref_s = [timed(lambda: [r.load() for r in refs])[0] for _ in range(3)]
    return {
        "entries_in_manifest": len(names),
        "loaded": loaded,
        "load_s": load_s,
        "load_flow_s": t,
        "loads_per_s": loaded / load_s,
        "ref_loads": len(refs),
        "ref_load_s": ref_s,
        "ref_loads_per_s": len(refs) / best(ref_s),
    }


def measure_baselines(ctx: Context, values: list[str], reps: int) -> dict[str, Any]:
    from kitaru_store import Repository

    blobs = [v.encode() for v in values]
    raw_put, raw_get, store_put, store_get = [], [], [], []
    for _ in range(reps):
        path = ctx.tmp.new()
        raw = RawStore(path)
        t, keys = timed(lambda raw=raw: raw.put_batch(blobs))
        raw_put.append(t)
        [raw.get(k) for k in keys]
        raw_get.append(timed(lambda raw=raw, keys=keys: [raw.get(k) for k in keys])[0])
        raw.close()
        ctx.tmp.drop(path)
        path = ctx.tmp.new()
        repo = Repository.open(path)

        def put(repo: Any = repo) -> list[str]:
            with repo.writer() as w:
                return [w.put_value(v).object_id for v in values]

        t, ids = timed(put)
        store_put.append(t)
        [repo.get_value(i) for i in ids]
        store_get.append(timed(lambda repo=repo, ids=ids: [repo.get_value(i) for i in ids])[0])
        ctx.tmp.drop(path)
    return {"raw_put_s": raw_put, "raw_get_s": raw_get, "store_put_s": store_put, "store_get_s": store_get}


def run(ctx: Context, report: SectionReport) -> None:
    n, reps, budget = _sizes(ctx)
    values = _values(ctx, n)
    log(f"  small: {reps} x {n:,} saves of 1 KiB in one checkpoint")
    saves = measure_saves(ctx, values, reps)
    log("  small: loads")
    loads = measure_loads(ctx, saves["path"], saves["exec_id"], saves["names"], budget)
    ctx.tmp.drop(saves["path"])
    # The same from an execution of 1,000 values: kitaru.load's cost depends on the manifest's size.
    small = measure_saves(ctx, values[:1000], 1)
    loads_1k = measure_loads(ctx, small["path"], small["exec_id"], small["names"], budget)
    ctx.tmp.drop(small["path"])
    log("  small: durability and baselines")
    durable = durability_check(ctx, _values(ctx, min(n, 2000), offset=n))
    base = measure_baselines(ctx, values, reps)

    saves_per_s = n / best(saves["flow_s"])
    raw_put_per_s = n / best(base["raw_put_s"])
    raw_get_per_s = n / best(base["raw_get_s"])
    store_put_per_s = n / best(base["store_put_s"])
    store_get_per_s = n / best(base["store_get_s"])
    body_per_s = n / best(saves["body_s"])
    report.data.update(
        values=n,
        value_bytes=KiB,
        reps=reps,
        saves=saves | {"path": None},
        saves_per_s=saves_per_s,
        saves_per_s_median=n / median(saves["flow_s"]),
        save_body_per_s=body_per_s,
        loads=loads,
        loads_from_1000=loads_1k,
        durability=durable,
        baselines=base,
    )
    t = Table(
        f"small: {n:,} values of 1 KiB in one checkpoint (best of {reps}; per second)",
        ["measure", "per second", "us per value", "baseline", "baseline /s", "ratio"],
    )

    def row(measure: str, rate: float, base_label: str = "", base_rate: float | None = None) -> None:
        t.rows.append(
            [
                measure,
                fmt(rate),
                fmt(1e6 / rate),
                base_label,
                fmt(base_rate) if base_rate else "",
                fmt_ratio(rate / base_rate) if base_rate else "",
            ]
        )

    row("kitaru.save, whole flow (commit included)", saves_per_s, "raw hash+zstd+put", raw_put_per_s)
    row("kitaru.save, checkpoint body only", body_per_s, "raw hash+zstd+put", raw_put_per_s)
    row("store Writer.put_value, one commit", store_put_per_s, "raw hash+zstd+put", raw_put_per_s)
    row(
        f"kitaru.load by name ({loads['loaded']:,} of {n:,} entries)",
        loads["loads_per_s"],
        "raw get+zstd+verify",
        raw_get_per_s,
    )
    row(
        "kitaru.load by name (execution of 1,000)",
        loads_1k["loads_per_s"],
        "raw get+zstd+verify",
        raw_get_per_s,
    )
    row("ArtifactRef.load", loads["ref_loads_per_s"], "raw get+zstd+verify", raw_get_per_s)
    row("store Repository.get_value", store_get_per_s, "raw get+zstd+verify", raw_get_per_s)
    flags = durable["lmdb_env_flags"]
    t.notes = [
        f"durable at checkpoint end: {'yes' if durable['durable'] else 'NO'}: after the checkpoint, before"
        f" the flow ended, a new process read {durable['visible_to_other_process']:,} of {durable['saved']:,}"
        f" values; LMDB env sync={flags.get('sync')}, metasync={flags.get('metasync')}.",
    ]
    report.tables.append(t)
    raw_label = "raw hash+zstd+put, one txn"
    report.results += [
        Result(
            "small",
            "1 KiB kitaru.save per second (flow, commit incl.)",
            saves_per_s,
            "/s",
            raw_put_per_s,
            "/s",
            raw_label,
            saves_per_s / raw_put_per_s,
            f">= {SAVES_TARGET:,}/s",
            saves_per_s >= SAVES_TARGET,
        ),
        Result(
            "small",
            "1 KiB saves durable at checkpoint end",
            float(durable["durable"]),
            "",
            target="yes",
            ok=durable["durable"],
            display="yes" if durable["durable"] else "no",
        ),
        Result(
            "small",
            f"1 KiB kitaru.load per second ({n:,} entries)",
            loads["loads_per_s"],
            "/s",
            raw_get_per_s,
            "/s",
            "raw get+zstd+verify",
            loads["loads_per_s"] / raw_get_per_s,
        ),
        Result(
            "small",
            "1 KiB kitaru.load per second (1,000 entries)",
            loads_1k["loads_per_s"],
            "/s",
            raw_get_per_s,
            "/s",
            "raw get+zstd+verify",
            loads_1k["loads_per_s"] / raw_get_per_s,
        ),
        Result(
            "small",
            "1 KiB ArtifactRef.load per second",
            loads["ref_loads_per_s"],
            "/s",
            raw_get_per_s,
            "/s",
            "raw get+zstd+verify",
            loads["ref_loads_per_s"] / raw_get_per_s,
        ),
    ]


def profile(ctx: Context, case: str, prof: cProfile.Profile) -> str:
    """small:save | small:load | small:ref_load."""
    import flows

    from kitaru import KitaruClient

    n = _sizes(ctx)[0]
    values = _values(ctx, n)
    names = [f"a{i}" for i in range(n)]
    path = ctx.tmp.new()
    try:
        with store_env(path):
            flows.STATE.update(names=names, values=values, load_names=names[:2000], load_budget_s=None)
            if case in ("", "save"):
                prof.runcall(lambda: flows.run(flows.bench_save, "p"))
            elif case in ("load", "ref_load"):
                exec_id = flows.run(flows.bench_save, "p").exec_id
                if case == "load":
                    prof.runcall(lambda: flows.run(flows.bench_load, exec_id))
                else:
                    refs = [
                        a for a in KitaruClient(path).executions.get(exec_id).artifacts if a.kind == "manual"
                    ]
                    prof.runcall(lambda: [r.load() for r in refs])
            else:
                raise SystemExit("--profile small:CASE: CASE is save, load or ref_load")
            flows.STATE.clear()
    finally:
        ctx.tmp.drop(path)
    return f"small {case or 'save'}: {n:,} values of 1 KiB" + (" (2,000 loads)" if case == "load" else "")
