"""Child-process workloads of the reliability harness (run as a script, killed with SIGKILL).

    python workloads.py MODE --store PATH --journal FILE --seed N [--phase FILE] [...]

Modes:

* ``flows``: kitaru flows whose checkpoints save small values, 1 MiB+ values (one record) and
  3-5 MiB values (chunked); one flow in ten fails on purpose in its last checkpoint.
* ``manifest``: flows of many small checkpoints (the manifest is rewritten at every one).
* ``gc``: ``gc(grace=0)`` in a loop.
* ``compact``: a flow, then garbage, then ``gc(grace=0, compact=True)``, in a loop (run alone:
  compaction needs the store to itself).
* ``writer``: the concurrency writer: ``--saves`` kitaru.save() calls in flows, then exit.
* ``reader``: reads random executions and checks every value against what its name says it is.
* ``flowrun``: one run of retry_flows.killable, its plan made from ``--seed`` (kill_retry.py).
* ``retry``: ``KitaruClient().executions.retry(--exec)`` from a new process that imports no flow
  (the flow is found by the module its execution recorded), with ``--via flow`` the flow's own
  ``retry``, with ``--via cli`` the command ``kitaru-store retry EXEC --json``.

A run that *returns* (completed, or failed on purpose) appends one JSON line to the journal and
fsyncs it before the next run starts: that line is the promise the verifier holds the store to.
The child prints ``ready`` once the store is open. ``--phase`` names a file where the child keeps
the name of what it is doing (hash, commit, gc-mark, compact-copy, ...), for the kill statistics.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable
from functools import cache
from typing import Any

import kitaru
from kitaru_store import Repository, hashing, serialization
from kitaru_store.errors import ObjectNotFoundError

MIB = 1 << 20
# A value this size is one record (below objects.CHUNK_THRESHOLD, 1 MiB + 64 KiB) ...
ONE_RECORD = MIB + 24_000
# ... and these are chunked: 3 MiB up to 5 MiB.
CHUNKED_MIN, CHUNKED_SPAN = 3 * MIB, 2 * MIB


# --- values: a pure function of (kind, seed), so that any process can recompute them ---------


@cache
def _pool(kind: str, k: int) -> bytes:
    """A few base buffers per kind, so that big values share most chunks (bounded store growth)."""
    rng = random.Random((1 if kind == "mib" else 2) * 1000 + k)
    size = ONE_RECORD if kind == "mib" else CHUNKED_MIN + CHUNKED_SPAN
    if k % 2:
        return rng.randbytes(size)  # incompressible
    words = [rng.randbytes(rng.randrange(4, 40)) for _ in range(64)]
    return b"".join(rng.choices(words, k=size // 20 + 1))[:size].ljust(size, b"\0")  # compressible


def make_value(kind: str, seed: int) -> Any:
    if kind == "small":
        rng = random.Random(seed)
        return {"seed": seed, "text": "v" * rng.randrange(0, 3000), "n": rng.random()}
    if kind == "mib":
        return _pool("mib", seed % 12)
    if kind == "chunked":
        base = _pool("chunked", seed % 4)
        size = CHUNKED_MIN + (seed * 7919) % CHUNKED_SPAN
        data = bytearray(base[:size])
        at = (seed * 104729) % (size - 16)
        data[at : at + 16] = seed.to_bytes(16, "big")  # one edit: a new chunk or two, the rest dedup
        return bytes(data)
    raise ValueError(kind)


def object_id_of(value: Any) -> str:
    """The object id kitaru must store ``value`` under, computed without the store."""
    data, _ = serialization.serialize(value)
    return hashing.hexdigest(data)


# --- the phase file: what the process is doing when it is killed --------------------------------


class Phases:
    def __init__(self, path: str | None) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600) if path else None
        self.stack: list[str] = []

    def _show(self) -> None:
        if self.fd is not None:
            label = ">".join(self.stack[-2:]) or "idle"
            os.pwrite(self.fd, label.encode().ljust(48), 0)

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        original: Callable[..., Any] = getattr(owner, attr)
        phases = self

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            phases.stack.append(label)
            phases._show()
            try:
                return original(*args, **kwargs)
            finally:
                phases.stack.pop()
                phases._show()

        setattr(owner, attr, wrapper)

    def install(self) -> None:
        if self.fd is None:
            return
        from kitaru_store import backend, gc, objects

        self.wrap(objects, "prepare", "hash")
        self.wrap(objects, "stage", "stage")
        self.wrap(backend.Backend, "update", "commit")
        self.wrap(gc, "mark", "gc-mark")
        self.wrap(gc, "_candidates", "gc-scan")
        self.wrap(gc, "_sweep", "gc-sweep")
        self.wrap(gc, "compact_store", "compact")
        self.wrap(backend.Backend, "copy_compacted", "compact-copy")
        self._show()

    def set(self, label: str) -> None:
        self.stack[:] = [label]
        self._show()


# --- flows -----------------------------------------------------------------------------------


CURRENT: dict[str, str | None] = {"exec_id": None}  # the execution the last flow body ran in


class PlannedFailure(Exception):
    """Raised on purpose by a checkpoint, to exercise the failure path."""


@kitaru.checkpoint
def step(spec: dict[str, Any]) -> Any:
    for name, kind, seed in spec["saves"]:
        kitaru.save(name, make_value(kind, seed))
    if spec.get("fail"):
        raise PlannedFailure(f"planned failure in {spec['tag']}")
    return make_value("small", spec["out"])


@kitaru.flow
def work(plan: list[dict[str, Any]]) -> Any:
    CURRENT["exec_id"] = kitaru.current_execution_id()
    for i, spec in enumerate(plan):
        step.with_id(f"step-{i}")(spec)
    return {"steps": len(plan), "tag": plan[0]["tag"]}  # a plain value: stored, then referenced


def make_plan(rng: random.Random, mode: str, tag: str) -> list[dict[str, Any]]:
    plan: list[dict[str, Any]] = []
    if mode == "manifest":
        steps = rng.randrange(20, 41)
        for i in range(steps):
            saves = [(f"{tag}-s{i}-{j}", "small", rng.getrandbits(40)) for j in range(2)]
            plan.append({"tag": tag, "saves": saves, "out": rng.getrandbits(40)})
        return plan
    steps = rng.randrange(2, 4)
    for i in range(steps):
        saves = [(f"{tag}-s{i}-{j}", "small", rng.getrandbits(40)) for j in range(rng.randrange(1, 4))]
        roll = rng.random()
        if roll < 0.25:
            saves.append((f"{tag}-mib{i}", "mib", rng.getrandbits(40)))
        elif roll < 0.55:
            saves.append((f"{tag}-big{i}", "chunked", rng.getrandbits(40)))
        plan.append({"tag": tag, "saves": saves, "out": rng.getrandbits(40)})
    if rng.random() < 0.1:
        plan[-1]["fail"] = True
    return plan


def expected(plan: list[dict[str, Any]]) -> dict[str, Any]:
    """What the journal promises for a run of ``plan`` that returned."""
    failed = any(spec.get("fail") for spec in plan)
    values = {
        name: object_id_of(make_value(kind, seed)) for spec in plan for name, kind, seed in spec["saves"]
    }
    outputs = {
        f"step-{i}": object_id_of(make_value("small", spec["out"]))
        for i, spec in enumerate(plan)
        if not spec.get("fail")
    }
    result = None if failed else object_id_of({"steps": len(plan), "tag": plan[0]["tag"]})
    return {
        "status": "failed" if failed else "completed",
        "values": values,
        "outputs": outputs,
        "result": result,
    }


def known_result_swept(journal: Journal, promise: dict[str, Any], mode: str) -> None:
    """Known issue (kitaru/runtime.py, _drive): a flow's plain return value is stored in one
    transaction and named by the execution in the next; a gc with grace=0 in between sweeps it,
    and run() raises ObjectNotFoundError although the body finished. Every checkpoint committed,
    so the journal still promises their values, with the status the execution is left in."""
    journal.write({"known_issue": "result-swept", "exec_id": CURRENT["exec_id"], "mode": mode})
    journal.write(
        {**promise, "exec_id": CURRENT["exec_id"], "status": "running", "result": None, "mode": mode}
    )


class Journal:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, record: dict[str, Any]) -> None:
        os.write(self.fd, (json.dumps(record, sort_keys=True) + "\n").encode())
        os.fsync(self.fd)


def run_one(rng: random.Random, mode: str, journal: Journal, phases: Phases, n: int) -> None:
    tag = f"{mode}-{os.getpid()}-{n}"
    phases.set("plan")
    plan = make_plan(rng, mode, tag)
    promise = expected(plan)
    phases.set("flow")
    try:
        handle = work.run(plan)
    except ObjectNotFoundError:
        if promise["status"] != "completed":
            raise
        known_result_swept(journal, promise, mode)
        phases.set("idle")
        return
    phases.set("journal")
    if handle.status != promise["status"]:
        raise AssertionError(f"flow {handle.exec_id} ended {handle.status}, expected {promise['status']}")
    journal.write({"exec_id": handle.exec_id, "mode": mode, "pid": os.getpid(), **promise})
    phases.set("idle")


# --- modes -----------------------------------------------------------------------------------


def mode_flows(args: argparse.Namespace, repo: Repository, journal: Journal, phases: Phases) -> None:
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.seconds
    n = 0
    while time.monotonic() < deadline and (args.iterations <= 0 or n < args.iterations):
        run_one(rng, args.mode, journal, phases, n)
        n += 1


def mode_gc(args: argparse.Namespace, repo: Repository, journal: Journal, phases: Phases) -> None:
    deadline = time.monotonic() + args.seconds
    runs = 0
    while time.monotonic() < deadline and (args.iterations <= 0 or runs < args.iterations):
        phases.set("gc")
        repo.gc(grace=0)
        runs += 1
        phases.set("idle")
        if args.stop and os.path.exists(args.stop):
            break
        time.sleep(0.005)
    print(json.dumps({"gc_runs": runs}), flush=True)


def mode_compact(args: argparse.Namespace, repo: Repository, journal: Journal, phases: Phases) -> None:
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.seconds
    n = 0
    while time.monotonic() < deadline and (args.iterations <= 0 or n < args.iterations):
        run_one(rng, "flows", journal, phases, n)
        phases.set("garbage")
        with repo.writer() as w:
            for _ in range(6):
                w.put_bytes(rng.randbytes(rng.randrange(100_000, 900_000)))
        phases.set("gc")
        report = repo.gc(grace=0, compact=True)
        if not report.compacted:
            raise AssertionError(f"compaction did not run alone: {report.compact_error}")
        phases.set("idle")
        n += 1


def save_value(wid: int, i: int) -> Any:
    """The value the concurrency writer ``wid`` saves as its ``i``-th save (any reader can rebuild it)."""
    if i % 10 == 0:
        return f"shared-{i % 50}"  # the same in every writer: deduplicated across processes
    if i % 25 == 7:
        return random.Random(wid * 1_000_003 + i).randbytes(150_000)  # compressed? no: random
    return {"w": wid, "i": i, "pad": "p" * ((wid * 31 + i * 17) % 700)}


def parse_save_name(name: str) -> tuple[int, int] | None:
    if not name.startswith("w") or "-s" not in name:
        return None
    wid, i = name[1:].split("-s", 1)
    return int(wid), int(i)


@kitaru.checkpoint
def save_batch(wid: int, first: int, count: int) -> int:
    for i in range(first, first + count):
        kitaru.save(f"w{wid}-s{i}", save_value(wid, i))
    return first + count


@kitaru.flow
def saver(wid: int, first: int, count: int, per_checkpoint: int) -> int:
    CURRENT["exec_id"] = kitaru.current_execution_id()
    for start in range(first, first + count, per_checkpoint):
        save_batch(wid, start, min(per_checkpoint, first + count - start))
    return count


def mode_writer(args: argparse.Namespace, repo: Repository, journal: Journal, phases: Phases) -> None:
    from kitaru_store import backend

    grows = [0]
    grow = backend.Backend._grow

    def counted(self: Any) -> None:
        grows[0] += 1
        grow(self)

    backend.Backend._grow = counted  # type: ignore[method-assign]
    wid = args.seed
    per_flow, per_checkpoint = 50, 10
    rng = random.Random(wid)
    for first in range(0, args.saves, per_flow):
        count = min(per_flow, args.saves - first)
        values = {f"w{wid}-s{i}": object_id_of(save_value(wid, i)) for i in range(first, first + count)}
        promise = {"status": "completed", "values": values, "outputs": {}, "result": object_id_of(count)}
        try:
            handle = saver.run(wid, first, count, per_checkpoint)
        except ObjectNotFoundError:
            known_result_swept(journal, promise, "writer")
            continue
        if handle.status != "completed":
            manifest = repo.get_execution(handle.exec_id)
            print(
                f"writer flow {handle.exec_id}: returned {handle._status}, stored {manifest.status}:"
                f" {manifest.failure}",
                file=sys.stderr,
                flush=True,
            )
            handle.wait()  # raises FlowExecutionError, from what failed the flow
        journal.write({"exec_id": handle.exec_id, "mode": "writer", **promise})
        if rng.random() < 0.5:
            repo.put_value(f"garbage-{wid}-{first}-{rng.random()}")  # unreferenced: gc removes it
    print(json.dumps({"grows": grows[0], "map_size": repo._backend().stat()["map_size"]}), flush=True)


def mode_reader(args: argparse.Namespace, repo: Repository, journal: Journal, phases: Phases) -> None:
    """Read while others write and collect: every value must be exactly what its name says."""
    rng = random.Random(args.seed)
    reads = executions = errors = 0
    problems: list[str] = []
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline and not (args.stop and os.path.exists(args.stop)):
        summaries = repo.list_executions(limit=200)
        if not summaries:
            time.sleep(0.02)
            continue
        for s in rng.sample(summaries, min(5, len(summaries))):
            manifest = repo.get_execution(s.exec_id)
            executions += 1
            for entry in manifest.entries:
                parsed = parse_save_name(entry.name)
                try:
                    value = repo.get_value(entry.object_id)
                except Exception as exc:  # any failure to read a committed entry is a violation
                    errors += 1
                    problems.append(f"{s.exec_id} {entry.name}: {type(exc).__name__}: {exc}")
                    continue
                reads += 1
                if parsed is not None and value != save_value(*parsed):
                    errors += 1
                    problems.append(f"{s.exec_id} {entry.name}: wrong value")
        time.sleep(0.005)
    print(json.dumps({"reads": reads, "executions": executions, "errors": errors, "problems": problems[:20]}))


def mode_hold(args: argparse.Namespace, repo: Repository, journal: Journal, phases: Phases) -> None:
    """Get into ``--what`` (gc, compact, reader, writer), print ``holding`` and stay there.

    gc: inside a gc, holding gc.lock. compact: inside a compaction, holding store.lock exclusively
    with half a copy written. reader: inside a read transaction (an LMDB reader slot). writer:
    inside a write transaction (LMDB's writer mutex) with uncommitted changes. none: just exit.
    """
    from kitaru_store import backend

    def hold(*_: Any) -> None:
        print("holding", flush=True)
        time.sleep(args.seconds)
        raise SystemExit("held too long")

    if args.what == "gc":
        repo.gc(grace=0, progress=hold)
    elif args.what == "compact":

        def half_copy(self: Any, dest_dir: str) -> None:
            os.makedirs(dest_dir, mode=0o700, exist_ok=True)
            with open(os.path.join(dest_dir, "data.mdb"), "wb") as fh:
                fh.write(b"\0" * 65536)  # a copy cut short
            hold()

        backend.Backend.copy_compacted = half_copy  # type: ignore[method-assign]
        report = repo.gc(grace=0, compact=True)
        raise SystemExit(f"compaction did not start: {report.compact_error}")
    elif args.what == "reader":
        with repo.kv.read() as rt:
            rt.count(b"objects")
            hold()
    elif args.what == "writer":

        def txn(wt: Any) -> None:
            wt.put(b"refs", b"uncommitted", b"")
            hold()

        repo._backend().update(txn)


def mode_flowrun(args: argparse.Namespace, repo: Repository, journal: Journal, phases: Phases) -> None:
    import retry_flows

    _watch_bodies(phases)
    plan = retry_flows.make_plan(args.seed)
    phases.set("flow")
    handle = retry_flows.killable.run(plan)
    print(json.dumps({"exec_id": handle.exec_id, "status": handle.status}), flush=True)


def mode_retry(args: argparse.Namespace, repo: Repository, journal: Journal, phases: Phases) -> None:
    from kitaru import KitaruClient

    if args.via == "flow":  # the flow's own method, its checkpoint bodies in the phase file
        import retry_flows

        _watch_bodies(phases)
        phases.set("flow")
        handle = retry_flows.killable.retry(args.exec)
    elif args.via == "cli":  # kitaru-store retry EXEC --json, in this process
        from kitaru_store.cli.app import main as cli_main

        phases.set("flow")
        try:
            cli_main(["retry", args.exec, "--json"])
            code: Any = 0
        except SystemExit as exc:
            code = exc.code
        status = KitaruClient().executions.get(args.exec).status
        print(json.dumps({"exec_id": args.exec, "status": status, "exit": code}), flush=True)
        if code:
            raise SystemExit(code)
        return
    else:  # the client, in a process that imported no flow: found by the module it recorded
        phases.set("flow")
        handle = KitaruClient().executions.retry(args.exec)
    print(json.dumps({"exec_id": handle.exec_id, "status": handle.status}), flush=True)


def _watch_bodies(phases: Phases) -> None:
    """Show "body" in the phase file while a checkpoint function of retry_flows runs."""
    import retry_flows

    for cp in (retry_flows.stage, retry_flows.part, retry_flows.combine):
        phases.wrap(cp, "fn", "body")


MODES = {
    "flows": mode_flows,
    "manifest": mode_flows,
    "gc": mode_gc,
    "compact": mode_compact,
    "writer": mode_writer,
    "reader": mode_reader,
    "hold": mode_hold,
    "flowrun": mode_flowrun,
    "retry": mode_retry,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=sorted(MODES))
    p.add_argument("--store", required=True)
    p.add_argument("--journal", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--phase")
    p.add_argument("--seconds", type=float, default=120.0)  # a safety net: the parent kills first
    p.add_argument("--iterations", type=int, default=0)
    p.add_argument("--saves", type=int, default=0)
    p.add_argument("--stop", help="a file whose existence ends the gc and reader loops")
    p.add_argument("--what", default="none", help="hold mode: gc, compact, reader, writer or none")
    p.add_argument("--exec", help="retry mode: the execution to retry")
    p.add_argument("--via", choices=("client", "flow", "cli"), default="client", help="retry mode: how")
    args = p.parse_args(argv)
    os.environ["KITARU_STORE"] = args.store
    phases = Phases(args.phase)
    phases.install()
    if args.mode == "flowrun" or args.via == "flow":
        import retry_flows  # noqa: F401  (imported before "ready": the kill clock starts there)
    repo = Repository.open(args.store)
    journal = Journal(args.journal)
    print("ready", flush=True)
    MODES[args.mode](args, repo, journal, phases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
