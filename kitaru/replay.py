"""Reusing recorded checkpoint calls: replay (a new execution), resume and retry (the same one).

A ReusePlan walks the recorded calls of a source execution in call order. Each new call must
match the recorded one at the same position (same invocation id, same checkpoint); then its
recorded output is reused instead of running the function. Reuse stops at the replay point
(``from_``), at the first recorded call without an output (the failure a retry re-runs), at an
override, or when the recorded calls run out; from there on, everything runs for real. In a
retry or resume of the same execution, a recorded call without an output, or a call with no
record at all (in flight when its process was killed), runs again, and the calls recorded after
it (concurrent ones of a map or submit, which finished) are still reused. A call
that does not match while reuse is still on raises DivergenceError: the flow's code changed
before the replay point, so reusing recorded values would be wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import DivergenceError, KitaruUsageError

if TYPE_CHECKING:
    from kitaru_store import Writer
    from kitaru_store.manifests import CheckpointRecord, Entry, Manifest

REUSABLE = frozenset({"completed", "reused", "cached", "overridden"})
_UNSET: Any = object()


@dataclass
class ReusePlan:
    source: Manifest
    same_execution: bool  # resume/retry: the records are this execution's own
    stop_at: str | None = None  # replay point: an invocation id or a checkpoint name
    overrides: dict[str, Any] = field(default_factory=dict)
    calls: list[CheckpointRecord] = field(default_factory=list)
    position: int = 0
    active: bool = True

    @classmethod
    def build(
        cls,
        source: Manifest,
        *,
        same_execution: bool,
        stop_at: str | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> ReusePlan:
        calls = sorted(source.checkpoints, key=lambda c: c.seq)
        plan = cls(
            source=source,
            same_execution=same_execution,
            stop_at=stop_at,
            overrides=_override_keys(source, calls, overrides or {}),
            calls=calls,
        )
        unknown = [k for k in plan.overrides if not any(k in (c.invocation_id, c.name) for c in calls)]
        if unknown:
            known = ", ".join(c.invocation_id for c in calls) or "(none)"
            raise KitaruUsageError(
                f"overrides name no recorded call of execution {source.exec_id}:"
                f" {', '.join(map(str, unknown))}",
                exec_id=source.exec_id,
                name=str(unknown[0]),
                hint=f"override one of: {known}",
            )
        if stop_at is not None and not any(stop_at in (c.invocation_id, c.name) for c in calls):
            known = ", ".join(c.invocation_id for c in calls) or "(none)"
            raise KitaruUsageError(
                f"execution {source.exec_id} has no checkpoint call {stop_at!r} to replay from",
                exec_id=source.exec_id,
                name=stop_at,
                hint=f"replay from one of: {known}",
            )
        return plan

    def recorded(self) -> list[tuple[str, str]]:
        return [(c.invocation_id, c.name) for c in self.calls]

    def override_for(self, inv: str, name: str) -> Any:
        """The injected output for this call, or _UNSET. An override ends reuse."""
        for key in (inv, name):
            if key in self.overrides:
                self.active = False
                return self.overrides[key]
        return _UNSET

    def decide(self, inv: str, name: str, seq: int = 0) -> CheckpointRecord | None:
        """The recorded call to reuse for this one (number ``seq`` of the run), or None to run it."""
        if not self.active:
            return None
        if self.stop_at is not None and self.stop_at in (inv, name):
            self.active = False
            return None
        if self.position >= len(self.calls):
            self.active = False
            if self.stop_at is not None and not self.same_execution:
                raise DivergenceError(
                    "the replay ran past the recorded calls before reaching its replay point",
                    exec_id=self.source.exec_id,
                    name=inv,
                    position=self.position,
                    expected=None,
                    got=(inv, name),
                    recorded=self.recorded(),
                )
            return None
        src = self.calls[self.position]
        if self.same_execution and seq and src.seq > seq:
            return None  # no record: it was in flight when the process died; later ones may have ended
        if src.invocation_id != inv or src.name != name:
            self.active = False
            raise DivergenceError(
                "the flow called another checkpoint than the execution it reuses",
                exec_id=self.source.exec_id,
                name=inv,
                position=self.position,
                expected=(src.invocation_id, src.name),
                got=(inv, name),
                recorded=self.recorded(),
            )
        self.position += 1
        if src.status not in REUSABLE or not src.output_object_id:
            # The recorded call failed or never finished: run it again. In the same execution the
            # calls recorded after it ran concurrently with it (a map, a submit), never on its
            # output: they are still reused.
            self.active = self.same_execution
            return None
        return src


OVERRIDE_PREFIX = "checkpoint."


def _override_keys(
    source: Manifest, calls: list[CheckpointRecord], overrides: dict[str, Any]
) -> dict[str, Any]:
    """``overrides`` keyed by invocation id or checkpoint name: a key ``checkpoint.NAME`` (the
    form upstream Kitaru takes) means NAME, unless a recorded call has the whole key as its name."""
    known = {k for c in calls for k in (c.invocation_id, c.name)}
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        plain = key
        if isinstance(key, str) and key.startswith(OVERRIDE_PREFIX) and key not in known:
            plain = key[len(OVERRIDE_PREFIX) :]
        if plain in out:
            raise KitaruUsageError(
                f"the override of {plain!r} is given twice",
                exec_id=source.exec_id,
                name=str(plain),
                hint=f"give it once, as {plain!r} or as {OVERRIDE_PREFIX + str(plain)!r}",
            )
        out[plain] = value
    return out


def copy_entries(
    writer: Writer, source: Manifest, exec_id: str, source_inv: str, new_inv: str | None = None
) -> Entry | None:
    """Copy an invocation's entries (output, saves, llm records) into another execution.

    Same object ids, new artifact ids; renamed to ``new_inv`` when the call has another
    invocation id here (a cache hit). Returns the copied output entry.
    """
    import msgspec

    from kitaru_store.ids import new_uuid

    target = new_inv or source_inv
    output = None
    for entry in source.entries:
        if entry.invocation_id != source_inv:
            continue
        is_output = entry.name == source_inv and entry.kind in ("checkpoint_output", "llm_record")
        copied = msgspec.structs.replace(
            entry,
            artifact_id=new_uuid(),
            invocation_id=target,
            name=target
            if is_output
            else entry.name.replace(source_inv, target, 1)
            if entry.name.startswith(source_inv + ".")
            else entry.name,
        )
        writer.replace_entry(exec_id, copied)
        if is_output:
            output = copied
    return output
