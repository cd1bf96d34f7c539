"""Kill a flow at random moments, retry it from a new process each time, hold it to the end result.

Shared by test_reliability_kill_retry.py (bounded, CI) and bench/soak.py (``--flow-kills``).
One *chain* is one execution of retry_flows.killable (sequential checkpoints with saves of every
size, a ``.map`` or ``.submit`` fan-out, a combining checkpoint):

1. a ``flowrun`` child starts it; the harness sends it SIGKILL (every ``term_every``-th signal
   SIGTERM) at a random moment or, every other time, as soon as it is in a named phase (a
   checkpoint body, hashing, staging, a commit);
2. once the process is gone, the harness reads the execution: a SIGKILLed run must read
   ``failed`` with a failure of type ``Crashed``, a SIGTERMed one ``cancelled`` (the process exits
   by the signal, 128+15 for a shell), or, for a retry signalled before it took the execution
   over, exactly what it read before; the checkpoints it lists as completed are *committed*;
3. a ``retry`` child (a new process: the client, the flow's own ``retry`` or ``kitaru-store
   retry``) continues it; in half of the chains it is interrupted too (up to three signals per
   chain) and retried again, until a retry runs to its end;
4. the last retry must end ``completed`` with the result, every save and every checkpoint output
   of an uninterrupted run (object ids computed without the store, retry_flows.expected), and
   the side log the checkpoint bodies append to (fsynced, one line per body run) must show that no
   process after a kill ran a checkpoint that had committed before it.

The first chain of each store also runs once uninterrupted (which times the flow for the random
moments) and must store exactly the expected objects too. Every ``verify_every`` chains and at
the end, harness.verify_store holds the whole store to the journal of finished chains (the store
opens, fsck is clean, every value loads to its promised id).
Violations are strings with the harness seed and chain number, which reproduce the chain.
"""

from __future__ import annotations

import dataclasses
import json
import random
import signal
import time
from pathlib import Path
from typing import Any

import retry_flows
from harness import Child, Figures, _kill_at, _phase_bucket, children, read_journal, release, verify_store

from kitaru.replay import REUSABLE

# phases a targeted signal waits for (workloads.Phases labels)
TARGETS = ("body", "commit", "stage", "hash")
STOP_TIMEOUT = 60.0  # a SIGTERMed run stops at its next safe point: a checkpoint may have to end


@dataclasses.dataclass
class Chain:
    """One execution, from its first run through every retry."""

    number: int
    seed: int  # the plan's seed (retry_flows.make_plan)
    work: Path
    store: Path
    where: str  # "seed S chain N plan P": what reproduces it
    exec_id: str | None = None
    committed: set[str] = dataclasses.field(default_factory=set)  # at the last interruption
    status: str | None = None  # as read after the last interruption
    failure: tuple[str, str] | None = None  # its failure type and message (names the process)
    side_log: Path = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.side_log = self.work / f"side-{self.number}.log"

    def env(self) -> dict[str, str]:
        return {retry_flows.SIDE_LOG_ENV: str(self.side_log)}


def _execution_ids(store: Path) -> set[str]:
    from kitaru_store import Repository

    if not (store / "db").exists():
        return set()
    repo = Repository.open(store, create=False)
    try:
        return {s.exec_id for s in repo.iter_executions()}
    finally:
        release(store)


def _state(store: Path, exec_id: str) -> tuple[str, tuple[str, str] | None, set[str]]:
    """(status as the client shows it, failure type and message, the committed invocation ids)."""
    from kitaru import KitaruClient

    try:
        execution = KitaruClient(store).executions.get(exec_id)
        failure = (execution.failure.type, execution.failure.message) if execution.failure else None
        done = {c.invocation_id for c in execution.checkpoints if c.status in REUSABLE and c.output_object_id}
        return execution.status, failure, done
    finally:
        release(store)


