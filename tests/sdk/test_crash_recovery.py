"""A process that dies while it runs a flow: the execution reads as failed (Crashed), and a retry
from another process finishes it, reusing the checkpoints that had completed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kitaru import ExecutionStateError, KitaruClient
from kitaru_store import Repository, liveness

pytestmark = pytest.mark.slow

FLOW_MODULE = textwrap.dedent(
    """
    import os, pathlib, time
    import kitaru

    MARKS = pathlib.Path(os.environ["MARKS"])

    def mark(name):
        with open(MARKS / name, "a") as f:
            f.write("x")

    @kitaru.checkpoint
    def step(i: int) -> int:
        mark(f"step{i}")
        if os.environ.get("HANG_AT") == str(i):
            (MARKS / "hanging").write_text(str(os.getpid()))
            time.sleep(float(os.environ.get("HANG_FOR", "60")))
        if os.environ.get("FAIL_AT") == str(i):
            raise RuntimeError(f"step {i} fails")
        return i * 10

    @kitaru.flow
    def four() -> int:
        total = 0
        for i in range(4):
            total += step(i).load()
        return total

    @kitaru.checkpoint
    def tick(i: int) -> int:
        mark(f"tick{i}")
        if i == 0:
            (MARKS / "hanging").write_text(str(os.getpid()))
        time.sleep(0.2)
        return i

    @kitaru.flow
    def fan() -> int:
        return sum(out.load() for out in step.map(range(4)))

    @kitaru.flow
    def asks_for_long() -> str:
        (MARKS / "hanging").write_text(str(os.getpid()))
        return kitaru.wait(schema=str, question="go on?", timeout=60)

    @kitaru.flow
    def ticks(n: int) -> int:
        for i in range(n):
            try:
                tick(i)
            except Exception:  # a cancellation is not an Exception: this does not swallow it
                pass
        return n
    """
)


class Child:
    """Flows run in other processes, on the test's store, with the flow module importable."""

    def __init__(self, tmp_path: Path, store: Path) -> None:
        self.dir = tmp_path / "mod"
        self.dir.mkdir()
        (self.dir / "crashflow.py").write_text(FLOW_MODULE)
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        self.store = store
        here = Path(__file__).resolve().parents[2]
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(self.dir), str(here), os.environ.get("PYTHONPATH", "")]),
            "KITARU_STORE": str(store),
            "MARKS": str(self.marks),
        }

    def start(self, code: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", code],
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, code: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code], env={**self.env, **env}, capture_output=True, text=True, timeout=60
        )

    def start_hanging(self, at: int = 2, **env: str) -> tuple[subprocess.Popen[str], str]:
        """A child running ``four`` that hangs inside step ``at``; the execution's id."""
        proc = self.start("import crashflow; crashflow.four.run()", HANG_AT=str(at), **env)
        self.wait_for_hang(proc)
        (self.marks / "hanging").unlink()
        summaries = Repository.open(self.store).list_executions()
        return proc, summaries[0].exec_id

    def wait_for_hang(self, proc: subprocess.Popen[str]) -> None:
        """Until the child's flow has written the "hanging" mark (it is where the test wants it)."""
        deadline = time.monotonic() + 30
        while not (self.marks / "hanging").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)

    def count(self, i: int, what: str = "step") -> int:
        path = self.marks / f"{what}{i}"
        return len(path.read_text()) if path.exists() else 0

    def count_tick(self, i: int) -> int:
        return self.count(i, "tick")

    def retry(self, exec_id: str) -> subprocess.CompletedProcess[str]:
        return self.run(
            "import json, crashflow; from kitaru import KitaruClient\n"
            f"h = KitaruClient().executions.retry({exec_id!r})\n"
            "print(json.dumps([h.status, h.wait()]))"
        )


@pytest.fixture
def child(tmp_path: Path, store_path: Path) -> Iterator[Child]:
    Repository.open(store_path)  # created here, not by two children at once
    yield Child(tmp_path, store_path)


