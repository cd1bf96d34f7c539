"""``kitaru.llm()``: a model call as a durable boundary.

The prompt and the response are saved as artifacts (types ``prompt`` and ``response``, kind
``llm_record``) with the model, token counts and latency in the response's metadata.

* In a flow body the call is a boundary of its own, like a checkpoint: it returns an output
  handle, and replay and resume reuse its recorded response.
* Inside a checkpoint it returns the response text; its records commit with the checkpoint. The
  call is named ``<invocation>.<name>`` (``research.llm``, ``research.llm_2``), so two
  checkpoints that both call llm() never collide. When a replay re-runs that checkpoint, a call
  with the same name, prompt and parameters reuses the recorded response instead of paying for
  the model again.

Providers (llm_providers.py): any OpenAI-compatible endpoint, or ``model="offline"``.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from . import context
from .artifacts import new_entry
from .errors import KitaruContextError

if TYPE_CHECKING:
    from kitaru_store import Entry, Writer

    from .handles import CheckpointOutput
    from .llm_providers import LLMResult

FLOW_BODY_NAME = "llm"  # the checkpoint name flow-body llm() calls are recorded under


def llm(
    prompt: str,
    *,
    model: str | None = None,
    system: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    name: str | None = None,
) -> Any:
    """Ask a model. Returns the response text (in a checkpoint) or an output handle (in a flow body)."""
    from kitaru_store.names import validate_name

    run = context.maybe_current_flow()
    if run is None:
        raise KitaruContextError(
            "kitaru.llm() can only be called while a flow runs (in its body or in a checkpoint)",
            hint="call it from a @flow body or a @checkpoint function",
        )
    from .errors import KitaruUsageError

    if not isinstance(prompt, str):
        raise KitaruUsageError(f"prompt must be a string, not {type(prompt).__name__}", exec_id=run.exec_id)
    for what, value in (("model", model), ("system", system)):
        if value is not None and not isinstance(value, str):
            raise KitaruUsageError(
                f"{what} must be a string, not {type(value).__name__}", exec_id=run.exec_id
            )
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, int | float)
    ):
        raise KitaruUsageError(f"temperature must be a number, not {temperature!r}", exec_id=run.exec_id)
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise KitaruUsageError(f"max_tokens must be an integer >= 1, not {max_tokens!r}", exec_id=run.exec_id)
    if name is not None:
        validate_name(name, what="llm call name", exec_id=run.exec_id)
    params = {"model": model, "system": system, "temperature": temperature, "max_tokens": max_tokens}
    cp = context.maybe_current_checkpoint()
    if cp is None:
        return _flow_body_call(run, prompt, params, name)
    base = name or "llm"
    n = cp.llm_calls.get(base, 0) + 1
    cp.llm_calls[base] = n
    call = f"{cp.invocation_id}.{base}" if n == 1 else f"{cp.invocation_id}.{base}_{n}"
    recorded = _recorded_response(run, call, prompt, params)
    if recorded is not None:
        text, entries = recorded
        for entry in entries:
            _copy_into(cp.writer, run.exec_id, entry, checkpoint=cp.name, invocation_id=cp.invocation_id)
        return text
    result = _complete(prompt, params, exec_id=run.exec_id, call=call)
    _record(
        cp.writer,
        run.exec_id,
        call,
        prompt,
        params,
        result,
        checkpoint=cp.name,
        invocation_id=cp.invocation_id,
    )
    return result.text


def _complete(prompt: str, params: dict[str, Any], *, exec_id: str, call: str) -> LLMResult:
    from .llm_providers import LLMError, LLMRequest, resolve

    provider, model_name = resolve(params["model"])
    request = LLMRequest(
        prompt=prompt,
        model=model_name,
        system=params["system"],
        temperature=params["temperature"],
        max_tokens=params["max_tokens"],
    )
    try:
        return provider.complete(request)
    except LLMError as exc:
        raise exc.concerning(exec_id=exec_id, name=call) from exc.__cause__


def _usage(params: dict[str, Any], result: LLMResult, prompt_object_id: str) -> dict[str, Any]:
    from kitaru_store import hashing

    return {
        "requested_model": params["model"],
        "model": result.model,
        "provider": result.provider,
        "temperature": params["temperature"],
        "max_tokens": params["max_tokens"],
        "system_hash": hashing.hexdigest(params["system"].encode()) if params["system"] else None,
        "prompt_object_id": prompt_object_id,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.total_tokens,
        "latency_ms": round(result.latency_ms, 3),
        "finish_reason": result.finish_reason,
    }


def _record(
    writer: Writer,
    exec_id: str,
    call: str,
    prompt: str,
    params: dict[str, Any],
    result: LLMResult,
    *,
    checkpoint: str | None,
    invocation_id: str,
) -> str:

    from .calls import now

    stored_prompt = writer.put_value(prompt)
    stored_response = writer.put_value(result.text)
    usage = _usage(params, result, stored_prompt.object_id)
    stamp = now()
    for entry_name, stored, kind_type, meta in (
        (f"{call}.prompt", stored_prompt, "prompt", {"system": params["system"]} if params["system"] else {}),
        (call, stored_response, "response", usage),
    ):
        writer.replace_entry(
            exec_id,
            new_entry(
                stored,
                name=entry_name,
                kind="llm_record",
                artifact_type=kind_type,
                created_at=stamp,
                checkpoint=checkpoint,
                invocation_id=invocation_id,
                metadata=meta,
                inputs=(stored_prompt.object_id,) if kind_type == "response" else (),
            ),
        )
    return stored_response.object_id


def _recorded_response(
    run: context.FlowRun, call: str, prompt: str, params: dict[str, Any]
) -> tuple[str, list[Entry]] | None:
    """A replay's recorded answer to the same call with the same prompt and parameters."""
    plan = run.plan
    if plan is None:
        return None
    from kitaru_store import hashing, serialization

    entries = {e.name: e for e in plan.source.entries if e.kind == "llm_record"}
    response = entries.get(call)
    prompt_entry = entries.get(f"{call}.prompt")
    if response is None or prompt_entry is None:
        return None
    data, _ = serialization.serialize(prompt)
    meta = response.metadata
    same = (
        prompt_entry.object_id == hashing.hexdigest(data)
        and meta.get("requested_model") == params["model"]
        and meta.get("temperature") == params["temperature"]
        and meta.get("max_tokens") == params["max_tokens"]
        and meta.get("system_hash")
        == (hashing.hexdigest(params["system"].encode()) if params["system"] else None)
    )
    if not same:
        return None
    return run.repo.get_value(response.object_id), [prompt_entry, response]