def _side_runs(chain: Chain) -> list[dict[str, Any]]:
    return [line for line in read_journal(chain.side_log) if line.get("exec") == chain.exec_id]


def _signal(
    child: Child,
    sig: signal.Signals,
    rng: random.Random,
    figures: Figures,
    *,
    span: float,
    target: str | None,
) -> tuple[bool, str]:
    """Send ``sig`` at a random moment within ``span`` s (or in phase ``target``); wait for the end.

    Returns (whether the signal hit a running process, the phase it was in)."""
    if target is None:
        time.sleep(rng.uniform(0.0, span))
        where = child.phase_now()
    else:  # a random head start, then the next time it enters the phase
        time.sleep(rng.uniform(0.0, span * 0.5))
        where = _kill_at(child, target, timeout=span * 2)
    if child.proc.poll() is not None:
        return False, where
    child.proc.send_signal(sig)
    code = child.finish(STOP_TIMEOUT)
    if code is None:
        figures.violations.append(
            f"{child.mode} pid {child.proc.pid}: still running {STOP_TIMEOUT:.0f} s after {sig.name}"
        )
        child.proc.kill()
        child.proc.wait(30)
    return True, where


def _interrupt(
    chain: Chain,
    child: Child,
    rng: random.Random,
    figures: Figures,
    *,
    span: float,
    term_every: int,
    known: set[str],
) -> bool:
    """Interrupt ``child`` (a run or a retry of ``chain``) and check what the execution reads as.

    Returns False when the child had finished before the signal (nothing left to retry)."""
    sent = figures.kills + figures.terms + figures.signals_early + figures.signals_after_commit
    sig = signal.SIGTERM if term_every and sent % term_every == term_every - 1 else signal.SIGKILL
    target = rng.choice(TARGETS) if rng.random() < 0.5 else None
    hit, where = _signal(child, sig, rng, figures, span=span, target=target)
    if not hit:
        figures.signals_late += 1
        return False
    if sig == signal.SIGTERM and child.proc.returncode not in (-signal.SIGTERM, 128 + signal.SIGTERM):
        figures.violations.append(
            f"{chain.where}: after SIGTERM in {where!r} the {child.mode} exited {child.proc.returncode},"
            f" expected {128 + signal.SIGTERM} (by the signal); it printed {child.last_json()}:"
            f" {child.describe()}"
        )
    if chain.exec_id is None:
        new = _execution_ids(chain.store) - known
        if not new:
            figures.signals_early += 1  # before the execution was created: nothing to retry
            return True
        chain.exec_id = new.pop()
    status, failure, committed = _state(chain.store, chain.exec_id)
    kind = failure[0] if failure else None
    seen = f"{chain.where}: after {sig.name} in {where!r} the execution reads {status} ({kind})"
    if status == "completed":
        figures.signals_after_commit += 1  # after its last commit: nothing to retry
    elif child.mode == "retry" and (status, failure) == (chain.status, chain.failure):
        figures.signals_before_claim += 1  # the retry had not taken the execution over yet
    elif sig == signal.SIGKILL and (status, kind) != ("failed", "Crashed"):
        figures.violations.append(f"{seen}, expected failed (Crashed)")
    elif sig == signal.SIGTERM and status != "cancelled":
        figures.violations.append(f"{seen}, expected cancelled")
    if status != "completed":  # a signal that a retry follows: the figure the harness promises
        label = f"{child.mode}:{_phase_bucket(where)}"
        if sig == signal.SIGKILL:
            figures.kills += 1
            figures.kills_by_phase[label] += 1
        else:
            figures.terms += 1
            figures.kills_by_phase[f"{label} (TERM)"] += 1
    if not chain.committed <= committed:
        figures.violations.append(
            f"{seen}: the committed checkpoints {sorted(chain.committed - committed)} are gone"
        )
    chain.status, chain.failure, chain.committed = status, failure, committed
    return True


