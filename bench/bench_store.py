#!/usr/bin/env python
"""Throughput of kitaru_store against the raw pipeline it is built from (BLAKE3 + zstd + LMDB).

For every case (1 KiB, 1 MiB and 64 MiB values; compressible log/JSON-like text and random
float64 arrays) it measures, in the same run and each repetition on a fresh temporary store:

* raw put:    blake3(value) + zstd level 3 (python-zstandard) + LMDB put, one write transaction
              per value (per batch of 1,000 values for 1 KiB). The 64 MiB value is one LMDB record.
* raw get:    LMDB get (zero-copy buffer) + zstd decompress + blake3 verify, one read txn per value.
* put_bytes:  kitaru_store ``Repository.put_bytes`` (``Writer.put_bytes`` in one writer per batch
              for 1 KiB) and ``Repository.get_bytes``.
* put_value:  ``put_value`` / ``get_value`` of the same data as a ``str`` or a numpy array.

Only ratios store/raw measured in one run mean anything; absolute MB/s depend on the machine.
Each figure is the best of several repetitions (the median is kept too): on a shared machine,
interference only ever adds time. Reads are warm-cache (page cache cannot be dropped here):
each timed get pass is preceded by an untimed pass over the same values. Temporary stores go
under /tmp (``--tmp``) and are removed at the end.

    python bench/bench_store.py                 # full run (~1.5-3 minutes on 2 cores)
    python bench/bench_store.py --quick         # smaller run (~20-30 s)
    python bench/bench_store.py --json --out results.json      # machine-readable
    python bench/bench_store.py --json-out results.json        # tables, and the JSON beside
    python bench/bench_store.py --profile text-1KiB:get_value  # cProfile one store operation
    python bench/bench_store.py --src /tmp/other-tree          # kitaru_store from another tree
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import io
import json
import os
import platform
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import blake3
import lmdb
import numpy as np
import zstandard

REPO_ROOT = Path(__file__).resolve().parent.parent
Repository: Any = None
store_backend: Any = None
store_config: Any = None


def load_store(src: str | None) -> Path:
    """Import kitaru_store from ``src`` (a tree holding kitaru_store/), by default this checkout."""
    global Repository, store_backend, store_config
    root = Path(src).resolve() if src else REPO_ROOT
    sys.path.insert(0, str(root))
    import kitaru_store
    from kitaru_store import backend, config

    Repository, store_backend, store_config = kitaru_store.Repository, backend, config
    return Path(kitaru_store.__file__).resolve().parent


KiB, MiB = 1 << 10, 1 << 20
MB = 1e6  # throughput is reported in MB/s = 10^6 bytes of value (uncompressed) per second
RAW_MAP_SIZE = 1 << 36  # room for the 64 MiB value as one record, and then some
SMALL_BATCH = 1000  # values per write transaction (raw) / per Writer (store) for 1 KiB values


# --- data ----------------------------------------------------------------------------------


def make_text(nbytes: int, seed: int = 1) -> str:
    """Log lines and JSON events with unique ids, timestamps and numbers: zstd-3 gets about 4x.

    Every line carries a random 64-bit id, so no two 1 KiB slices are equal and FastCDC finds
    no repeated chunks inside a value (the value is not artificially dedupable).
    """
    r = random.Random(seed)
    levels = ["INFO"] * 8 + ["DEBUG"] * 5 + ["WARN"] * 2 + ["ERROR"]
    mods = ["kitaru.runner", "kitaru.checkpoint", "store.writer", "http.client", "agent.planner"]
    mods += ["agent.tools", "llm.client", "cache"]
    steps = ["fetch_docs", "summarize", "plan", "call_tool", "embed", "rank", "write_report", "validate"]
    events = ["llm_call", "tool_call", "checkpoint"]
    models = ["gpt-4o", "claude-3-5", "llama-3-70b"]
    words = ["the", "a", "request", "response", "retry", "token", "cache", "miss", "hit", "model"]
    words += ["user", "tool", "call", "result", "failed", "ok", "timeout", "queued", "started"]
    words += ["finished", "step", "batch", "chunk", "document", "score"]
    bodies = []
    for _ in range(4096):
        if r.random() < 0.6:
            msg = " ".join(r.choices(words, k=r.randint(3, 9)))
            bodies.append(
                f"{r.choice(levels):5} [{r.choice(mods)}] step={r.choice(steps)} "
                f'attempt={r.randint(1, 3)} msg="{msg}"'
            )
        else:
            tags = json.dumps([r.choice(words), r.choice(words)])
            tokens = f'{{"prompt": {r.randint(10, 8000)}, "completion": {r.randint(1, 2000)}}}'
            bodies.append(
                f'{{"event": "{r.choice(events)}", "step": "{r.choice(steps)}", '
                f'"model": "{r.choice(models)}", "tags": {tags}, "tokens": {tokens}}}'
            )
    rng = np.random.default_rng(seed)
    n = nbytes // 120 + 1024
    parts: list[str] = []
    total = 0
    clock = 1714557600_000_000  # microseconds
    while total < nbytes:
        ts = (clock + np.cumsum(rng.integers(1, 40_000, n))).tolist()
        clock = ts[-1]
        ids = rng.integers(0, 2**63, n).tolist()
        lat = rng.integers(5, 90_000, n).tolist()
        bi = rng.integers(0, len(bodies), n).tolist()
        part = "".join(
            [
                f"{t // 1000000}.{t % 1000000:06d} exec={i:016x} latency_ms={lt / 10} {bodies[b]}\n"
                for t, i, lt, b in zip(ts, ids, lat, bi, strict=True)
            ]
        )
        parts.append(part)
        total += len(part)
    return "".join(parts)[:nbytes]  # ASCII: characters == bytes


@dataclass
class Case:
    name: str
    flavour: str  # "text" or "floats"
    size: int
    values: list[Any]  # str or numpy arrays, for put_value
    blobs: list[bytes]  # the same data as bytes, for the raw loop and put_bytes
    batch: int  # values per write transaction / writer
    reps: int
    get_passes: int  # timed get passes per repetition (the best one counts)


def make_cases(quick: bool, sizes: Sequence[int]) -> list[Case]:
    # (values per repetition, repetitions, get passes) per size; each repetition is a fresh store.
    # Small values repeat more: their passes are short and most exposed to a busy machine.
    plan = (
        {KiB: (SMALL_BATCH, 3, 3), MiB: (4, 3, 3), 64 * MiB: (1, 2, 1)}
        if quick
        else {KiB: (2 * SMALL_BATCH, 9, 3), MiB: (16, 9, 3), 64 * MiB: (1, 7, 2)}
    )
    need_text = max(s * plan[s][0] for s in sizes)
    t0 = time.perf_counter()
    corpus = make_text(need_text)
    log(f"generated {need_text / MiB:.0f} MiB of text in {time.perf_counter() - t0:.1f}s")
    rng = np.random.default_rng(7)
    cases = []
    for size in sizes:
        count, reps, passes = plan[size]
        batch = SMALL_BATCH if size < 64 * KiB else 1
        texts = [corpus[i * size : (i + 1) * size] for i in range(count)]
        blobs = [t.encode() for t in texts]
        cases.append(Case(f"text-{label(size)}", "text", size, texts, blobs, batch, reps, passes))
        arrays = [rng.standard_normal(size // 8) for _ in range(count)]
        blobs = [a.tobytes() for a in arrays]
        cases.append(Case(f"floats-{label(size)}", "floats", size, arrays, blobs, batch, reps, passes))
    return cases


def label(size: int) -> str:
    return f"{size // MiB}MiB" if size >= MiB else f"{size // KiB}KiB"


# --- the raw pipeline ------------------------------------------------------------------------


class RawStore:
    """The minimum the store does: hash, compress, one LMDB record per value.

    The environment is opened with the same flags as kitaru_store's (sync on commit, no
    readahead, named sub-database), so the ratio isolates what the store adds.
    """

    def __init__(self, path: str) -> None:
        self.env = lmdb.open(path, map_size=RAW_MAP_SIZE, subdir=True, max_dbs=2, readahead=False)
        self.db = self.env.open_db(b"objects")
        self.comp = zstandard.ZstdCompressor(level=3, write_content_size=True)
        self.decomp = zstandard.ZstdDecompressor()

    def put_batch(self, blobs: Sequence[bytes]) -> list[bytes]:
        records = []
        for blob in blobs:
            records.append((blake3.blake3(blob).digest(), self.comp.compress(blob)))
        with self.env.begin(write=True, db=self.db) as txn:
            for key, rec in records:
                txn.put(key, rec)
        return [k for k, _ in records]

    def get(self, key: bytes) -> bytes:
        with self.env.begin(buffers=True, db=self.db) as txn:
            data = self.decomp.decompress(txn.get(key))
        if blake3.blake3(data).digest() != key:
            raise RuntimeError("raw get: content does not match its id")
        return data

    def stored_bytes(self) -> int:
        with self.env.begin(db=self.db, buffers=True) as txn:
            return sum(len(v) for _, v in txn.cursor())

    def close(self) -> None:
        self.env.close()


# --- measuring --------------------------------------------------------------------------------


class TempDirs:
    def __init__(self, base: str | None) -> None:
        self.root = tempfile.mkdtemp(prefix="kitaru-bench-", dir=base or "/tmp")
        self.n = 0

    def new(self) -> str:
        self.n += 1
        path = os.path.join(self.root, f"s{self.n}")
        os.mkdir(path)
        return path

    def drop(self, path: str) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out
    finally:
        if was:
            gc.enable()


def batches(items: Sequence[Any], n: int) -> list[Sequence[Any]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


class Pipeline:
    """One way of storing a case's values: raw, put_bytes or put_value."""

    name = ""

    def __init__(self, path: str) -> None:
        self.path = path

    def put(self, case: Case) -> list[Any]:
        raise NotImplementedError

    def get(self, case: Case, keys: list[Any]) -> None:
        raise NotImplementedError

    def check(self, case: Case, keys: list[Any]) -> None:
        raise NotImplementedError

    def stored_bytes(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class RawPipeline(Pipeline):
    name = "raw"

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.raw = RawStore(path)

    def put(self, case: Case) -> list[Any]:
        keys: list[bytes] = []
        for chunk in batches(case.blobs, case.batch):
            keys.extend(self.raw.put_batch(chunk))
        return keys

    def get(self, case: Case, keys: list[Any]) -> None:
        get = self.raw.get
        for key in keys:
            get(key)

    def check(self, case: Case, keys: list[Any]) -> None:
        assert self.raw.get(keys[0]) == case.blobs[0]

    def stored_bytes(self) -> int:
        return self.raw.stored_bytes()

    def close(self) -> None:
        self.raw.close()


class StorePipeline(Pipeline):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.repo = Repository.open(path)

    def stored_bytes(self) -> int:
        return int(self.repo.stats().stored_bytes)

    def close(self) -> None:
        store_backend.close_backend(str(self.repo.root / store_config.DB_DIR))


class PutBytesPipeline(StorePipeline):
    name = "put_bytes"

    def put(self, case: Case) -> list[Any]:
        repo = self.repo
        if case.batch == 1:
            return [repo.put_bytes(b) for b in case.blobs]
        ids: list[str] = []
        for chunk in batches(case.blobs, case.batch):
            with repo.writer() as w:
                ids.extend(w.put_bytes(b) for b in chunk)
        return ids

    def get(self, case: Case, keys: list[Any]) -> None:
        get = self.repo.get_bytes
        for oid in keys:
            get(oid)

    def check(self, case: Case, keys: list[Any]) -> None:
        assert bytes(self.repo.get_bytes(keys[0])) == case.blobs[0]


class PutValuePipeline(StorePipeline):
    name = "put_value"

    def put(self, case: Case) -> list[Any]:
        repo = self.repo
        if case.batch == 1:
            return [repo.put_value(v).object_id for v in case.values]
        ids: list[str] = []
        for chunk in batches(case.values, case.batch):
            with repo.writer() as w:
                ids.extend(w.put_value(v).object_id for v in chunk)
        return ids

    def get(self, case: Case, keys: list[Any]) -> None:
        get = self.repo.get_value
        for oid in keys:
            get(oid)

    def check(self, case: Case, keys: list[Any]) -> None:
        got = self.repo.get_value(keys[0])
        want = case.values[0]
        assert (got == want) if isinstance(want, str) else np.array_equal(got, want)


PIPELINES: list[type[Pipeline]] = [RawPipeline, PutBytesPipeline, PutValuePipeline]


@dataclass
class Samples:
    put: list[float] = field(default_factory=list)
    get: list[float] = field(default_factory=list)
    stored: int = 0


def run_case(case: Case, dirs: TempDirs) -> dict[str, Any]:
    samples = {p.name: Samples() for p in PIPELINES}
    for rep in range(case.reps):
        # Rotate the order so that no pipeline always runs first (or right after the biggest).
        order = PIPELINES[rep % 3 :] + PIPELINES[: rep % 3]
        for cls in order:
            path = dirs.new()
            pipe = cls(path)
            try:
                t_put, keys = timed(lambda p=pipe: p.put(case))
                pipe.get(case, keys)  # warm-up: map the pages into this process
                t_get = min(timed(lambda p=pipe, k=keys: p.get(case, k))[0] for _ in range(case.get_passes))
                s = samples[cls.name]
                s.put.append(t_put)
                s.get.append(t_get)
                if rep == 0:
                    pipe.check(case, keys)
                    s.stored = pipe.stored_bytes()
            finally:
                pipe.close()
                dirs.drop(path)
    nbytes = case.size * len(case.blobs)
    nops = len(case.blobs)
    out: dict[str, Any] = {
        "case": case.name,
        "flavour": case.flavour,
        "value_bytes": case.size,
        "values_per_rep": nops,
        "values_per_txn": case.batch,
        "reps": case.reps,
        "get_passes_per_rep": case.get_passes,
        "pipelines": {},
    }
    for name, s in samples.items():
        best_put, best_get = min(s.put), min(s.get)
        med_put, med_get = statistics.median(s.put), statistics.median(s.get)
        out["pipelines"][name] = {
            "put_mb_s": nbytes / best_put / MB,
            "put_ops_s": nops / best_put,
            "get_mb_s": nbytes / best_get / MB,
            "get_ops_s": nops / best_get,
            "put_mb_s_median": nbytes / med_put / MB,
            "get_mb_s_median": nbytes / med_get / MB,
            "put_s": s.put,
            "get_s": s.get,
            "stored_bytes": s.stored,
            "stored_fraction": s.stored / nbytes,
        }
    raw = out["pipelines"]["raw"]
    for name in ("put_bytes", "put_value"):
        p = out["pipelines"][name]
        for op in ("put", "get"):
            p[f"{op}_ratio"] = p[f"{op}_mb_s"] / raw[f"{op}_mb_s"]
            p[f"{op}_ratio_median"] = p[f"{op}_mb_s_median"] / raw[f"{op}_mb_s_median"]
    return out


# --- dedup -----------------------------------------------------------------------------------


def run_dedup(dirs: TempDirs, text_1mib: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rng = np.random.default_rng(11)

    # 1. The same 1 MiB value, put 100 times, each put its own writer (commit).
    results = []
    for flavour, blob in (("text", text_1mib), ("floats", rng.standard_normal(MiB // 8).tobytes())):
        path = dirs.new()
        repo = Repository.open(path)
        try:
            t_first, oid = timed(lambda r=repo, b=blob: r.put_bytes(b))
            one = repo.stats().stored_bytes
            t_rest, ids = timed(lambda r=repo, b=blob: [r.put_bytes(b) for _ in range(99)])
            assert set(ids) == {oid}
            st = repo.stats()
            results.append(
                {
                    "flavour": flavour,
                    "puts": 100,
                    "one_copy_stored_bytes": one,
                    "stored_bytes_after": st.stored_bytes,
                    "stored_over_one_copy": st.stored_bytes / one,
                    "objects": st.objects,
                    "first_put_ms": t_first * 1e3,
                    "dedup_put_ms": t_rest / 99 * 1e3,
                }
            )
        finally:
            store_backend.close_backend(str(repo.root / store_config.DB_DIR))
            dirs.drop(path)
    out["same_1mib_x100"] = results

    # 2. A 64 MiB random value, then a copy with 5 edited 4 KiB regions.
    size = 64 * MiB
    base = rng.standard_normal(size // 8).tobytes()
    edited = bytearray(base)
    offsets = sorted(int(o) for o in rng.choice(size // (4 * KiB), 5, replace=False) * 4 * KiB)
    for off in offsets:
        edited[off : off + 4 * KiB] = rng.bytes(4 * KiB)
    path = dirs.new()
    repo = Repository.open(path)
    try:
        repo.put_bytes(base)
        s1 = repo.stats()
        t_edit, oid2 = timed(lambda r=repo: r.put_bytes(edited))
        s2 = repo.stats()
        assert bytes(repo.get_bytes(oid2)) == bytes(edited)
        extra = s2.stored_bytes - s1.stored_bytes
        out["edit_64mib_5x4kib"] = {
            "value_bytes": size,
            "edited_regions": len(offsets),
            "edited_bytes": 4 * KiB * len(offsets),
            "offsets": offsets,
            "stored_bytes_first": s1.stored_bytes,
            "extra_stored_bytes": extra,
            "extra_percent_of_value": 100.0 * extra / size,
            "new_records": s2.objects - s1.objects,
            "records_first": s1.objects,
            "edited_put_ms": t_edit * 1e3,
        }
    finally:
        store_backend.close_backend(str(repo.root / store_config.DB_DIR))
        dirs.drop(path)
    return out


# --- profiling -------------------------------------------------------------------------------


def run_profile(spec: str, dirs: TempDirs, top: int) -> str:
    """cProfile one store operation (e.g. ``text-1KiB:get_bytes``) over a quick-sized case."""
    case_name, _, op = spec.partition(":")
    op = op or "put_bytes"
    flavour, _, size_label = case_name.partition("-")
    sizes = {"1KiB": KiB, "1MiB": MiB, "64MiB": 64 * MiB}
    if size_label not in sizes or flavour not in ("text", "floats"):
        raise SystemExit(f"--profile: unknown case {case_name!r} (e.g. text-1KiB, floats-64MiB)")
    if op not in ("put_bytes", "get_bytes", "put_value", "get_value", "raw_put", "raw_get"):
        raise SystemExit(f"--profile: unknown operation {op!r}")
    case = next(c for c in make_cases(False, [sizes[size_label]]) if c.flavour == flavour)
    cls = RawPipeline if op.startswith("raw") else (PutValuePipeline if "value" in op else PutBytesPipeline)
    prof = cProfile.Profile()
    path = dirs.new()
    pipe = cls(path)
    try:
        if op.startswith("put") or op == "raw_put":
            prof.enable()
            keys = pipe.put(case)
            prof.disable()
        else:
            keys = pipe.put(case)
            pipe.get(case, keys)
            prof.enable()
            for _ in range(3):
                pipe.get(case, keys)
            prof.disable()
    finally:
        pipe.close()
        dirs.drop(path)
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf)
    st.strip_dirs().sort_stats("tottime").print_stats(top)
    st.sort_stats("cumulative").print_stats(top)
    return f"cProfile of {case.name} {op} ({len(case.blobs)} values)\n" + buf.getvalue()


# --- reporting -------------------------------------------------------------------------------


def machine_info(tmp_root: str) -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    fs = ""
    try:
        best = ""
        with open("/proc/mounts") as fh:
            for line in fh:
                dev, mnt, typ = line.split()[:3]
                if tmp_root.startswith(mnt) and len(mnt) > len(best):
                    best, fs = mnt, f"{typ} on {dev} ({mnt})"
    except OSError:
        pass
    libs = {}
    for dist in ("blake3", "zstandard", "lmdb", "pyfastcdc", "msgspec", "numpy"):
        try:
            libs[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            libs[dist] = "?"
    libs["zstd (C library)"] = ".".join(map(str, zstandard.ZSTD_VERSION))
    libs["LMDB (C library)"] = ".".join(map(str, lmdb.version()))
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "temp_fs": fs,
        "libraries": libs,
        "loadavg_at_start": load_average(),
    }


def load_average() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "?"


def code_state(pkg_dir: Path) -> dict[str, Any]:
    """Which kitaru_store was measured: its files' hash, and the git commit (and dirtiness) if any."""
    h = hashlib.blake2b(digest_size=8)
    for f in sorted(pkg_dir.rglob("*.py")):
        h.update(str(f.relative_to(pkg_dir)).encode() + b"\0" + f.read_bytes())
    state: dict[str, Any] = {"kitaru_store": str(pkg_dir), "source_hash": h.hexdigest()}

    def git(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", "-C", str(pkg_dir.parent), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if commit:
        dirty = git("status", "--porcelain", "--", pkg_dir.name)
        state["git_commit"] = commit
        state["uncommitted_store_changes"] = len(dirty.splitlines())
    return state


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def ratio(p: dict[str, Any], op: str) -> str:
    return f"**{p[op + '_ratio']:.2f}** ({p[op + '_ratio_median']:.2f})"


def table(results: list[dict[str, Any]], op: str) -> str:
    head = (
        f"| case | raw {op} MB/s | raw ops/s | {op}_bytes MB/s | ops/s | store/raw "
        f"| {op}_value MB/s | ops/s | store/raw |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in results:
        p = r["pipelines"]
        raw, pb, pv = p["raw"], p["put_bytes"], p["put_value"]
        lines.append(
            f"| {r['case']} | {fmt_rate(raw[op + '_mb_s'])} | {fmt_rate(raw[op + '_ops_s'])} "
            f"| {fmt_rate(pb[op + '_mb_s'])} | {fmt_rate(pb[op + '_ops_s'])} | {ratio(pb, op)} "
            f"| {fmt_rate(pv[op + '_mb_s'])} | {fmt_rate(pv[op + '_ops_s'])} | {ratio(pv, op)} |"
        )
    return "\n".join(lines)


def size_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| case | raw stored / value | put_bytes stored / value | put_value stored / value |",
        "|---|---|---|---|",
    ]
    for r in results:
        p = r["pipelines"]
        lines.append(
            f"| {r['case']} | {p['raw']['stored_fraction']:.3f} | {p['put_bytes']['stored_fraction']:.3f} "
            f"| {p['put_value']['stored_fraction']:.3f} |"
        )
    return "\n".join(lines)


def code_line(code: dict[str, Any]) -> str:
    out = f"{code['kitaru_store']} (source hash {code['source_hash']}"
    if "git_commit" in code:
        n = code["uncommitted_store_changes"]
        out += f", git {code['git_commit']}" + (f" + {n} uncommitted store file(s)" if n else ", clean")
    return out + ")"


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items())
    res = report["results"]
    out = [
        f"kitaru_store benchmark ({report['mode']} run, {report['elapsed_s']:.0f} s)",
        f"machine: {m['nproc']} CPUs, {m['cpu']}; Python {m['python']}; temp dir on {m['temp_fs']}",
        f"libraries: {libs}",
        f"kitaru_store: {code_line(report['code'])}",
        f"load average: {m['loadavg_at_start']} at start, {report['loadavg_at_end']} at end",
        "",
        "MB/s = 10^6 bytes of value (uncompressed) per second, best of the repetitions (each on a",
        "fresh store; gets: best of a few passes per repetition). store/raw: ratio of the best",
        "figures, in brackets the ratio of the medians; > 1 means the store is faster than raw.",
        "1 KiB: 1,000 values per write transaction (raw) / per repo.writer() (store); larger values:",
        "one transaction (raw) / one repo.put_bytes / put_value (store) per value. Gets: one read",
        "transaction per value, warm page cache (an untimed pass precedes each timed pass).",
        "The raw 64 MiB value is stored as ONE LMDB record (overflow pages; map_size 64 GiB); the",
        "store chunks it (FastCDC, 64 KiB / 256 KiB / 1 MiB).",
        "",
        "PUT",
        table(res, "put"),
        "",
        "GET",
        table(res, "get"),
        "",
        "STORED SIZE (bytes in LMDB records / value bytes; store: repo.stats().stored_bytes)",
        size_table(res),
        "",
    ]
    d = report.get("dedup")
    if d:
        out.append("DEDUP")
        for r in d["same_1mib_x100"]:
            out.append(
                f"- same 1 MiB {r['flavour']} value put {r['puts']}x: stored bytes = "
                f"{r['stored_over_one_copy']:.3f} x one copy ({r['stored_bytes_after']:,} B; one copy "
                f"{r['one_copy_stored_bytes']:,} B); first put {r['first_put_ms']:.1f} ms, "
                f"each repeat {r['dedup_put_ms']:.2f} ms"
            )
        e = d["edit_64mib_5x4kib"]
        out.append(
            f"- 64 MiB random float64 value, then a copy with {e['edited_regions']} edited 4 KiB regions: "
            f"extra stored {e['extra_stored_bytes']:,} B = {e['extra_percent_of_value']:.2f}% of the value "
            f"({e['new_records']} new records vs {e['records_first']} for the first copy; "
            f"edited bytes alone are {100 * e['edited_bytes'] / e['value_bytes']:.3f}%)"
        )
        out.append("")
    return "\n".join(out)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer values and repetitions (~30 s)")
    ap.add_argument("--json", action="store_true", help="emit JSON instead of the tables")
    ap.add_argument("--out", metavar="FILE", help="write the output to FILE instead of stdout")
    ap.add_argument("--json-out", metavar="FILE", help="also write the JSON results to FILE")
    ap.add_argument("--sizes", default="1KiB,1MiB,64MiB", help="comma-separated subset of 1KiB,1MiB,64MiB")
    ap.add_argument("--no-dedup", action="store_true", help="skip the dedup measurements")
    ap.add_argument(
        "--profile", metavar="CASE:OP", help="cProfile one operation instead, e.g. text-1KiB:get_bytes"
    )
    ap.add_argument("--top", type=int, default=25, help="rows of the --profile listing")
    ap.add_argument("--tmp", default="/tmp", help="where the temporary stores go (default /tmp)")
    ap.add_argument(
        "--src", metavar="DIR", help="measure the kitaru_store in DIR (e.g. an export of another commit)"
    )
    args = ap.parse_args(argv)
    pkg_dir = load_store(args.src)
    code = code_state(pkg_dir)  # now: the files as imported, should they change during the run

    size_of = {"1KiB": KiB, "1MiB": MiB, "64MiB": 64 * MiB}
    try:
        sizes = [size_of[s.strip()] for s in args.sizes.split(",") if s.strip()]
    except KeyError as exc:
        ap.error(f"unknown size {exc}")

    dirs = TempDirs(args.tmp)
    t_start = time.perf_counter()
    load_start = load_average()
    try:
        if args.profile:
            text = run_profile(args.profile, dirs, args.top)
        else:
            cases = make_cases(args.quick, sizes)
            results = []
            for case in cases:
                t0 = time.perf_counter()
                results.append(run_case(case, dirs))
                log(f"{case.name}: {case.reps} reps in {time.perf_counter() - t0:.1f}s")
            dedup = None
            if not args.no_dedup:
                t0 = time.perf_counter()
                dedup = run_dedup(dirs, make_text(MiB, seed=3).encode())
                log(f"dedup: {time.perf_counter() - t0:.1f}s")
            report = {
                "mode": "quick" if args.quick else "full",
                "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
                "elapsed_s": time.perf_counter() - t_start,
                "machine": {**machine_info(dirs.root), "loadavg_at_start": load_start},
                "code": code,
                "loadavg_at_end": load_average(),
                "units": "MB/s = 1e6 value bytes per second; ops/s = values per second; best of reps"
                " (*_median: medians)",
                "notes": [
                    "raw 64 MiB value stored as one LMDB record (map_size 64 GiB)",
                    "warm-cache reads: page cache not dropped; an untimed get pass precedes each timed pass",
                    "raw pipeline compresses every value with zstd-3;"
                    " the store skips incompressible data by sampling",
                ],
                "results": results,
                "dedup": dedup,
            }
            text = json.dumps(report, indent=2) if args.json else render(report)
            if args.json_out:
                Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    finally:
        dirs.cleanup()
    if args.out:
        Path(args.out).write_text(text + "\n")
        log(f"wrote {args.out}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
