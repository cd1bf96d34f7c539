"""Handles: what a checkpoint call returns in a flow body, and what ``flow.run()`` returns."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from .errors import ExecutionNotFinishedError, ExecutionWaitingError, FlowExecutionError, KitaruUsageError

if TYPE_CHECKING:
    from kitaru_store import Repository
    from kitaru_store.manifests import Failure

_UNSET: Any = object()


class CheckpointOutput:
    """The durable output of one checkpoint call.

    Pass it to another checkpoint to hand over the value and record the data-flow edge; call
    ``.load()`` in the flow body when the body itself needs the Python value.
    """

    __slots__ = ("_repo", "_value", "checkpoint", "exec_id", "invocation_id", "object_id")

    def __init__(
        self,
        *,
        repo: Repository,
        exec_id: str,
        checkpoint: str,
        invocation_id: str,
        object_id: str,
        value: Any = _UNSET,
    ) -> None:
        self._repo = repo
        self.exec_id = exec_id
        self.checkpoint = checkpoint
        self.invocation_id = invocation_id
        self.object_id = object_id
        self._value = value

    def load(self, *, allow_pickle: bool | None = None) -> Any:
        """The checkpoint's output value (from memory if this process produced it, else the store)."""
        if self._value is _UNSET:
            self._value = self._repo.get_value(self.object_id, allow_pickle=allow_pickle)
        return self._value

    def _misuse(self, what: str) -> NoReturn:
        raise KitaruUsageError(
            f"{what} a checkpoint output handle ({self.invocation_id}); it is not the value itself",
            exec_id=self.exec_id,
            name=self.invocation_id,
            hint=f"call .load() to get the value: {self.invocation_id}_value = {self.invocation_id}.load()",
        )

    def __repr__(self) -> str:
        return (
            f"<CheckpointOutput {self.invocation_id} of execution {self.exec_id[:12]}:"
            " call .load() for the value>"
        )

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        self._misuse("formatting")

    def __bool__(self) -> bool:
        self._misuse("testing the truth of")

    def __iter__(self) -> NoReturn:
        self._misuse("iterating over")

    def __len__(self) -> int:
        self._misuse("taking the length of")

    def __getitem__(self, key: Any) -> NoReturn:
        self._misuse("indexing")

    def __contains__(self, item: Any) -> bool:
        self._misuse("searching in")


class FlowHandle:
    """A flow execution started with ``flow.run()``."""

    def __init__(
        self,
        *,
        repo: Repository,
        exec_id: str,
        flow_name: str,
        status: str,
        result: Any = _UNSET,
        error: BaseException | None = None,
        failure: Failure | None = None,
    ) -> None:
        self._repo = repo
        self.exec_id = exec_id
        self.flow_name = flow_name
        self._status = status
        self._result = result
        self._error = error
        self._failure = failure

    @property
    def status(self) -> str:
        """running, waiting, completed, failed or cancelled (as persisted)."""
        self._status = self._repo.get_execution_head(self.exec_id).status
        return self._status

    def wait(self) -> Any:
        """The flow's result. Raises FlowExecutionError if the flow failed, ExecutionWaitingError
        (whose hint names the commands that answer and resume it) if it waits for input."""
        return self.get()

    def get(self) -> Any:
        """The flow's result if it has finished; raises FlowExecutionError or ExecutionNotFinishedError."""
        manifest = self._repo.get_execution(self.exec_id)
        if manifest.status == "completed":
            if self._result is _UNSET:
                self._result = (
                    self._repo.get_value(manifest.result_object_id) if manifest.result_object_id else None
                )
            return self._result
        if manifest.status in ("failed", "cancelled"):
            failure = manifest.failure
            detail = f": {failure.type}: {failure.message}" if failure else ""
            err = FlowExecutionError(
                f"flow {self.flow_name!r} {manifest.status}{detail}",
                exec_id=self.exec_id,
                name=self.flow_name,
                failure=failure,
            )
            raise err from self._error
        if manifest.status == "waiting":
            from .wait_prompt import resume_command
            from .waits import pending_waits

            lines = [line for w in pending_waits(self._repo, self.exec_id) for line in w.commands]
            raise ExecutionWaitingError(
                f"execution {self.exec_id} of flow {self.flow_name!r} is waiting for input",
                exec_id=self.exec_id,
                name=self.flow_name,
                hint="answer it, then continue the execution:\n  " + "\n  ".join(lines)
                if lines
                else f"its waits are answered; continue it: {resume_command(self._repo, self.exec_id)}",
            )
        raise ExecutionNotFinishedError(
            f"execution {self.exec_id} of flow {self.flow_name!r} is {manifest.status}",
            exec_id=self.exec_id,
            name=self.flow_name,
            hint="it has no result until it completes",
        )

    def __repr__(self) -> str:
        return f"<FlowHandle {self.flow_name} {self.exec_id[:12]} {self._status}>"