def _check_retry(chain: Chain, child: Child, held: set[str], figures: Figures) -> None:
    """No checkpoint committed before the retry started (``held``) ran in the retry's process."""
    figures.committed_checked += len(held)
    for line in _side_runs(chain):
        if line["pid"] == child.proc.pid and line["inv"] in held:
            figures.violations.append(
                f"{chain.where}: checkpoint {line['inv']} had committed, and the retry in pid"
                f" {child.proc.pid} ran it again"
            )


def _finish_chain(chain: Chain, child: Child, journal: Path, figures: Figures) -> None:
    """The last retry ran to its end: the execution is what an uninterrupted run leaves."""
    from kitaru_store import Repository

    assert chain.exec_id is not None
    out = child.last_json() or {}
    if child.proc.returncode != 0 or out.get("status") != "completed":
        why = _state(chain.store, chain.exec_id)[1]
        figures.violations.append(
            f"{chain.where}: the retry did not complete ({out}, {why}): {child.describe()}"
        )
        return
    promise = retry_flows.expected(chain.seed)
    repo = Repository.open(chain.store, create=False)
    try:
        manifest = repo.get_execution(chain.exec_id)
        problems = []
        if manifest.status != "completed":
            problems.append(f"status {manifest.status}")
        if manifest.result_object_id != promise["result"]:
            problems.append(f"result {manifest.result_object_id}, uninterrupted {promise['result']}")
        outputs = {c.invocation_id: c.output_object_id for c in manifest.checkpoints}
        if outputs != promise["outputs"]:
            problems.append(f"checkpoint outputs {outputs}, uninterrupted {promise['outputs']}")
        saves = {name: repo.resolve_name(chain.exec_id, name).object_id for name in promise["values"]}
        if saves != promise["values"]:
            problems.append(f"saves {saves}, uninterrupted {promise['values']}")
        ran = {line["inv"] for line in _side_runs(chain)}
        if ran != set(promise["outputs"]):
            problems.append(
                f"the side log shows runs of {sorted(ran)}, expected each of {sorted(promise['outputs'])}"
            )
    finally:
        release(chain.store)
    if problems:
        figures.violations.append(f"{chain.where}: execution {chain.exec_id}: " + "; ".join(problems))
        return
    figures.retry_chains += 1
    with journal.open("a") as fh:  # the promise verify_store holds the store to from now on
        fh.write(json.dumps({"exec_id": chain.exec_id, **promise}, sort_keys=True) + "\n")


def _uninterrupted(chain: Chain, journal: Path, figures: Figures) -> float:
    """Run the chain's plan once without a signal: its duration, and the same objects stored."""
    from kitaru_store import Repository

    with children() as started:
        child = Child("flowrun", chain.store, journal, seed=chain.seed)
        started.append(child)
        child.wait_ready()
        began = time.monotonic()
        code = child.finish(300)
        took = time.monotonic() - began
        out = child.last_json() or {}
    if code != 0 or out.get("status") != "completed":
        figures.violations.append(f"{chain.where}: the uninterrupted run failed: {child.describe()}")
        return took
    promise = retry_flows.expected(chain.seed)
    repo = Repository.open(chain.store, create=False)
    try:
        manifest = repo.get_execution(out["exec_id"])
        outputs = {c.invocation_id: c.output_object_id for c in manifest.checkpoints}
        if manifest.result_object_id != promise["result"] or outputs != promise["outputs"]:
            figures.violations.append(
                f"{chain.where}: the uninterrupted run stored other objects than expected"
            )
    finally:
        release(chain.store)
    with journal.open("a") as fh:
        fh.write(json.dumps({"exec_id": out["exec_id"], **promise}, sort_keys=True) + "\n")
    return took


