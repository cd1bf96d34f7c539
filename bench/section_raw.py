"""raw: the machine's limits (BLAKE3, zstd, LMDB) and the raw pipeline, next to the store and kitaru.

For every case (1 KiB, 1 MiB and 64 MiB values; compressible text and random float64 arrays)
each repetition runs on fresh stores, in a rotated order:

* primitives: BLAKE3 of every value; zstd level 3 compress and decompress; LMDB put of the raw
  bytes (one synced write transaction for the repetition's values) and LMDB get (one read
  transaction per value, the value copied out);
* raw pipeline: BLAKE3 + zstd-3 + LMDB put, all values in one synced write transaction; get:
  LMDB get (zero-copy) + decompress + BLAKE3 verify, one read transaction per value. And the
  compression-skipped variant (hash + put; get + copy + verify): what incompressible data
  should cost;
* store: ``Writer.put_bytes`` / ``put_value`` of the values in one ``repo.writer()`` (one
  commit), ``Repository.get_bytes`` / ``get_value`` per value;
* kitaru: a flow whose one checkpoint ``kitaru.save``s every value (the whole ``flow.run``
  timed, commits included); a flow whose checkpoint ``kitaru.load``s them by name (the loads
  timed inside the checkpoint); ``ArtifactRef.load`` of each from ``KitaruClient``.

Values per repetition, and so per transaction / checkpoint: 1,000 x 1 KiB, 16 x 1 MiB, 1 x 64 MiB
(quick: 1,000, 8, 1). Gets are warm-cache: an untimed pass precedes the timed passes.
"""

from __future__ import annotations

import cProfile
import time
from dataclasses import dataclass, field
from typing import Any

import blake3
import numpy as np
import zstandard
from common import (
    MB,
    Context,
    KiB,
    MiB,
    RawStore,
    Result,
    SectionReport,
    Table,
    best,
    fmt,
    fmt_ratio,
    label,
    log,
    median,
    store_env,
    timed,
)

SIZES = {"1KiB": KiB, "1MiB": MiB, "64MiB": 64 * MiB}
SAVE_TARGET, LOAD_TARGET = 0.70, 0.80
LOAD_BUDGET_S = 0.5  # per kitaru.load pass (1 KiB values: about 1 ms per load from 1,000 entries)


@dataclass
class Case:
    name: str
    flavour: str  # "text" or "floats"
    size: int
    values: list[Any]  # str or numpy arrays (what kitaru and put_value get)
    blobs: list[bytes]  # the same data as bytes (raw pipeline, put_bytes)
    reps: int
    passes: int  # timed get passes per repetition (the best counts)
    samples: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, key: str, seconds: float) -> None:
        self.samples.setdefault(key, []).append(seconds)

    @property
    def nbytes(self) -> int:
        return self.size * len(self.blobs)


def plan(quick: bool) -> dict[int, tuple[int, int, int]]:
    """size -> (values per repetition, repetitions, get passes)."""
    if quick:
        return {KiB: (1000, 3, 2), MiB: (8, 3, 2), 64 * MiB: (1, 2, 1)}
    return {KiB: (1000, 7, 3), MiB: (16, 7, 3), 64 * MiB: (1, 5, 2)}