def _copy_into(
    writer: Writer, exec_id: str, entry: Entry, *, checkpoint: str | None, invocation_id: str
) -> None:
    import msgspec

    from kitaru_store.ids import new_uuid

    writer.replace_entry(
        exec_id,
        msgspec.structs.replace(
            entry,
            artifact_id=new_uuid(),
            checkpoint=checkpoint,
            invocation_id=invocation_id,
            metadata={**entry.metadata, "reused": True},
        ),
    )


def _overridden(run: context.FlowRun, inv: str, seq: int, prompt: str, value: Any) -> CheckpointOutput:
    """A replay's injected response for a flow-body call (``overrides={"llm": ...}``): no model call."""
    from kitaru_store import CheckpointRecord

    from .calls import _output, now

    stamp = now()
    with run.repo.writer() as w:
        stored_prompt = w.put_value(prompt)
        stored = w.put_value(value)
        for entry_name, put, kind_type in (
            (f"{inv}.prompt", stored_prompt, "prompt"),
            (inv, stored, "response"),
        ):
            w.replace_entry(
                run.exec_id,
                new_entry(
                    put,
                    name=entry_name,
                    kind="llm_record",
                    artifact_type=kind_type,
                    created_at=stamp,
                    invocation_id=inv,
                    metadata={"overridden": True},
                ),
            )
        w.set_checkpoint(
            run.exec_id,
            CheckpointRecord(
                invocation_id=inv,
                name=FLOW_BODY_NAME,
                status="overridden",
                started_at=stamp,
                ended_at=stamp,
                output_object_id=stored.object_id,
                seq=seq,
                kind="llm",
            ),
        )
    return _output(run, FLOW_BODY_NAME, inv, stored.object_id, value)


def _flow_body_call(
    run: context.FlowRun, prompt: str, params: dict[str, Any], name: str | None
) -> CheckpointOutput:
    from kitaru_store import CheckpointRecord
    from kitaru_store.manifests import Attempt

    from .calls import _output, failure_of, now, reuse_record

    inv = run.next_invocation_id(name or "llm")
    seq = run.next_seq()
    plan = run.plan
    if plan is not None:
        from .replay import _UNSET

        injected = plan.override_for(inv, FLOW_BODY_NAME)
        if injected is not _UNSET:
            return _overridden(run, inv, seq, prompt, injected)
        record = plan.decide(inv, FLOW_BODY_NAME, seq)
        if record is not None:
            return reuse_record(
                run,
                name=FLOW_BODY_NAME,
                inv=inv,
                seq=seq,
                record=record,
                source_exec=plan.source.exec_id,
                status="reused",
                kind="llm",
            )
    started = now()
    t0 = time.monotonic()
    with run.repo.writer() as w:
        try:
            result = _complete(prompt, params, exec_id=run.exec_id, call=inv)
        except Exception as exc:
            failure = failure_of(exc, checkpoint=inv)
            w.set_checkpoint(
                run.exec_id,
                CheckpointRecord(
                    invocation_id=inv,
                    name=FLOW_BODY_NAME,
                    status="failed",
                    started_at=started,
                    ended_at=now(),
                    attempts=(Attempt(started_at=started, ended_at=now(), failure=failure),),
                    failure=failure,
                    seq=seq,
                    kind="llm",
                ),
            )
            w.commit()
            with contextlib.suppress(AttributeError):
                exc._kitaru_checkpoint = inv  # type: ignore[attr-defined]  # the execution's failure names it
            raise
        response_id = _record(w, run.exec_id, inv, prompt, params, result, checkpoint=None, invocation_id=inv)
        w.set_checkpoint(
            run.exec_id,
            CheckpointRecord(
                invocation_id=inv,
                name=FLOW_BODY_NAME,
                status="completed",
                started_at=started,
                ended_at=now(),
                output_object_id=response_id,
                attempts=(Attempt(started_at=started, ended_at=now()),),
                seq=seq,
                kind="llm",
                metadata={"latency_ms": round((time.monotonic() - t0) * 1000, 3)},
            ),
        )
    return _output(run, FLOW_BODY_NAME, inv, response_id, result.text)
