"""The reliability harness: run workloads in child processes, SIGKILL them, verify the store.

Shared by the bounded CI tests (tests/reliability/test_*.py) and the soak run (bench/soak.py,
which puts this directory on sys.path). Everything here reports violations as strings instead
of asserting, so that the soak can go on counting; the tests assert that the list is empty.

A verification (:func:`verify_store`) checks, on a store nobody else has open:

* the store opens (a fresh LMDB open: stale reader slots are cleared, no stale lock blocks it);
* ``fsck()`` is clean;
* every execution a journal promised (the child wrote the line after the run *returned*) has the
  promised status, every value it promised resolves by name to the promised object id and loads
  with bytes that hash to it, its checkpoint outputs and its result likewise;
* every other execution (killed mid-run) shows as ``failed`` (its owner is gone) through
  KitaruClient, unless it got to its end before the kill, and every artifact and checkpoint
  output it lists loads.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORKLOADS = HERE / "workloads.py"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

READY_TIMEOUT = 60.0  # generous: other test sessions share the machine


@dataclasses.dataclass
class Figures:
    """What a run proved, for the tests' asserts and the soak's summary table."""

    kills: int = 0
    kills_by_mode: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    kills_by_phase: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    verifications: int = 0
    executions_verified: int = 0  # journaled executions found complete, with every value
    incomplete_verified: int = 0  # executions cut short by a kill, shown as such, artifacts loading
    values_checked: int = 0  # values loaded and hashed against their promised / recorded id
    bytes_checked: int = 0
    saves_written: int = 0  # concurrency: kitaru.save() calls committed by the writers
    saves_checked: int = 0
    reader_reads: int = 0
    gc_runs: int = 0
    map_growths: int = 0  # map doublings done by the writers (tiny-map runs)
    corruptions: int = 0  # bytes flipped in stored records and manifests
    corruptions_detected: int = 0  # ... that load refused with an error naming the object
    corruptions_harmless: int = 0  # ... after which load still returned the exact bytes
    fsck_reported: int = 0  # ... that fsck listed
    repairs: int = 0  # corrupt objects repaired by a later save of the same content
    executions_promised: int = 0  # distinct executions the journals promised
    terms: int = 0  # kill-retry: SIGTERMs sent to running flows
    retries: int = 0  # kill-retry: retry processes started
    retry_chains: int = 0  # kill-retry: executions interrupted, retried, checked complete
    committed_checked: int = 0  # kill-retry: committed checkpoints held to "never runs again"
    signals_early: int = 0  # kill-retry: signals before the execution existed
    signals_after_commit: int = 0  # kill-retry: signals after the execution's last commit
    signals_late: int = 0  # kill-retry: the process had exited already (not counted as kills)
    signals_before_claim: int = 0  # kill-retry: a retry signalled before it took the execution over
    known_issues: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    violations: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def merge(self, other: Figures) -> None:
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, collections.Counter):
                mine.update(theirs)
            elif isinstance(mine, list):
                mine.extend(theirs)
            else:
                setattr(self, f.name, mine + theirs)


# --- child processes -------------------------------------------------------------------------


def child_env(store: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["KITARU_STORE"] = str(store)
    env.pop("KITARU_ALLOW_PICKLE", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra or {})
    return env


class Child:
    """One workload process. Its stdout is drained by a thread, so a chatty child never blocks."""

    def __init__(
        self,
        mode: str,
        store: Path,
        journal: Path,
        *,
        seed: int,
        phase: Path | None = None,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.mode = mode
        self.phase = phase
        cmd = [sys.executable, str(WORKLOADS), mode, "--store", str(store), "--journal", str(journal)]
        cmd += ["--seed", str(seed), *extra_args]
        if phase is not None:
            cmd += ["--phase", str(phase)]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(store, env),
            cwd=str(ROOT),
            text=True,
        )
        self.lines: list[str] = []
        self.err: list[str] = []
        self._ready = threading.Event()
        self._threads = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, self.lines, True), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, self.err, False), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _drain(self, stream: Any, sink: list[str], watch: bool) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))
            if watch and line.strip() == "ready":
                self._ready.set()
        if watch:
            self._ready.set()  # EOF: the child is gone, whatever it printed

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> bool:
        return self._ready.wait(timeout) and self.proc.poll() is None

    def wait_line(self, text: str, timeout: float = READY_TIMEOUT) -> bool:
        """Wait until the child printed ``text`` on a line of its own (and still runs)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.lines:
                return self.proc.poll() is None
            if self.proc.poll() is not None:
                return False
            time.sleep(0.01)
        return False

    def kill(self) -> bool:
        """SIGKILL; True if it was still running (a real kill), False if it had exited already."""
        if self.proc.poll() is not None:
            return False
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        return self.proc.returncode == -signal.SIGKILL

    def finish(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def phase_now(self) -> str:
        if self.phase is None:
            return "?"
        try:
            return self.phase.read_bytes().decode(errors="replace").strip() or "start"
        except OSError:
            return "start"

    def join_output(self) -> None:
        for t in self._threads:
            t.join(10)

    def last_json(self) -> dict[str, Any] | None:
        self.join_output()
        for line in reversed(self.lines):
            with contextlib.suppress(ValueError):
                out = json.loads(line)
                if isinstance(out, dict):
                    return out
        return None

    def describe(self) -> str:
        self.join_output()
        tail = "\n".join(self.err[-40:])
        return f"{self.mode} child pid {self.proc.pid} exited {self.proc.returncode}:\n{tail}"


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    """Every child started in the block is killed when it ends, whatever happens."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for c in started:
            if c.proc.poll() is None:
                c.proc.kill()
            with contextlib.suppress(Exception):
                c.proc.wait(30)
            c.join_output()


# --- the journal and the verifier -------------------------------------------------------------


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Complete lines only: a line cut short by a kill was never promised."""
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().split(b"\n"):
        with contextlib.suppress(ValueError):
            if line.strip():
                out.append(json.loads(line))
    return out


def release(store: Path) -> None:
    """Close this process's environment on ``store`` (compaction needs the store to itself)."""
    from kitaru_store.backend import close_backend

    close_backend(str(store / "db"))


def _load_checked(repo: Any, object_id: str, figures: Figures) -> None:
    from kitaru_store import hashing

    data = repo.get_bytes(object_id)
    if hashing.hexdigest(data) != object_id:  # get_bytes checks this too; the harness trusts nothing
        raise AssertionError(f"object {object_id} loaded bytes that do not hash to it")
    figures.values_checked += 1
    figures.bytes_checked += len(data)


def verify_store(store: Path, journals: Sequence[Path], figures: Figures, *, gc_after: bool = False) -> None:
    """Check ``store`` against the journals; violations go to ``figures.violations``."""
    from kitaru import KitaruClient
    from kitaru_store import Repository

    violations = figures.violations
    figures.verifications += 1
    try:
        repo = Repository.open(store, create=False)
    except Exception as exc:
        violations.append(f"store does not open: {type(exc).__name__}: {exc}")
        return
    try:
        report = repo.fsck()
        if not report.ok:
            violations.append(f"fsck found {len(report.problems)} problems: {report.problems[:5]}")
        promised: dict[str, dict[str, Any]] = {}
        for journal in journals:
            for rec in read_journal(journal):
                if "known_issue" not in rec:
                    promised[rec["exec_id"]] = rec
        for exec_id, rec in promised.items():
            try:
                manifest = repo.get_execution(exec_id)
                if manifest.status != rec["status"]:
                    raise AssertionError(f"status {manifest.status}, journal says {rec['status']}")
                for name, object_id in rec["values"].items():
                    entry = repo.resolve_name(exec_id, name)
                    if entry.object_id != object_id:
                        raise AssertionError(f"{name} names {entry.object_id}, journal says {object_id}")
                    _load_checked(repo, object_id, figures)
                outputs = {c.invocation_id: c for c in manifest.checkpoints}
                for inv, object_id in rec["outputs"].items():
                    call = outputs.get(inv)
                    if call is None or call.status != "completed" or call.output_object_id != object_id:
                        raise AssertionError(f"checkpoint {inv} is {call}, journal says {object_id}")
                    _load_checked(repo, object_id, figures)
                if rec["result"] is not None:
                    if manifest.result_object_id != rec["result"]:
                        raise AssertionError(f"result {manifest.result_object_id}, journal {rec['result']}")
                    _load_checked(repo, rec["result"], figures)
                figures.executions_verified += 1
            except Exception as exc:
                violations.append(f"journaled execution {exec_id}: {type(exc).__name__}: {exc}")
        client = KitaruClient(store)
        for summary in repo.iter_executions():
            if summary.exec_id in promised:
                continue
            try:
                execution = client.executions.get(summary.exec_id)
                # every process of the round is dead: a run cut short reads failed (Crashed)
                if execution.status not in ("completed", "failed"):
                    raise AssertionError(f"unexpected status {execution.status}")
                for ref in execution.artifacts:
                    _load_checked(repo, ref.object_id, figures)
                    if ref.size < 64 << 10:
                        ref.load()  # and it deserializes
                for call in execution.checkpoints:
                    if call.output_object_id:
                        _load_checked(repo, call.output_object_id, figures)
                figures.incomplete_verified += 1
            except Exception as exc:
                violations.append(f"unjournaled execution {summary.exec_id}: {type(exc).__name__}: {exc}")
        if gc_after:
            # No stale gc lock after a kill, and a gc with no grace keeps every promised value.
            try:
                repo.gc(grace=0)
                for rec in promised.values():
                    for object_id in rec["values"].values():
                        _load_checked(repo, object_id, figures)
            except Exception as exc:
                violations.append(f"gc after the kill: {type(exc).__name__}: {exc}")
    finally:
        release(store)


# --- crash rounds ------------------------------------------------------------------------------

# mode -> the workload processes of one round (all of them are killed)
CRASH_MODES: dict[str, tuple[str, ...]] = {
    "flows": ("flows",),
    "manifest": ("manifest",),
    "gc": ("flows", "gc"),
    "compact": ("compact",),
}


# mode -> phases a targeted kill waits for (in the mode's last process: the gc in "gc" mode)
TARGETS: dict[str, tuple[str, ...]] = {
    "flows": ("hash", "stage", "commit"),
    "manifest": ("commit", "stage"),
    "gc": ("gc-mark", "gc-scan", "gc-sweep"),
    "compact": ("compact-copy", "compact", "gc-sweep"),
}


def _kill_at(child: Child, target: str, timeout: float) -> str:
    """Wait until ``child`` is in phase ``target`` (or ``timeout`` passes); return the phase seen."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and child.proc.poll() is None:
        where = child.phase_now()
        if target in where:
            return where
        time.sleep(0.001)
    return child.phase_now()


def crash_round(
    mode: str,
    store: Path,
    work: Path,
    rng: random.Random,
    figures: Figures,
    *,
    max_delay: float,
    round_no: int,
    target: str | None = None,
) -> None:
    """Start the mode's workloads, SIGKILL each (at a random moment, or in phase ``target``), verify."""
    journals = sorted(work.glob("journal-*.jsonl"))
    with children() as started:
        for n, kind in enumerate(CRASH_MODES[mode]):
            phase = work / f"phase-{round_no}-{n}"
            journal = work / f"journal-{round_no}-{n}.jsonl"
            journals.append(journal)
            started.append(Child(kind, store, journal, seed=rng.getrandbits(31), phase=phase))
        for c in started:
            if not c.wait_ready():
                figures.violations.append(f"round {round_no}: {c.describe()}")
        # The kill points are random, per process: a gc and a writer die at different moments.
        begun = time.monotonic()
        plan: list[tuple[float, Child]] = [(rng.uniform(0.05, max_delay), c) for c in started]
        if target is not None:
            plan[-1] = (-1.0, started[-1])  # first, once it is where the target says
        for delay, c in sorted(plan, key=lambda d: d[0]):
            if delay < 0:  # a random head start, then the next time it enters the phase
                time.sleep(rng.uniform(0.0, max_delay))
                where = _kill_at(c, target or "", timeout=15.0)
            else:
                time.sleep(max(0.0, delay - (time.monotonic() - begun)))
                where = c.phase_now()
            if c.kill():
                figures.kills += 1
                figures.kills_by_mode[mode] += 1
                figures.kills_by_phase[f"{c.mode}:{_phase_bucket(where)}"] += 1
            else:
                figures.violations.append(f"round {round_no}: not killed, it had exited: {c.describe()}")
    verify_store(store, journals, figures, gc_after=(mode == "gc"))


def _phase_bucket(label: str) -> str:
    """Fold the phase stack into a few buckets for the statistics."""
    label = label or "start"
    for key in (
        "compact-copy",
        "compact",
        "gc-sweep",
        "gc-scan",
        "gc-mark",
        "commit",
        "stage",
        "hash",
        "body",
    ):
        if key in label:
            return key
    return label.split(">")[0]


def run_crash(
    mode: str,
    kills: int,
    base: Path,
    *,
    seed: int,
    max_delay: float = 1.2,
    rounds_per_store: int = 25,
    deadline: float | None = None,
    targeted: bool = True,
) -> Figures:
    """At least ``kills`` SIGKILLs of ``mode`` workloads, a fresh store every ``rounds_per_store`` rounds.

    With ``targeted``, every other round kills in a named phase (TARGETS, in turn); the others
    kill at a random moment.
    """
    figures = Figures()
    began = time.monotonic()
    rng = random.Random(seed)
    round_no = 0
    while figures.kills < kills and not figures.violations:
        if deadline is not None and time.monotonic() > deadline:
            figures.violations.append(f"{mode}: deadline reached after {figures.kills} kills")
            break
        epoch = round_no // rounds_per_store
        work = base / f"{mode}-{epoch}"
        work.mkdir(parents=True, exist_ok=True)
        target = None
        if targeted and round_no % 2 == 0:
            target = TARGETS[mode][(round_no // 2) % len(TARGETS[mode])]
        crash_round(
            mode, work / "store", work, rng, figures, max_delay=max_delay, round_no=round_no, target=target
        )
        round_no += 1
    tally_journals(sorted(base.glob(f"{mode}-*/journal-*.jsonl")), figures)
    figures.seconds = time.monotonic() - began
    return figures


def tally_journals(journals: Sequence[Path], figures: Figures) -> None:
    for journal in journals:
        for rec in read_journal(journal):
            if "known_issue" in rec:
                figures.known_issues[rec["known_issue"]] += 1
            else:
                figures.executions_promised += 1


# --- concurrency -------------------------------------------------------------------------------


def run_concurrency(
    store: Path,
    work: Path,
    *,
    writers: int = 4,
    saves: int = 200,
    gc: bool = True,
    reader: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 300.0,
) -> Figures:
    """``writers`` processes x ``saves`` kitaru.save() calls, with a gc loop and a reader alongside."""
    figures = Figures()
    began = time.monotonic()
    stop = work / "stop"
    with contextlib.suppress(FileNotFoundError):
        stop.unlink()
    journals = [work / f"writer-{w}.jsonl" for w in range(writers)]
    with children() as started:
        helpers: list[Child] = []
        if gc:
            helpers.append(
                Child("gc", store, work / "gc.jsonl", seed=0, extra_args=["--stop", str(stop)], env=env)
            )
        if reader:
            helpers.append(
                Child(
                    "reader", store, work / "reader.jsonl", seed=1, extra_args=["--stop", str(stop)], env=env
                )
            )
        started.extend(helpers)
        writer_procs = [
            Child("writer", store, journals[w], seed=w, extra_args=["--saves", str(saves)], env=env)
            for w in range(writers)
        ]
        started.extend(writer_procs)
        deadline = time.monotonic() + timeout
        for c in writer_procs:
            code = c.finish(max(1.0, deadline - time.monotonic()))
            if code != 0:
                figures.violations.append(
                    "writer deadlocked (timeout)" if code is None else f"writer failed: {c.describe()}"
                )
            else:
                figures.map_growths += int((c.last_json() or {}).get("grows", 0))
        stop.write_text("stop")
        for c in helpers:
            code = c.finish(max(5.0, deadline - time.monotonic()))
            if code != 0:
                figures.violations.append(
                    f"{c.mode} did not stop (deadlock?)"
                    if code is None
                    else f"{c.mode} failed: {c.describe()}"
                )
                continue
            out = c.last_json() or {}
            if c.mode == "gc":
                figures.gc_runs += int(out.get("gc_runs", 0))
            else:
                figures.reader_reads += int(out.get("reads", 0))
                if out.get("errors"):
                    figures.violations.append(f"reader saw {out['errors']} bad reads: {out.get('problems')}")
    for journal in journals:
        figures.saves_written += sum(len(rec.get("values", ())) for rec in read_journal(journal))
    tally_journals(journals, figures)
    if figures.saves_written != writers * saves and not figures.violations:
        figures.violations.append(f"{figures.saves_written} saves journaled, expected {writers * saves}")
    before = figures.values_checked
    verify_store(store, journals, figures, gc_after=True)
    figures.saves_checked = figures.values_checked - before
    figures.seconds = time.monotonic() - began
    return figures


# --- corruption --------------------------------------------------------------------------------


def store_snapshot(store: Path) -> dict[str, dict[bytes, bytes]]:
    """Every key and value of every sub-database (to prove that a failure changed nothing)."""
    from kitaru_store import Repository
    from kitaru_store.layout import DATABASES

    repo = Repository.open(store, create=False, readonly=True)
    out: dict[str, dict[bytes, bytes]] = {}
    with repo.kv.read() as rt:
        for name in DATABASES:
            out[name.decode()] = dict(rt.items(name))
    return out


def flip(raw: bytes, rng: random.Random) -> tuple[bytes, int]:
    """``raw`` with one random bit of one random byte flipped (the byte's offset is returned too)."""
    at = rng.randrange(len(raw))
    out = bytearray(raw)
    out[at] ^= 1 << rng.randrange(8)
    return bytes(out), at


@contextlib.contextmanager
def store_env(store: Path) -> Iterator[None]:
    """Point KITARU_STORE at ``store`` for SDK calls made in this process."""
    old = os.environ.get("KITARU_STORE")
    os.environ["KITARU_STORE"] = str(store)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("KITARU_STORE", None)
        else:
            os.environ["KITARU_STORE"] = old


def corruption_values(seed: int) -> dict[str, Any]:
    """One value per record shape: raw and zstd, small, 1 MiB+ in one record, chunked."""
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randrange(3, 30)) for _ in range(50)]

    def text(n: int) -> bytes:
        return b"".join(rng.choices(words, k=n // 15 + 1))[:n]

    return {
        "tiny": b"x",  # raw: below the compression floor
        "text": "hello corruption " * 300,  # zstd
        "data": {"numbers": list(range(300)), "nested": {"k": ["v"] * 20}},
        "mib-random": rng.randbytes((1 << 20) + 10_000),  # one raw record of 1 MiB+
        "mib-text": text((1 << 20) + 20_000),  # one zstd record of 1 MiB+
        "chunked-random": rng.randbytes(3 << 20),  # raw chunks, and an index record
        "chunked-text": text(4 << 20),  # zstd chunks
    }


def build_corruption_store(store: Path, seed: int) -> dict[str, Any]:
    """Run one flow saving every corruption value; the targets of the corruption rounds."""
    import kitaru
    from kitaru_store import Repository, objects, serialization

    values = corruption_values(seed)

    @kitaru.checkpoint
    def keep(items: dict[str, Any]) -> str:
        for name, value in items.items():
            kitaru.save(name, value)
        return "kept"

    @kitaru.flow
    def corruption_target(items: dict[str, Any]) -> str:
        return keep(items).load()

    with store_env(store):
        handle = corruption_target.run(values)
    repo = Repository.open(store)
    targets: dict[str, tuple[str, bytes]] = {}  # name -> (object id, serialized bytes)
    for name, value in values.items():
        data, _ = serialization.serialize(value)
        targets[name] = (repo.resolve_name(handle.exec_id, name).object_id, bytes(data))
    parents: dict[bytes, set[str]] = collections.defaultdict(set)  # record key -> names it serves
    with repo.kv.read() as rt:
        for name, (oid, _) in targets.items():
            key = bytes.fromhex(oid)
            parents[key].add(name)
            record = rt.get(b"objects", key)
            assert record is not None
            for ckey in objects.chunk_keys(record, key):
                parents[ckey].add(name)
    release(store)
    return {"exec_id": handle.exec_id, "targets": targets, "parents": dict(parents), "values": values}


def _set(repo: Any, db: bytes, key: bytes, raw: bytes) -> None:
    repo._backend().update(lambda wt: wt.put(db, key, raw))


@functools.cache
def _repair_flow() -> Any:
    """A flow that saves one value again under its name (made on first use: it imports kitaru)."""
    import kitaru

    @kitaru.checkpoint
    def resave(name: str, value: Any) -> None:
        kitaru.save(name, value)

    @kitaru.flow
    def repair(name: str, value: Any) -> None:
        resave(name, value)

    return repair


def _reads_as_newer_format(raw: bytes, key: bytes) -> bool:
    """Whether a (damaged) record now claims a newer record or chunk index version."""
    from kitaru_store import StoreFormatError, codec, objects

    try:
        kind, payload = codec.decode(raw)
        if kind == codec.KIND_INDEX:
            objects.parse_index(payload, key)
    except StoreFormatError:
        return True
    except Exception:
        return False
    return False


def corrupt_object_round(
    repo: Any, setup: dict[str, Any], rng: random.Random, figures: Figures, *, repair_with_flow: bool
) -> None:
    """Flip one bit of one record (data, chunk or index) and hold every reader to it."""
    from kitaru import KitaruClient
    from kitaru_store import CorruptObjectError, StoreFormatError

    key = rng.choice(sorted(setup["parents"]))
    with repo.kv.read() as rt:
        raw = rt.get(b"objects", key)
    assert raw is not None
    if rng.random() < 0.2:  # the 3-byte header deserves more than its share of flips
        flipped = bytearray(raw)
        at = rng.randrange(3)
        flipped[at] ^= 1 << rng.randrange(8)
        damaged = bytes(flipped)
    else:
        damaged, at = flip(raw, rng)
    _set(repo, b"objects", key, damaged)
    figures.corruptions += 1
    where = f"record {key.hex()[:12]} byte {at}"
    detected = False
    client = KitaruClient(repo.root)
    for name in sorted(setup["parents"][key]):
        oid, original = setup["targets"][name]
        for how in ("get_bytes", "client"):
            try:
                if how == "get_bytes":
                    data = repo.get_bytes(oid)
                else:
                    client.executions.get(setup["exec_id"]).artifact(name).load()
                    data = repo.get_bytes(oid)
            except (CorruptObjectError, StoreFormatError) as exc:
                if exc.object_id != oid:
                    figures.violations.append(
                        f"{where}: {how} of {name} raised {exc!r} naming {exc.object_id}"
                    )
                detected = True
                continue
            except Exception as exc:
                figures.violations.append(f"{where}: {how} of {name} raised {type(exc).__name__}: {exc}")
                continue
            if bytes(data) != original:
                figures.violations.append(f"{where}: {how} of {name} RETURNED WRONG DATA")
    report = repo.fsck()
    listed = {p.object_id for p in report.problems}
    if detected:
        figures.corruptions_detected += 1
        if key.hex() in listed:
            figures.fsck_reported += 1
        else:
            figures.violations.append(f"{where}: load refused it, fsck did not list it: {report.problems}")
    else:
        figures.corruptions_harmless += 1
        if not report.ok:
            figures.violations.append(f"{where}: harmless to load, yet fsck says {report.problems}")
    # A later save of the same content repairs the record instead of deduplicating against it.
    newer_version = _reads_as_newer_format(damaged, key)
    for name in sorted(setup["parents"][key]):
        oid, original = setup["targets"][name]
        try:
            if repair_with_flow:
                with store_env(repo.root):
                    _repair_flow().run(name, setup["values"][name]).wait()  # raises from the cause
            else:
                repo.put_bytes(original)
        except Exception as exc:
            if isinstance(exc.__cause__, StoreFormatError):
                exc = exc.__cause__  # a failed repair flow: what the save raised
            if not isinstance(exc, StoreFormatError):
                figures.violations.append(f"{where}: re-save of {name} failed: {type(exc).__name__}: {exc}")
                continue
            if not newer_version:
                figures.violations.append(f"{where}: re-save of {name} refused with a format error")
            continue  # a record of a "newer" version is never overwritten: by design
    if newer_version:
        _set(repo, b"objects", key, raw)  # put back by hand what no save may overwrite
    elif detected:
        figures.repairs += 1
    for name in sorted(setup["parents"][key]):
        oid, original = setup["targets"][name]
        try:
            if bytes(repo.get_bytes(oid)) != original:
                figures.violations.append(f"{where}: {name} wrong after the repair")
        except Exception as exc:
            figures.violations.append(f"{where}: {name} still unreadable after the repair: {exc!r}")
    with repo.kv.read() as rt:
        if rt.get(b"objects", key) is None:
            figures.violations.append(f"{where}: the record vanished")


def corrupt_manifest_round(repo: Any, setup: dict[str, Any], rng: random.Random, figures: Figures) -> None:
    """Flip one bit of the execution's manifest: refused, with the execution named, or harmless."""
    from kitaru import KitaruClient
    from kitaru_store import CorruptManifestError

    exec_id = setup["exec_id"]
    key = bytes.fromhex(exec_id)
    with repo.kv.read() as rt:
        raw = rt.get(b"manifests", key)
    assert raw is not None
    original = repo.get_execution(exec_id)
    damaged, at = flip(raw, rng)
    _set(repo, b"manifests", key, damaged)
    figures.corruptions += 1
    where = f"manifest {exec_id[:12]} byte {at}/{len(raw)}"
    detected = harmless = False
    client = KitaruClient(repo.root)
    for how in ("get_execution", "client", "resolve_name"):
        try:
            if how == "get_execution":
                got = repo.get_execution(exec_id)
                if got != original:
                    figures.violations.append(f"{where}: get_execution RETURNED A DIFFERENT MANIFEST")
                harmless = True
            elif how == "client":
                client.executions.get(exec_id).artifact("tiny").load()
            else:
                repo.resolve_name(exec_id, "text")
        except CorruptManifestError as exc:
            if exc.exec_id != exec_id:
                figures.violations.append(f"{where}: {how} raised {exc!r} naming {exc.exec_id}")
            detected = True
        except Exception as exc:
            figures.violations.append(f"{where}: {how} raised {type(exc).__name__}: {exc}")
    if detected and harmless:
        figures.violations.append(f"{where}: read both as damaged and as intact")
    report = repo.fsck()
    if detected:
        figures.corruptions_detected += 1
        if any(p.kind == "bad-manifest" and p.exec_id == exec_id for p in report.problems):
            figures.fsck_reported += 1
        else:
            figures.violations.append(f"{where}: refused to load, fsck did not list it: {report.problems}")
        if rng.random() < 0.25:  # gc never sweeps on a root set it could not read
            with repo.kv.read() as rt:
                before = rt.count(b"objects")
            try:
                repo.gc(grace=0)
                figures.violations.append(f"{where}: gc ran on an unreadable manifest")
            except CorruptManifestError:
                pass
            with repo.kv.read() as rt:
                if rt.count(b"objects") != before:
                    figures.violations.append(f"{where}: gc deleted objects")
    else:
        figures.corruptions_harmless += 1
    _set(repo, b"manifests", key, raw)  # manifests are not content-addressed: put back by hand


def run_corruption(store: Path, rounds: int, *, seed: int) -> Figures:
    """``rounds`` single-bit flips (four in five in object records, one in five in the manifest)."""
    from kitaru_store import Repository

    figures = Figures()
    began = time.monotonic()
    rng = random.Random(seed)
    setup = build_corruption_store(store, seed)
    repo = Repository.open(store)
    try:
        if not repo.fsck().ok:
            figures.violations.append("the corruption store is not clean before the first flip")
        for n in range(rounds):
            if rng.random() < 0.2:
                corrupt_manifest_round(repo, setup, rng, figures)
            else:
                corrupt_object_round(repo, setup, rng, figures, repair_with_flow=n % 4 == 0)
        report = repo.fsck()
        if not report.ok:
            figures.violations.append(f"the store is not clean after the rounds: {report.problems[:5]}")
    finally:
        release(store)
    figures.seconds = time.monotonic() - began
    return figures