def make_cases(ctx: Context, sizes: list[int]) -> list[Case]:
    cases = []
    for size in sizes:
        count, reps, passes = plan(ctx.quick)[size]
        texts = ctx.corpus.slices(size, count)
        cases.append(
            Case(f"text-{label(size)}", "text", size, texts, [t.encode() for t in texts], reps, passes)
        )
        rng = np.random.default_rng(7 + size)
        arrays = [rng.standard_normal(size // 8) for _ in range(count)]
        cases.append(
            Case(f"floats-{label(size)}", "floats", size, arrays, [a.tobytes() for a in arrays], reps, passes)
        )
    return cases


# --- measurements (each on a fresh directory) -------------------------------------------------


def _best_pass(fn: Any, passes: int) -> float:
    fn()  # warm-up: map the pages into this process
    return min(timed(fn)[0] for _ in range(passes))


def m_primitives(case: Case, path: str, first: bool) -> None:
    comp = zstandard.ZstdCompressor(level=3, write_content_size=True)
    decomp = zstandard.ZstdDecompressor()
    blobs = case.blobs
    t, keys = timed(lambda: [blake3.blake3(b).digest() for b in blobs])
    case.add("blake3", t)
    t, packed = timed(lambda: [comp.compress(b) for b in blobs])
    case.add("zstd_compress", t)
    t, _ = timed(lambda: [decomp.decompress(p) for p in packed])
    case.add("zstd_decompress", t)
    if first:
        case.extra["zstd_ratio"] = case.nbytes / sum(len(p) for p in packed)
    raw = RawStore(path, compress=False)
    try:
        items = list(zip(keys, blobs, strict=True))
        t, _ = timed(lambda: raw.put_plain(items))
        case.add("lmdb_put", t)
        case.add("lmdb_get", _best_pass(lambda: [raw.get_plain(k) for k in keys], case.passes))
    finally:
        raw.close()


def _raw(compress: bool) -> Any:
    tag = "raw_z" if compress else "raw_n"

    def measure(case: Case, path: str, first: bool) -> None:
        raw = RawStore(path, compress=compress)
        try:
            t, keys = timed(lambda: raw.put_batch(case.blobs))
            case.add(f"{tag}_put", t)
            case.add(f"{tag}_get", _best_pass(lambda: [raw.get(k) for k in keys], case.passes))
            if first:
                assert raw.get(keys[0]) == case.blobs[0]
                case.extra[f"{tag}_stored"] = raw.stored_bytes() / case.nbytes
        finally:
            raw.close()

    return measure


def _store(kind: str) -> Any:
    def measure(case: Case, path: str, first: bool) -> None:
        from kitaru_store import Repository

        repo = Repository.open(path)
        items = case.blobs if kind == "bytes" else case.values

        def put() -> list[str]:
            with repo.writer() as w:
                if kind == "bytes":
                    return [w.put_bytes(b) for b in items]
                return [w.put_value(v).object_id for v in items]

        t, ids = timed(put)
        case.add(f"put_{kind}", t)
        get = repo.get_bytes if kind == "bytes" else repo.get_value
        case.add(f"get_{kind}", _best_pass(lambda: [get(i) for i in ids], case.passes))
        if first:
            _check(case, get(ids[0]))
            case.extra[f"store_{kind}_stored"] = repo.stats().stored_bytes / case.nbytes

    return measure


def _check(case: Case, got: Any) -> None:
    want = case.values[0]
    if isinstance(got, bytes | bytearray | memoryview):
        ok = bytes(got) == case.blobs[0]
    elif isinstance(want, str):
        ok = got == want
    else:
        ok = bool(np.array_equal(got, want))
    if not ok:
        raise AssertionError(f"{case.name}: the value read back differs from the value stored")


def m_kitaru(case: Case, path: str, first: bool) -> None:
    import flows

    from kitaru import KitaruClient

    names = [f"v{i}" for i in range(len(case.values))]
    with store_env(path):
        # kitaru.load passes stop after LOAD_BUDGET_S; the time is scaled up to all the values (the
        # manifest read per load does not change size during a pass, so the cost per load is flat).
        flows.STATE.update(names=names, values=case.values, load_names=names, load_budget_s=LOAD_BUDGET_S)
        t, handle = timed(lambda: flows.run(flows.bench_save, case.name))
        case.add("save", t)
        case.add("save_body", flows.STATE["save_body_s"])
        exec_id = handle.exec_id

        flows.run(flows.bench_load, exec_id)  # warm-up
        load_s, load_flow_s = [], []
        for _ in range(case.passes):
            t, _ = timed(lambda: flows.run(flows.bench_load, exec_id))
            load_s.append(flows.STATE["load_s"] * len(names) / flows.STATE["loaded"])
            load_flow_s.append(t)
        case.add("load", min(load_s))
        case.add("load_flow", min(load_flow_s))
        if first:
            _check(case, flows.STATE["first_loaded"])

        client = KitaruClient(path)
        execution = client.executions.get(exec_id)
        by_name = {a.name: a for a in execution.artifacts if a.kind == "manual"}
        refs = [by_name[n] for n in names]
        case.add("ref_load", _best_pass(lambda: [r.load() for r in refs], case.passes))
        if first:
            _check(case, refs[0].load())
            case.extra["kitaru_stored"] = client.repository.stats().stored_bytes / case.nbytes
        flows.STATE.clear()


MEASURES = [
    ("primitives", m_primitives),
    ("raw_z", _raw(True)),
    ("raw_n", _raw(False)),
    ("store_bytes", _store("bytes")),
    ("store_value", _store("value")),
    ("kitaru", m_kitaru),
]


def run_case(ctx: Context, case: Case) -> None:
    for rep in range(case.reps):
        k = rep % len(MEASURES)
        for _, measure in MEASURES[k:] + MEASURES[:k]:  # nobody always first or after the biggest
            path = ctx.tmp.new()
            try:
                measure(case, path, rep == 0)
            finally:
                ctx.tmp.drop(path)


# --- report -------------------------------------------------------------------------------------


def summarize(case: Case) -> dict[str, Any]:
    out: dict[str, Any] = {
        "case": case.name,
        "flavour": case.flavour,
        "value_bytes": case.size,
        "values_per_rep": len(case.blobs),
        "reps": case.reps,
        "get_passes": case.passes,
        "seconds": case.samples,
        **case.extra,
    }
    mbs, mbs_med = {}, {}
    for key, xs in case.samples.items():
        mbs[key] = case.nbytes / best(xs) / MB
        mbs_med[key] = case.nbytes / median(xs) / MB
    out["mb_s"] = mbs
    out["mb_s_median"] = mbs_med
    out["us_per_value"] = {k: best(xs) / len(case.blobs) * 1e6 for k, xs in case.samples.items()}
    return out


def ratio_results(s: dict[str, Any]) -> list[Result]:
    """The section's verdicts: kitaru (and the store, for floats) against the raw pipeline."""
    name, big = s["case"], s["value_bytes"] >= MiB
    m, med = s["mb_s"], s["mb_s_median"]
    out = []

    def add(measure: str, key: str, base: str, base_label: str, target: float | None) -> None:
        suffix = " vs no-zstd raw" if base.startswith("raw_n") else ""
        r = m[key] / m[base]
        rmed = med[key] / med[base]
        ok = None if target is None else r >= target
        out.append(
            Result(
                "raw",
                f"{measure} {name}{suffix}",
                m[key],
                "MB/s",
                m[base],
                "MB/s",
                f"{base_label}; median ratio {rmed:.2f}",
                r,
                f"ratio >= {target:.2f}" if target is not None else "",
                ok,
                summary=big,
            )
        )

    save_t = SAVE_TARGET if big else None
    load_t = LOAD_TARGET if big else None
    add("kitaru.save", "save", "raw_z_put", "raw hash+zstd+put", save_t)
    if s["flavour"] == "floats":
        add("kitaru.save", "save", "raw_n_put", "raw hash+put, no zstd", save_t)
        add("store put_bytes", "put_bytes", "raw_n_put", "raw hash+put, no zstd", save_t)
    add("kitaru.load", "load", "raw_z_get", "raw get+zstd+verify", load_t)
    if s["flavour"] == "floats":
        add("kitaru.load", "load", "raw_n_get", "raw get+verify, no zstd", load_t)
    add("ArtifactRef.load", "ref_load", "raw_z_get", "raw get+zstd+verify", load_t)
    if s["flavour"] == "floats":
        add("ArtifactRef.load", "ref_load", "raw_n_get", "raw get+verify, no zstd", load_t)
    return out


def tables(summaries: list[dict[str, Any]]) -> list[Table]:
    prim = Table(
        "raw: primitives (MB/s of value bytes, best of the repetitions)",
        ["case", "BLAKE3", "zstd-3 compress", "zstd-3 decompress", "zstd ratio", "LMDB put", "LMDB get"],
    )
    put = Table(
        "raw: put (MB/s; ratios of the best, median ratio in brackets)",
        [
            "case",
            "raw hash+zstd+put",
            "raw hash+put",
            "store put_bytes",
            "store put_value",
            "kitaru.save (flow)",
            "save us/value (flow)",
            "save/raw",
            "save/raw no-zstd",
            "put_bytes/raw no-zstd",
            "stored/value",
        ],
    )
    get = Table(
        "raw: get (MB/s)",
        [
            "case",
            "raw get+zstd+verify",
            "raw get+verify",
            "store get_bytes",
            "store get_value",
            "kitaru.load",
            "ArtifactRef.load",
            "kitaru.load us/value",
            "load/raw",
            "ref/raw",
            "load/raw no-zstd",
            "ref/raw no-zstd",
        ],
    )
    for s in summaries:
        m, med = s["mb_s"], s["mb_s_median"]

        def r(a: str, b: str, m: dict[str, float] = m, med: dict[str, float] = med) -> str:
            return f"**{fmt_ratio(m[a] / m[b])}** ({fmt_ratio(med[a] / med[b])})"

        prim.rows.append(
            [
                s["case"],
                fmt(m["blake3"]),
                fmt(m["zstd_compress"]),
                fmt(m["zstd_decompress"]),
                f"{s['zstd_ratio']:.2f}x",
                fmt(m["lmdb_put"]),
                fmt(m["lmdb_get"]),
            ]
        )
        put.rows.append(
            [
                s["case"],
                fmt(m["raw_z_put"]),
                fmt(m["raw_n_put"]),
                fmt(m["put_bytes"]),
                fmt(m["put_value"]),
                fmt(m["save"]),
                fmt(s["us_per_value"]["save"]),
                r("save", "raw_z_put"),
                r("save", "raw_n_put"),
                r("put_bytes", "raw_n_put"),
                f"{s.get('kitaru_stored', float('nan')):.3f}",
            ]
        )
        get.rows.append(
            [
                s["case"],
                fmt(m["raw_z_get"]),
                fmt(m["raw_n_get"]),
                fmt(m["get_bytes"]),
                fmt(m["get_value"]),
                fmt(m["load"]),
                fmt(m["ref_load"]),
                fmt(s["us_per_value"]["load"]),
                r("load", "raw_z_get"),
                r("ref_load", "raw_z_get"),
                r("load", "raw_n_get"),
                r("ref_load", "raw_n_get"),
            ]
        )
    put.notes = [
        "kitaru.save: the whole flow.run() of one checkpoint saving the repetition's values (flow",
        "start and end commits and the checkpoint commit included). The raw pipeline writes the same",
        "values in one synced write transaction. stored/value: store bytes after the save / value bytes.",
        "Targets for values >= 1 MiB: save >= 0.70 x raw; for floats also against the no-zstd raw",
        "pipeline (incompressible data must not pay for compression it does not get).",
    ]
    get.notes = [
        "kitaru.load: the loads inside one checkpoint (by name, from the saving execution), warm cache;",
        "ArtifactRef.load: client side, refs from KitaruClient().executions.get(). Target >= 0.80 x raw",
        "for values >= 1 MiB.",
    ]
    return [prim, put, get]


def run(ctx: Context, report: SectionReport, sizes: list[str] | None = None) -> None:
    chosen = [SIZES[s] for s in (sizes or list(SIZES))]
    summaries = []
    for case in make_cases(ctx, chosen):
        t0 = time.perf_counter()
        run_case(ctx, case)
        log(
            f"  raw {case.name}: {case.reps} reps x {len(case.blobs)} values, {time.perf_counter() - t0:.1f}s"
        )
        s = summarize(case)
        summaries.append(s)
        report.results.extend(ratio_results(s))
    report.tables.extend(tables(summaries))
    report.data["cases"] = summaries


# --- profiling ------------------------------------------------------------------------------------

PROFILE_OPS = {
    "blake3": "primitives",
    "raw_put": "raw_z",
    "raw_get": "raw_z",
    "raw_put_nz": "raw_n",
    "raw_get_nz": "raw_n",
    "put_bytes": "store",
    "get_bytes": "store",
    "put_value": "store",
    "get_value": "store",
    "save": "kitaru",
    "load": "kitaru",
    "ref_load": "kitaru",
}


def profile(ctx: Context, case_spec: str, prof: cProfile.Profile) -> str:
    """``CASE:OP``, e.g. ``floats-1MiB:save``; OP one of PROFILE_OPS (default save)."""
    case_name, _, op = case_spec.partition(":")
    op = op or "save"
    flavour, _, size_label = case_name.partition("-")
    if size_label not in SIZES or flavour not in ("text", "floats") or op not in PROFILE_OPS:
        raise SystemExit(
            f"--profile raw:{case_spec}: expected raw:CASE:OP with CASE like text-1MiB or floats-64MiB"
            f" and OP one of {', '.join(PROFILE_OPS)}"
        )
    case = next(c for c in make_cases(ctx, [SIZES[size_label]]) if c.flavour == flavour)
    reps = 3 if case.size < 64 * MiB else 1
    path = ctx.tmp.new()
    try:
        if op.startswith("raw") or op == "blake3":
            raw = RawStore(path, compress=not op.endswith("_nz"))
            if op == "blake3":
                prof.runcall(lambda: [[blake3.blake3(b).digest() for b in case.blobs] for _ in range(reps)])
            elif "put" in op:
                prof.runcall(lambda: [raw.put_batch(case.blobs) for _ in range(reps)])
            else:
                keys = raw.put_batch(case.blobs)
                prof.runcall(lambda: [[raw.get(k) for k in keys] for _ in range(reps)])
            raw.close()
        elif op in ("put_bytes", "get_bytes", "put_value", "get_value"):
            from kitaru_store import Repository

            repo = Repository.open(path)
            kind = op.split("_")[1]
            items = case.blobs if kind == "bytes" else case.values

            def put() -> list[str]:
                with repo.writer() as w:
                    if kind == "bytes":
                        return [w.put_bytes(b) for b in items]
                    return [w.put_value(v).object_id for v in items]

            if op.startswith("put"):
                prof.runcall(lambda: [put() for _ in range(reps)])
            else:
                ids = put()
                get = repo.get_bytes if kind == "bytes" else repo.get_value
                [get(i) for i in ids]
                prof.runcall(lambda: [[get(i) for i in ids] for _ in range(reps)])
        else:
            import flows

            from kitaru import KitaruClient

            names = [f"v{i}" for i in range(len(case.values))]
            with store_env(path):
                flows.STATE.update(names=names, values=case.values, load_names=names, load_budget_s=None)
                if op == "save":
                    prof.runcall(lambda: [flows.run(flows.bench_save, f"p{i}") for i in range(reps)])
                else:
                    exec_id = flows.run(flows.bench_save, "p").exec_id
                    if op == "load":
                        flows.run(flows.bench_load, exec_id)
                        prof.runcall(lambda: [flows.run(flows.bench_load, exec_id) for _ in range(reps)])
                    else:
                        refs = [
                            a
                            for a in KitaruClient(path).executions.get(exec_id).artifacts
                            if a.kind == "manual"
                        ]
                        [r.load() for r in refs]
                        prof.runcall(lambda: [[r.load() for r in refs] for _ in range(reps)])
                flows.STATE.clear()
    finally:
        ctx.tmp.drop(path)
    return f"raw {case.name} {op}: {reps} x {len(case.blobs)} values"
