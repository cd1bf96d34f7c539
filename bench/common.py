"""Shared helpers of the benchmark suite (bench/run.py): data, timing, the raw pipeline, tables.

Nothing here imports kitaru or kitaru_store at module level: ``run.py --src DIR`` must be able
to put another tree first on ``sys.path`` before either is imported.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import blake3
import lmdb
import numpy as np
import zstandard

KiB, MiB = 1 << 10, 1 << 20
MB = 1e6  # throughput is MB/s = 10^6 bytes of value (uncompressed) per second
RAW_MAP_SIZE = 1 << 36  # the store's default map size: room for a 64 MiB value as one record
BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_average() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "?"


# --- timing ----------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds taken by ``fn()`` (the cyclic GC collected before and paused during), and its result."""
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


def best(xs: Sequence[float]) -> float:
    return min(xs)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


# --- data --------------------------------------------------------------------------------------


def make_text(nbytes: int, seed: int = 1) -> str:
    """Log lines and JSON events with unique ids, timestamps and numbers: zstd-3 gets about 4x.

    Every line carries a random 64-bit id, so no two 1 KiB slices are equal and FastCDC finds no
    repeated chunks inside a value (the text is not artificially dedupable). ASCII only.
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
    return "".join(parts)[:nbytes]


class Corpus:
    """One text corpus per run, cut into values; grown on demand."""

    def __init__(self) -> None:
        self._text = ""

    def text(self, nbytes: int) -> str:
        if len(self._text) < nbytes:
            t0 = time.perf_counter()
            self._text = make_text(max(nbytes, 2 * len(self._text)))
            log(f"  (generated {len(self._text) / MiB:.0f} MiB of text in {time.perf_counter() - t0:.1f}s)")
        return self._text

    def slices(self, size: int, count: int, offset: int = 0) -> list[str]:
        text = self.text(size * (count + offset))
        return [text[(i + offset) * size : (i + offset + 1) * size] for i in range(count)]


def random_floats(nbytes: int, count: int, seed: int = 7) -> list[np.ndarray]:
    """Random float64 arrays (standard normal): zstd-3 saves about 4% on them."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(nbytes // 8) for _ in range(count)]


def label(size: int) -> str:
    return f"{size // MiB}MiB" if size >= MiB else f"{size // KiB}KiB"


# --- temporary stores ----------------------------------------------------------------------------


class TempRoot:
    """A directory under /tmp (or ``base``) holding every temporary store of the run."""

    def __init__(self, base: str | None = None) -> None:
        self.root = tempfile.mkdtemp(prefix="kitaru-bench-", dir=base or "/tmp")
        self._n = 0

    def new(self, tag: str = "s") -> str:
        self._n += 1
        path = os.path.join(self.root, f"{tag}{self._n}")
        os.mkdir(path)
        return path

    def drop(self, path: str) -> None:
        close_store(path)
        shutil.rmtree(path, ignore_errors=True)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def close_store(path: str) -> None:
    """Close this process's LMDB handle on the store at ``path`` (if kitaru_store opened one)."""
    backend = sys.modules.get("kitaru_store.backend")
    if backend is not None:
        backend.close_backend(os.path.join(path, "db"))