def test_sigkill_reads_as_crashed_naming_process_host_and_last_checkpoint(child: Child) -> None:
    proc, exec_id = child.start_hanging(at=2)
    client = KitaruClient()
    running = client.executions.get(exec_id)
    assert running.status == "running"
    assert running.owner is not None and running.owner.pid == proc.pid and running.owner.alive is True
    os.kill(proc.pid, signal.SIGKILL)
    # Before the child is reaped (a zombie keeps its pid and start time): already dead.
    deadline = time.monotonic() + 10
    while client.executions.get(exec_id).status == "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    seen = client.executions.get(exec_id)
    proc.wait()
    assert seen.status == "failed"
    assert seen.failure is not None and seen.failure.type == "Crashed"
    assert f"process {proc.pid}" in seen.failure.message
    assert f"host {os.uname().nodename}" in seen.failure.message
    assert "'step_2'" in seen.failure.message  # the last checkpoint that completed
    assert seen.owner is not None and seen.owner.alive is False
    # Recorded durably by that first observation: the stored manifest says failed.
    stored = Repository.open(child.store).get_execution(exec_id, observe=False)
    assert stored.status == "failed" and stored.failure is not None and stored.failure.type == "Crashed"
    # Another process, through the CLI, sees the same.
    shown = subprocess.run(
        [sys.executable, "-m", "kitaru_store.cli", "show", exec_id, "--json"],
        env=child.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "failed"


def test_log_shows_a_crashed_run_as_failed_before_anyone_recorded_it(child: Child) -> None:
    proc, exec_id = child.start_hanging(at=1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    repo = Repository.open(child.store)
    assert repo.get_execution(exec_id, observe=False).status == "running"  # nobody looked yet
    logged = subprocess.run(
        [sys.executable, "-m", "kitaru_store.cli", "log", "--status", "failed"],
        env=child.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert logged.returncode == 0, logged.stderr
    assert exec_id[:12] in logged.stdout and "failed" in logged.stdout
    assert [s.exec_id for s in repo.list_executions(status="running")] == []
    assert [s.exec_id for s in repo.list_executions(status="failed")] == [exec_id]


def test_retry_after_sigkill_reuses_completed_checkpoints_from_another_process(child: Child) -> None:
    proc, exec_id = child.start_hanging(at=2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = child.retry(exec_id)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["completed", 60]
    assert [child.count(i) for i in range(4)] == [1, 1, 2, 1]  # only the one in flight ran again
    execution = KitaruClient().executions.get(exec_id)
    assert execution.status == "completed"
    assert execution.owner is not None and execution.owner.pid != proc.pid
    assert execution.metadata["kitaru.previous_failures"][0]["type"] == "Crashed"
    assert Repository.open(child.store).fsck().ok


def test_a_live_run_is_not_retried_and_not_declared_crashed(child: Child) -> None:
    proc, exec_id = child.start_hanging(at=1)
    try:
        attempt = child.retry(exec_id)
        assert attempt.returncode != 0
        assert "ExecutionStateError" in attempt.stderr and "running" in attempt.stderr
        assert KitaruClient().executions.get(exec_id).status == "running"
    finally:
        proc.kill()
        proc.wait()


def test_a_live_process_whose_run_ended_unrecorded_has_not_got_the_run(child: Child) -> None:
    # The owner's last write (the final status) fails, say on a full disk, and the process lives
    # on (a notebook, a server): its run lock is gone, so the run is no longer its, whatever its
    # pid says. It reads as crashed, and can be retried, instead of `running` until it exits.
    code = (
        "import os, time, crashflow, kitaru.runtime as rt\n"
        "from kitaru_store.errors import StoreFullError\n"
        "def full(*a, **k): raise StoreFullError('no space left')\n"
        "rt._finish = full\n"
        "try:\n"
        "    crashflow.four.run()\n"
        "except StoreFullError:\n"
        "    (crashflow.MARKS / 'hanging').write_text(str(os.getpid()))\n"
        "time.sleep(60)\n"
    )
    proc = child.start(code, FAIL_AT="3")
    try:
        child.wait_for_hang(proc)
        logged = subprocess.run(  # the fast path of `log`, first to look
            [sys.executable, "-m", "kitaru_store.cli", "log", "--oneline"],
            env=child.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert logged.returncode == 0, logged.stderr
        assert "failed" in logged.stdout and "running" not in logged.stdout
        (exec_id,) = [s.exec_id for s in Repository.open(child.store).list_executions()]
        seen = KitaruClient().executions.get(exec_id)
        assert seen.status == "failed" and seen.failure is not None and seen.failure.type == "Crashed"
        assert seen.owner is not None and seen.owner.pid == proc.pid and seen.owner.alive is False
        done = child.retry(exec_id)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == ["completed", 60]
    finally:
        proc.kill()
        proc.wait()


def test_two_retries_at_once_one_wins(child: Child) -> None:
    proc, exec_id = child.start_hanging(at=2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    code = (
        "import json, crashflow, kitaru\n"
        "try:\n"
        f"    h = kitaru.KitaruClient().executions.retry({exec_id!r})\n"
        "    print(json.dumps([h.status, h.wait()]))\n"
        "except kitaru.ExecutionStateError as exc:\n"
        "    print(json.dumps(['refused', str(exc)]))\n"
    )
    # The winner holds the run for a second inside step 2: the other finds it taken.
    retries = [child.start(code, HANG_AT="2", HANG_FOR="1") for _ in range(2)]
    outcomes = [json.loads(r.communicate(timeout=60)[0]) for r in retries]
    assert sorted(o[0] for o in outcomes) == ["completed", "refused"], outcomes
    assert ["completed", 60] in outcomes
    assert child.count(2) == 2  # the crashed attempt and the winner's, never the loser's
    assert KitaruClient().executions.get(exec_id).status == "completed"


def test_pid_reused_after_a_reboot_is_dead(store_path: Path) -> None:
    import msgspec

    repo = Repository.open(store_path)
    exec_id = repo.create_execution("f")
    me = liveness.this_owner()
    other_boot = msgspec.structs.replace(me, pid=1, boot_id="another-boot")
    assert liveness.alive(repo, exec_id, other_boot) is False
    other_start = msgspec.structs.replace(me, pid=1, proc_start=(liveness.proc_start(1) or 0) + 1)
    if liveness.proc_start(1) is not None:  # Linux: pid 1 runs, but was started at another time
        assert liveness.alive(repo, exec_id, other_start) is False
    elsewhere = msgspec.structs.replace(me, host="some-other-host")
    assert liveness.alive(repo, exec_id, elsewhere) is None


def test_a_run_owned_by_another_host_is_never_declared_crashed(store_path: Path) -> None:
    import msgspec

    repo = Repository.open(store_path)
    exec_id = repo.create_execution("f")
    owner = msgspec.structs.replace(liveness.this_owner(), pid=999_999, host="elsewhere")
    with repo.writer() as w:
        w.mutate(exec_id, lambda m: msgspec.structs.replace(m, owner=owner))
    execution = KitaruClient().executions.get(exec_id)
    assert execution.status == "running"
    assert execution.owner is not None and execution.owner.alive is None
    assert repo.get_execution(exec_id, observe=False).status == "running"


def test_read_only_observer_shows_crashed_but_does_not_write(child: Child) -> None:
    proc, exec_id = child.start_hanging(at=1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    readonly = Repository.open(child.store, readonly=True)
    assert readonly.get_execution(exec_id).status == "failed"
    assert Repository.open(child.store).get_execution(exec_id, observe=False).status == "running"


# --- signals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_signal_cancels_at_a_safe_point_exits_128_plus_n_and_retry_finishes(
    child: Child, signum: int
) -> None:
    # Through a shell, which reports the exit status as the conventional 128 + n.
    shell = subprocess.Popen(
        ["sh", "-c", f'{sys.executable} -c "import crashflow; crashflow.four.run()"; echo "status=$?"'],
        env={**child.env, "HANG_AT": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    child.wait_for_hang(shell)
    pid = int((child.marks / "hanging").read_text())
    (child.marks / "hanging").unlink()
    os.kill(pid, signum)
    stdout, _ = shell.communicate(timeout=30)
    assert f"status={128 + signum}" in stdout
    exec_id = Repository.open(child.store).list_executions()[0].exec_id
    execution = KitaruClient().executions.get(exec_id)
    assert execution.status == "cancelled"
    assert execution.failure is not None and execution.failure.type == "Cancelled"
    assert signal.Signals(signum).name in execution.failure.message and str(pid) in execution.failure.message
    assert Repository.open(child.store).fsck().ok  # nothing half-written
    done = child.retry(exec_id)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["completed", 60]
    assert [child.count(i) for i in range(4)] == [1, 1, 2, 1]


def test_signal_handlers_are_restored_after_a_run(store_path: Path) -> None:
    import kitaru

    @kitaru.flow
    def empty() -> int:
        return 1

    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    assert empty.run().wait() == 1
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_signal_during_a_store_write_waits_for_the_commit(store_path: Path) -> None:
    """The handler does not raise inside a write transaction: the commit completes, and the
    flow stops at the next boundary."""
    import kitaru
    from kitaru import cancellation
    from kitaru_store import backend

    original = backend.Backend.update
    sent: list[int] = []

    def update(self: backend.Backend, fn: object) -> object:
        def wrapped(wt: object) -> object:
            if not sent:
                sent.append(1)
                os.kill(os.getpid(), signal.SIGTERM)  # delivered here, inside the transaction
                time.sleep(0.01)
            return fn(wt)  # type: ignore[operator]

        return original(self, wrapped)  # type: ignore[arg-type]

    @kitaru.checkpoint
    def first() -> str:
        backend.Backend.update = update  # type: ignore[method-assign]
        return "kept"

    @kitaru.checkpoint
    def second() -> str:
        return "never"

    @kitaru.flow
    def two() -> None:
        first()
        second()

    previous = signal.signal(signal.SIGTERM, lambda *a: None)  # what the run restores, and resend hits
    try:
        with pytest.raises(cancellation.ExecutionCancelled):
            two.run()
    finally:
        backend.Backend.update = original  # type: ignore[method-assign]
        signal.signal(signal.SIGTERM, previous)
    execution = KitaruClient().executions.latest()
    assert execution is not None and execution.status == "cancelled"
    assert [c.invocation_id for c in execution.checkpoints if c.status == "completed"] == ["first"]
    assert execution.artifact("first").load() == "kept"


# --- cancel ----------------------------------------------------------------------------------


def test_cancel_from_another_process_stops_the_run_at_its_next_boundary(child: Child) -> None:
    proc = child.start(
        "import json, crashflow\n"
        "h = crashflow.ticks.run(50)\n"
        "print(json.dumps([h.status, h._failure.message if h._failure else None]))"
    )
    child.wait_for_hang(proc)
    exec_id = Repository.open(child.store).list_executions()[0].exec_id
    requested = KitaruClient().executions.cancel(exec_id, reason="enough")
    assert requested.status == "running" and requested.cancel_requested
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    status, message = json.loads(stdout)
    assert status == "cancelled" and "enough" in message and f"pid {os.getpid()}" in message
    ran = sum(child.count_tick(i) for i in range(50))
    assert 1 <= ran < 50  # stopped at a boundary, long before the end
    execution = KitaruClient().executions.get(exec_id)
    assert execution.status == "cancelled" and execution.failure is not None
    assert execution.failure.type == "Cancelled" and not execution.cancel_requested


def test_a_second_sigterm_ends_a_run_that_waits_for_its_pool_at_once(child: Child) -> None:
    """The first SIGTERM stops the run at a safe point, which waits for checkpoints running on
    the pool; a second one (what a supervisor's impatience sends) ends the process now, and the
    run is then retried like a crashed one."""
    proc = child.start("import crashflow; crashflow.fan.run()", HANG_AT="2", HANG_FOR="60")
    child.wait_for_hang(proc)
    exec_id = Repository.open(child.store).list_executions()[0].exec_id
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert proc.poll() is None  # still waiting for the hanging checkpoint on the pool
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM and time.monotonic() - began < 10
    assert KitaruClient().executions.get(exec_id).status == "failed"  # its owner is gone
    (child.marks / "hanging").unlink()
    done = child.retry(exec_id)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["completed", 60]
    assert child.count(0) == 1  # completed before the signals: not run again


def test_cancel_reaches_a_run_that_polls_for_an_answer(child: Child) -> None:
    """A wait with a timeout keeps the run ``running`` while it polls: each poll is a boundary
    where a cancel request from another process is seen."""
    proc = child.start("import crashflow; h = crashflow.asks_for_long.run(); print(h.status)")
    child.wait_for_hang(proc)
    exec_id = Repository.open(child.store).list_executions()[0].exec_id
    deadline = time.monotonic() + 30
    while KitaruClient().executions.get(exec_id).pending_wait is None:  # the wait is recorded
        assert time.monotonic() < deadline
        time.sleep(0.02)
    began = time.monotonic()
    assert KitaruClient().executions.cancel(exec_id).status == "running"  # a request: it polls
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert stdout.split() == ["cancelled"]
    assert time.monotonic() - began < 10  # at a poll, long before the 60 s timeout
    assert KitaruClient().executions.get(exec_id).status == "cancelled"


def test_cancel_a_waiting_execution_at_once_and_a_finished_one_is_an_error(store_path: Path) -> None:
    import kitaru

    @kitaru.flow
    def asks() -> str:
        return str(kitaru.wait(name="ok", schema=bool))

    handle = asks.run()
    assert handle.status == "waiting"
    client = KitaruClient()
    cancelled = client.executions.cancel(handle.exec_id)
    assert cancelled.status == "cancelled"
    assert cancelled.failure is not None and cancelled.failure.type == "Cancelled"
    before = Repository.open(store_path).get_execution(handle.exec_id)
    with pytest.raises(ExecutionStateError, match="is cancelled"):
        client.executions.cancel(handle.exec_id)
    assert Repository.open(store_path).get_execution(handle.exec_id) == before


def test_cancel_a_crashed_execution_makes_it_cancelled(child: Child) -> None:
    proc, exec_id = child.start_hanging(at=1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cancelled = KitaruClient().executions.cancel(exec_id)
    assert cancelled.status == "cancelled"


# --- delete ----------------------------------------------------------------------------------


def test_delete_then_gc_collects_what_only_it_kept_and_pins_stay(store_path: Path) -> None:
    import kitaru

    @kitaru.checkpoint
    def make(i: int) -> str:
        return f"value {i} " * 100

    @kitaru.flow
    def two() -> None:
        make(1)
        make(2)

    handle = two.run()
    repo = Repository.open(store_path)
    m = repo.get_execution(handle.exec_id)
    outputs = {c.invocation_id: c.output_object_id for c in m.checkpoints}
    repo.pin("keep", outputs["make"])
    KitaruClient().executions.delete(handle.exec_id)
    with pytest.raises(kitaru.ExecutionNotFoundError):
        KitaruClient().executions.get(handle.exec_id)
    repo.gc(grace=0)
    assert repo.has_object(outputs["make"])  # pinned
    assert not repo.has_object(outputs["make_2"])  # only the execution kept it
    assert repo.fsck().ok


def test_delete_a_live_run_needs_force_and_the_run_then_stops(child: Child) -> None:
    proc = child.start("import crashflow\nh = crashflow.ticks.run(50)\nprint(h.exec_id)")
    child.wait_for_hang(proc)
    exec_id = Repository.open(child.store).list_executions()[0].exec_id
    client = KitaruClient()
    with pytest.raises(ExecutionStateError, match="is running"):
        client.executions.delete(exec_id)
    assert client.executions.get(exec_id).status == "running"
    client.executions.delete(exec_id, force=True)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert sum(child.count_tick(i) for i in range(50)) < 50
    assert Repository.open(child.store).list_executions() == []
    assert Repository.open(child.store).fsck().ok