def run_chain(
    chain: Chain, journal: Path, rng: random.Random, figures: Figures, *, span: float, term_every: int
) -> None:
    """Interrupt the chain's execution 1 to 3 times, retrying it after each, until it completes."""
    interruptions = rng.choice((1, 1, 2, 3))
    known = _execution_ids(chain.store)
    with children() as started:
        while True:
            held = set(chain.committed)  # what this process must not run again
            mode, extra = "flowrun", []
            if chain.exec_id is not None:
                mode, extra = (
                    "retry",
                    ["--exec", chain.exec_id, "--via", rng.choice(("client", "flow", "cli"))],
                )
                figures.retries += 1
            child = Child(
                mode,
                chain.store,
                journal,
                seed=chain.seed,
                phase=chain.work / "phase",
                extra_args=extra,
                env=chain.env(),
            )
            started.append(child)
            if not child.wait_ready():
                figures.violations.append(f"{chain.where}: {child.describe()}")
                return
            if interruptions > 0:
                interruptions -= 1
                # a retry reuses what committed: its own run is shorter
                left = 1.0 - len(chain.committed) / len(retry_flows.expected(chain.seed)["outputs"])
                at = span * max(0.25, left)
                if _interrupt(chain, child, rng, figures, span=at, term_every=term_every, known=known):
                    if chain.exec_id is not None and child.mode == "retry":
                        _check_retry(chain, child, held, figures)
                    if chain.status == "completed":
                        break  # the signal came after its last commit: nothing to retry
                    continue
            code = child.finish(300)
            if code is None:
                figures.violations.append(f"{chain.where}: {child.mode} did not end in 300 s")
                return
            if chain.exec_id is None:  # it ran to its end with no signal at all
                chain.exec_id = (child.last_json() or {}).get("exec_id")
                if chain.exec_id is None:
                    figures.violations.append(f"{chain.where}: {child.describe()}")
                    return
            elif child.mode == "retry":
                _check_retry(chain, child, held, figures)
            _finish_chain(chain, child, journal, figures)
            return
    figures.retry_chains += 1  # completed by its first run; verify_store checks it with the rest
    with journal.open("a") as fh:
        fh.write(
            json.dumps({"exec_id": chain.exec_id, **retry_flows.expected(chain.seed)}, sort_keys=True) + "\n"
        )


def _verify(store: Path, journal: Path, figures: Figures) -> None:
    """The store opens, fsck is clean, every finished chain has every value (harness.verify_store)."""
    verify_store(store, [journal], figures)
    figures.executions_promised += len(read_journal(journal))


def run_kill_retry(
    kills: int,
    base: Path,
    *,
    seed: int,
    term_every: int = 6,
    verify_every: int = 25,
    deadline: float | None = None,
    keep_going: bool = False,
) -> Figures:
    """Chains until ``kills`` SIGKILLs were sent to running flows (and about 1 in ``term_every``
    signals more were SIGTERMs); a fresh store every ``verify_every`` chains."""
    figures = Figures()
    began = time.monotonic()
    rng = random.Random(seed)
    number = 0
    span = 1.0
    journal = None
    store = work = None
    while figures.kills < kills and (keep_going or not figures.violations):
        if deadline is not None and time.monotonic() > deadline:
            figures.violations.append(f"kill-retry: deadline reached after {figures.kills} kills")
            break
        if number % verify_every == 0:
            if store is not None and journal is not None:
                _verify(store, journal, figures)
            work = base / f"kill-retry-{number // verify_every}"
            work.mkdir(parents=True, exist_ok=True)
            store, journal = work / "store", work / "journal.jsonl"
        assert work is not None and store is not None and journal is not None
        plan_seed = rng.getrandbits(31)
        chain = Chain(number, plan_seed, work, store, where=f"seed {seed} chain {number} plan {plan_seed}")
        if number % verify_every == 0:
            span = max(0.2, _uninterrupted(chain, journal, figures))
        run_chain(chain, journal, rng, figures, span=span, term_every=term_every)
        number += 1
    if store is not None and journal is not None:
        _verify(store, journal, figures)
    figures.seconds = time.monotonic() - began
    return figures