@contextlib.contextmanager
def store_env(path: str) -> Iterator[str]:
    """Point kitaru (KITARU_STORE) at ``path`` for the block; close the store's handle after it.

    The store is created and opened first, untimed, as the raw pipeline's LMDB environment is:
    opening (config file, LMDB environment, ten sub-databases) is a once-per-process cost that a
    timed first flow would otherwise carry.
    """
    from kitaru_store import Repository

    old = os.environ.get("KITARU_STORE")
    os.environ["KITARU_STORE"] = path
    Repository.open(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("KITARU_STORE", None)
        else:
            os.environ["KITARU_STORE"] = old
        close_store(path)


def dir_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


# --- the raw pipeline ------------------------------------------------------------------------------


class RawStore:
    """The minimum a content-addressed store does: hash, (compress,) one LMDB record per value.

    The environment has the store's flags (sync on commit, no readahead, named sub-databases), so
    that a ratio against it isolates what kitaru_store and kitaru add. ``compress=False`` is the
    compression-skipped variant: what an incompressible value must cost at most.
    """

    def __init__(self, path: str, *, compress: bool = True) -> None:
        self.env = lmdb.open(path, map_size=RAW_MAP_SIZE, subdir=True, max_dbs=4, readahead=False)
        self.db = self.env.open_db(b"objects")
        self.compress = compress
        self.comp = zstandard.ZstdCompressor(level=3, write_content_size=True)
        self.decomp = zstandard.ZstdDecompressor()

    def put_batch(self, blobs: Sequence[bytes]) -> list[bytes]:
        """Hash (and compress) every blob, then write them all in one synced write transaction."""
        if self.compress:
            records = [(blake3.blake3(b).digest(), self.comp.compress(b)) for b in blobs]
        else:
            records = [(blake3.blake3(b).digest(), b) for b in blobs]
        with self.env.begin(write=True, db=self.db) as txn:
            for key, rec in records:
                txn.put(key, rec)
        return [k for k, _ in records]

    def get(self, key: bytes) -> bytes:
        """One read transaction: the record (zero-copy), decompressed or copied, and verified."""
        with self.env.begin(buffers=True, db=self.db) as txn:
            rec = txn.get(key)
            data = self.decomp.decompress(rec) if self.compress else bytes(rec)
        if blake3.blake3(data).digest() != key:
            raise RuntimeError("raw get: content does not match its id")
        return data

    def put_plain(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        """LMDB alone: write the given records in one synced write transaction."""
        with self.env.begin(write=True, db=self.db) as txn:
            for key, rec in items:
                txn.put(key, rec)

    def get_plain(self, key: bytes) -> bytes:
        """LMDB alone: one read transaction, the value copied out."""
        with self.env.begin(db=self.db) as txn:
            return txn.get(key)

    def commit_one(self, i: int) -> None:
        """One small record in its own synced write transaction (the cost of a durable commit)."""
        with self.env.begin(write=True, db=self.db) as txn:
            txn.put(b"commit-%d" % i, b"x" * 64)

    def stored_bytes(self) -> int:
        with self.env.begin(db=self.db, buffers=True) as txn:
            return sum(len(v) for _, v in txn.cursor())

    def close(self) -> None:
        self.env.close()


# --- results ---------------------------------------------------------------------------------------


@dataclass
class Result:
    """One measure against its target; ``ok`` None means informational (no target)."""

    section: str
    measure: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_unit: str = ""
    baseline_label: str = ""
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None
    summary: bool = True  # shown in the final summary table
    display: str = ""  # shown instead of the value (e.g. "yes")

    @property
    def verdict(self) -> str:
        return "INFO" if self.ok is None else ("PASS" if self.ok else "FAIL")


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class SectionReport:
    name: str
    tables: list[Table] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    loadavg_start: str = ""
    loadavg_end: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for r, d in zip(self.results, out["results"], strict=True):
            d["verdict"] = r.verdict
        return out


def fmt(x: float | None, unit: str = "") -> str:
    """A number for a table: thousands separators, about three significant digits."""
    if x is None:
        return ""
    if x != x:  # NaN
        return "n/a"
    a = abs(x)
    s = (
        f"{x:,.0f}"
        if a >= 100
        else f"{x:.1f}"
        if a >= 10
        else f"{x:.2f}"
        if a >= 1
        else f"{x:.3f}"
        if a >= 0.01
        else f"{x:.2g}"
    )
    return f"{s} {unit}".strip() if unit else s


def fmt_ratio(x: float | None) -> str:
    if x is None:
        return ""
    return f"{x:.2f}" if x >= 0.1 else f"{x:.3f}" if x >= 0.001 else f"{x:.1e}"


def render_table(t: Table) -> str:
    widths = [len(h) for h in t.header]
    for row in t.rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = [f"### {t.title}", ""] if t.title else []

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    lines.append(line(t.header))
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines.extend(line(r) for r in t.rows)
    if t.notes:
        lines.append("")
        lines.extend(t.notes)
    return "\n".join(lines)


def results_table(results: Sequence[Result], title: str) -> Table:
    t = Table(title, ["section", "measure", "value", "baseline", "ratio", "target", "result"])
    for r in results:
        base = ""
        if r.baseline is not None:
            base = fmt(r.baseline, r.baseline_unit or r.unit)
            if r.baseline_label:
                base += f" ({r.baseline_label})"
        value = r.display or fmt(r.value, r.unit)
        t.rows.append([r.section, r.measure, value, base, fmt_ratio(r.ratio), r.target, r.verdict])
    return t


# --- the machine and the code --------------------------------------------------------------------


def machine_info(tmp_root: str) -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
                break
    fs = ""
    with contextlib.suppress(OSError), open("/proc/mounts") as fh:
        best_mnt = ""
        for line in fh:
            dev, mnt, typ = line.split()[:3]
            if tmp_root.startswith(mnt) and len(mnt) >= len(best_mnt):
                best_mnt, fs = mnt, f"{typ} on {dev} ({mnt})"
    libs = {}
    for dist in ("blake3", "zstandard", "lmdb", "pyfastcdc", "msgspec", "numpy", "click"):
        try:
            libs[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            libs[dist] = "?"
    libs["zstd (C)"] = ".".join(map(str, zstandard.ZSTD_VERSION))
    libs["LMDB (C)"] = ".".join(map(str, lmdb.version()))
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "temp_fs": fs,
        "libraries": libs,
    }


def code_state(root: Path) -> dict[str, Any]:
    """Which code was measured: a hash of kitaru/ and kitaru_store/ as found, and the git state."""
    h = hashlib.blake2b(digest_size=8)
    for pkg in ("kitaru", "kitaru_store"):
        for f in sorted((root / pkg).rglob("*.py")):
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    state: dict[str, Any] = {"root": str(root), "source_hash": h.hexdigest()}

    def git(*args: str) -> str:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if commit:
        state["git_commit"] = commit
        dirty = git("status", "--porcelain", "--", "kitaru", "kitaru_store")
        state["uncommitted_files"] = len(dirty.splitlines())
    return state


def bytecode_cached_env(env: dict[str, str], tmp_root: str) -> dict[str, str]:
    """``env`` with bytecode caching on, the caches under ``tmp_root`` (never in the source tree).

    An installed package has .pyc files; a checkout run with PYTHONDONTWRITEBYTECODE=1 compiles
    every module of kitaru at every start, which is not what users see.
    """
    out = dict(env)
    out.pop("PYTHONDONTWRITEBYTECODE", None)
    out["PYTHONPYCACHEPREFIX"] = os.path.join(tmp_root, "pycache")
    return out


# --- subprocesses --------------------------------------------------------------------------------


def wall_times(
    argv: Sequence[str], runs: int, env: dict[str, str] | None = None, warmup: int = 1
) -> list[float]:
    """Wall time of running ``argv`` to completion, ``runs`` times after ``warmup`` untimed runs."""
    for _ in range(warmup):
        subprocess.run(list(argv), check=True, capture_output=True, env=env)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(list(argv), check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - t0)
    return times


class MemorySampler:
    """Peak anonymous memory (RssAnon) of this process, sampled every ``interval`` seconds.

    Peak RSS (VmHWM) also counts the LMDB file's pages mapped in by reading it (page cache, not heap);
    RssAnon is the process's own memory.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_anon_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def status_kib(field_name: str) -> int:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith(field_name + ":"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_anon_kib = max(self.peak_anon_kib, self.status_kib("RssAnon"))
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self.peak_anon_kib = self.status_kib("RssAnon")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_anon_kib = max(self.peak_anon_kib, self.status_kib("RssAnon"))


# --- the run ---------------------------------------------------------------------------------------


@dataclass
class Context:
    """What every section gets: the run mode, the temporary root and how to start subprocesses."""

    quick: bool
    tmp: TempRoot
    corpus: Corpus
    root: Path  # the tree whose kitaru and kitaru_store are measured
    env: dict[str, str]  # environment for subprocesses (PYTHONPATH when --src is given)
    env_cached: dict[str, str]  # the same, with bytecode caching on (start-up measurements)
    cli: list[str]  # argv prefix that runs kitaru-store
    scale_executions: int = 100_000
    scale_objects: int = 1_000_000
    scale_store: str | None = None  # --scale-store: a generated store kept between profile runs
