"""kitaru.llm(): a model call as a durable boundary, in a flow body and inside checkpoints.

The offline provider runs the end-to-end cases; replay and failures use the OpenAI-compatible
provider against a real HTTP server on 127.0.0.1 that counts the requests it gets.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import kitaru
from kitaru import (
    FlowExecutionError,
    InvalidNameError,
    KitaruClient,
    KitaruContextError,
    KitaruUsageError,
    checkpoint,
    flow,
)
from kitaru.llm_providers import LLMConfigError, LLMError

ENV_VARS = (
    "KITARU_LLM_MODEL",
    "KITARU_LLM_BASE_URL",
    "KITARU_LLM_API_KEY",
    "KITARU_LLM_TIMEOUT",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
)
USAGE_KEYS = {"model", "provider", "prompt_tokens", "completion_tokens", "total_tokens", "latency_ms"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's own LLM configuration never leaks into these tests."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


class ChatServer:
    """A real OpenAI-compatible chat server on 127.0.0.1: answers ``answer #<n> to <prompt>``.

    ``status`` other than 200 makes it answer with an error object instead; ``requests`` holds
    every request body it received.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                with server._lock:
                    server.requests.append(body)
                    n, status = len(server.requests), server.status
                prompt = body["messages"][-1]["content"]
                if status == 200:
                    reply: dict[str, Any] = {
                        "id": f"chatcmpl-{n}",
                        "object": "chat.completion",
                        "model": "served-model",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": f"answer #{n} to {prompt}"},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
                    }
                else:
                    reply = {"error": {"message": "invalid api key", "type": "auth"}}
                payload = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ChatServer]:
    srv = ChatServer()
    monkeypatch.setenv("KITARU_LLM_BASE_URL", srv.base_url)
    monkeypatch.setenv("KITARU_LLM_MODEL", "local-model")
    try:
        yield srv
    finally:
        srv.close()


CALLS = {"research": 0, "write": 0}


@pytest.fixture(autouse=True)
def _reset_counters() -> None:
    for key in CALLS:
        CALLS[key] = 0


def _entries(exec_id: str) -> dict[str, kitaru.ArtifactRef]:
    return {a.name: a for a in KitaruClient().executions.get(exec_id).artifacts}


# --- the offline provider, end to end ----------------------------------------------------------


@flow
def l_body(topic: str) -> Any:
    outline = kitaru.llm(f"Outline {topic}.", model="offline", system="Be terse.", temperature=0.0)
    assert isinstance(outline, kitaru.CheckpointOutput)  # a durable boundary: an output handle
    text = outline.load()
    echo = kitaru.llm(f"Echo: {text}", model="offline/echo", name="echo")
    return [outline, echo]


def test_llm_in_a_flow_body_is_a_recorded_call_with_prompt_and_response_artifacts() -> None:
    handle = l_body.run("otters")
    assert handle.status == "completed"
    outline, echo = handle.wait()
    assert outline.startswith("Offline answer [") and '"Outline otters."' in outline
    assert echo == f"Echo: {outline}"
    assert l_body.run("otters").wait() == [outline, echo]  # the offline provider is deterministic

    execution = KitaruClient().executions.get(handle.exec_id)
    calls = [(c.invocation_id, c.name, c.kind, c.status) for c in execution.checkpoints]
    assert calls == [("llm", "llm", "llm", "completed"), ("echo", "llm", "llm", "completed")]
    assert execution.checkpoints[0].metadata["latency_ms"] >= 0

    entries = _entries(handle.exec_id)
    assert set(entries) == {"llm.prompt", "llm", "echo.prompt", "echo"}
    prompt, response = entries["llm.prompt"], entries["llm"]
    assert (prompt.kind, prompt.type, prompt.load()) == ("llm_record", "prompt", "Outline otters.")
    assert prompt.metadata == {"system": "Be terse."}
    assert (response.kind, response.type, response.load()) == ("llm_record", "response", outline)
    assert response.checkpoint is None and response.invocation_id == "llm"
    assert response.inputs == (prompt.object_id,)
    meta = response.metadata
    assert set(meta) >= USAGE_KEYS
    assert (meta["model"], meta["provider"], meta["temperature"]) == ("offline", "offline", 0.0)
    assert meta["prompt_tokens"] == 4  # "Be terse." + "Outline otters." in words
    assert meta["total_tokens"] == meta["prompt_tokens"] + meta["completion_tokens"] > 4
    assert isinstance(meta["latency_ms"], float) and meta["latency_ms"] >= 0
    assert execution.checkpoints[0].output_object_id == response.object_id
    assert entries["echo"].metadata["model"] == "offline/echo"


@checkpoint
def research(topic: str) -> str:
    CALLS["research"] += 1
    notes = kitaru.llm(f"Research {topic}.", model="offline")
    assert isinstance(notes, str)  # inside a checkpoint: the text itself
    more = kitaru.llm(f"More about {topic}.", model="offline")
    critique = kitaru.llm(f"Criticize {topic}.", model="offline", name="critic")
    return " | ".join([notes, more, critique])


@checkpoint
def write(notes: str) -> str:
    CALLS["write"] += 1
    return kitaru.llm(f"Write a report from: {notes}", model="offline", max_tokens=6)


@flow
def l_pipeline(topic: str) -> Any:
    notes = research(topic)
    return write(notes)


@checkpoint
def read_back(exec_id: str) -> list[str]:
    return [kitaru.load(exec_id, name) for name in ("research.llm", "write.llm", "research.critic")]


@flow
def l_reader(exec_id: str) -> Any:
    return read_back(exec_id)


def test_two_checkpoints_calling_llm_get_distinct_loadable_names() -> None:
    handle = l_pipeline.run("volcanoes")
    assert handle.status == "completed"
    report = handle.wait()
    assert report.split() == report.split()[:6] and len(report.split()) == 6  # max_tokens=6

    entries = _entries(handle.exec_id)
    assert set(entries) == {
        "research.llm.prompt",
        "research.llm",
        "research.llm_2.prompt",
        "research.llm_2",
        "research.critic.prompt",
        "research.critic",
        "research",
        "write.llm.prompt",
        "write.llm",
        "write",
    }
    for name in ("research.llm", "research.llm_2", "research.critic", "write.llm"):
        entry = entries[name]
        assert (entry.kind, entry.type) == ("llm_record", "response")
        assert entry.checkpoint == name.split(".")[0] and entry.invocation_id == name.split(".")[0]
        assert set(entry.metadata) >= USAGE_KEYS
        assert entries[f"{name}.prompt"].type == "prompt"
    assert entries["write.llm"].metadata["finish_reason"] == "length"
    assert entries["write.llm"].load() == report
    assert entries["research.llm.prompt"].load() == "Research volcanoes."
    assert entries["research"].load().split(" | ")[0] == entries["research.llm"].load()
    execution = KitaruClient().executions.get(handle.exec_id)
    assert [c.invocation_id for c in execution.checkpoints] == ["research", "write"]  # records, not calls

    client = KitaruClient()
    assert execution.artifact("write.llm").load() == report
    [ref] = client.artifacts.list(handle.exec_id, name="research.llm")
    assert client.artifacts.get(ref.artifact_id).load() == entries["research.llm"].load()
    assert len(client.artifacts.list(handle.exec_id, type="response")) == 4
    assert len(client.artifacts.list(handle.exec_id, type="prompt")) == 4

    loaded = l_reader.run(handle.exec_id).wait()  # kitaru.load by name from another execution
    assert loaded == [entries["research.llm"].load(), report, entries["research.critic"].load()]


def test_mapped_checkpoints_calling_llm_do_not_collide() -> None:
    @flow
    def l_mapped() -> Any:
        return research.map(["ants", "bees", "wasps"])

    handle = l_mapped.run()
    assert handle.status == "completed"
    responses = {
        a.name: a.load()
        for a in KitaruClient().executions.get(handle.exec_id).artifacts
        if a.type == "response" and a.name.endswith(".llm")
    }
    assert set(responses) == {"research.llm", "research_2.llm", "research_3.llm"}
    assert '"Research ants."' in responses["research.llm"]
    assert '"Research wasps."' in responses["research_3.llm"]


# --- replay and resume reuse recorded responses (counted on a real HTTP server) ---------------


@flow
def l_http_body(topic: str) -> Any:
    draft = kitaru.llm(f"Draft about {topic}", system="You are a writer.")
    return write_http(draft)


@checkpoint
def write_http(draft: str) -> str:
    CALLS["write"] += 1
    return draft.upper()


def test_replay_reuses_flow_body_llm_responses_without_a_new_request(server: ChatServer) -> None:
    handle = l_http_body.run("kelp")
    assert handle.status == "completed", handle
    assert handle.wait() == "ANSWER #1 TO DRAFT ABOUT KELP"
    assert server.count == 1
    sent = server.requests[0]
    assert sent["model"] == "local-model"  # from KITARU_LLM_MODEL
    assert sent["messages"] == [
        {"role": "system", "content": "You are a writer."},
        {"role": "user", "content": "Draft about kelp"},
    ]
    meta = _entries(handle.exec_id)["llm"].metadata
    assert (meta["provider"], meta["model"], meta["requested_model"]) == (
        "openai-compatible",
        "served-model",
        None,
    )
    assert (meta["prompt_tokens"], meta["completion_tokens"], meta["total_tokens"]) == (11, 4, 15)
    assert meta["latency_ms"] > 0

    replay = l_http_body.replay(handle.exec_id, from_="write_http")
    assert replay.wait() == "ANSWER #1 TO DRAFT ABOUT KELP"
    assert server.count == 1  # the recorded response was reused: no second request
    assert CALLS["write"] == 2
    copy = KitaruClient().executions.get(replay.exec_id)
    assert [(c.invocation_id, c.status, c.kind) for c in copy.checkpoints] == [
        ("llm", "reused", "llm"),
        ("write_http", "completed", "checkpoint"),
    ]
    assert copy.checkpoints[0].reused_from == handle.exec_id
    copied = _entries(replay.exec_id)
    assert copied["llm"].load() == "answer #1 to Draft about kelp"
    assert copied["llm.prompt"].load() == "Draft about kelp"

    assert l_http_body.replay(handle.exec_id).wait() == "ANSWER #1 TO DRAFT ABOUT KELP"
    assert server.count == 1

    fresh = l_http_body.replay(handle.exec_id, from_="llm")  # the llm call is the replay point
    assert fresh.wait() == "ANSWER #2 TO DRAFT ABOUT KELP"
    assert server.count == 2


def test_a_replay_can_override_a_flow_body_llm_response(server: ChatServer) -> None:
    handle = l_http_body.run("cod")
    assert server.count == 1
    replay = l_http_body.replay(handle.exec_id, overrides={"llm": "a hand-written draft"})
    assert replay.wait() == "A HAND-WRITTEN DRAFT"
    assert server.count == 1  # the injected response replaces the model call
    assert CALLS["write"] == 2  # and what follows the override runs again
    execution = KitaruClient().executions.get(replay.exec_id)
    assert [(c.invocation_id, c.kind, c.status) for c in execution.checkpoints] == [
        ("llm", "llm", "overridden"),
        ("write_http", "checkpoint", "completed"),
    ]
    entries = _entries(replay.exec_id)
    assert entries["llm"].load() == "a hand-written draft"
    assert (entries["llm"].type, entries["llm"].metadata) == ("response", {"overridden": True})
    assert entries["llm.prompt"].load() == "Draft about cod"

    again = l_http_body.replay(replay.exec_id)  # an overridden call is reused like a recorded one
    assert again.wait() == "A HAND-WRITTEN DRAFT" and server.count == 1


@checkpoint
def research_http(topic: str) -> str:
    CALLS["research"] += 1
    return kitaru.llm(f"Research {topic}", temperature=0.5)


@flow
def l_http_checkpoint(topic: str) -> Any:
    return research_http(topic)


def test_a_rerun_checkpoint_reuses_a_recorded_response_when_the_call_matches(server: ChatServer) -> None:
    handle = l_http_checkpoint.run("reefs")
    assert handle.wait() == "answer #1 to Research reefs"
    assert server.count == 1

    rerun = l_http_checkpoint.replay(handle.exec_id, from_="research_http")
    assert rerun.wait() == "answer #1 to Research reefs"
    assert CALLS["research"] == 2  # the checkpoint ran again ...
    assert server.count == 1  # ... but its llm call was answered from the record
    entries = _entries(rerun.exec_id)
    assert entries["research_http.llm"].metadata["reused"] is True
    assert entries["research_http.llm"].checkpoint == "research_http"
    assert entries["research_http.llm.prompt"].load() == "Research reefs"

    changed = l_http_checkpoint.replay(handle.exec_id, from_="research_http", topic="lagoons")
    assert changed.wait() == "answer #2 to Research lagoons"  # another prompt: a real request
    assert server.count == 2
    assert "reused" not in _entries(changed.exec_id)["research_http.llm"].metadata


def test_resume_after_a_wait_does_not_call_the_model_again(server: ChatServer) -> None:
    @flow
    def l_then_wait(topic: str) -> Any:
        draft = kitaru.llm(f"Draft about {topic}")
        ok = kitaru.wait(name="approve", question=f"Publish?\n\n{draft.load()}", schema=bool)
        return write_http(draft) if ok else "no"

    client = KitaruClient()
    handle = l_then_wait.run("eels")
    assert handle.status == "waiting"
    [pending] = client.executions.pending_waits(handle.exec_id)
    assert pending.question == "Publish?\n\nanswer #1 to Draft about eels"
    client.executions.input(handle.exec_id, wait="approve", value=True)
    assert client.executions.resume(handle.exec_id).wait() == "ANSWER #1 TO DRAFT ABOUT EELS"
    assert server.count == 1


FAIL_AFTER_LLM = {"fail": True}


@checkpoint
def ask_then_fail(topic: str) -> str:
    answer = kitaru.llm(f"Ask about {topic}")
    if FAIL_AFTER_LLM["fail"]:
        raise RuntimeError("the parser choked")
    return answer


@flow
def l_retry(topic: str) -> Any:
    return ask_then_fail(topic)


def test_retry_reuses_the_response_recorded_by_the_failed_attempt(server: ChatServer) -> None:
    FAIL_AFTER_LLM["fail"] = True
    handle = l_retry.run("tuna")
    assert handle.status == "failed" and server.count == 1
    failed = _entries(handle.exec_id)
    assert failed["ask_then_fail.llm"].load() == "answer #1 to Ask about tuna"  # saved with the failure

    FAIL_AFTER_LLM["fail"] = False
    retried = KitaruClient().executions.retry(handle.exec_id)
    assert retried.wait() == "answer #1 to Ask about tuna"
    assert server.count == 1  # the model was paid once
    entries = _entries(handle.exec_id)
    assert [n for n in entries if n.startswith("ask_then_fail.llm")] == [
        "ask_then_fail.llm.prompt",
        "ask_then_fail.llm",
    ]


# --- failures and misuse ----------------------------------------------------------------------


def test_a_provider_failure_in_a_flow_body_fails_the_flow_with_the_llm_error(server: ChatServer) -> None:
    server.status = 401
    handle = l_http_body.run("krill")
    assert handle.status == "failed"
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    cause = info.value.__cause__
    assert isinstance(cause, LLMError) and cause.status_code == 401
    assert "HTTP 401: invalid api key" in str(cause)
    assert (cause.exec_id, cause.name) == (handle.exec_id, "llm")

    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.failure is not None
    assert execution.failure.type == "kitaru.llm_providers.LLMError"
    assert execution.failure.checkpoint == "llm"
    [call] = execution.checkpoints
    assert (call.invocation_id, call.kind, call.status) == ("llm", "llm", "failed")
    assert call.failure is not None and call.failure.type == "kitaru.llm_providers.LLMError"
    assert call.output_object_id is None
    assert [a for a in execution.artifacts if a.kind == "llm_record"] == []
    assert CALLS["write"] == 0

    server.status = 200
    retried = KitaruClient().executions.retry(handle.exec_id)
    assert retried.wait() == "ANSWER #2 TO DRAFT ABOUT KRILL"
    assert [c.status for c in KitaruClient().executions.get(handle.exec_id).checkpoints] == [
        "completed",
        "completed",
    ]


def test_a_provider_failure_in_a_checkpoint_fails_it(server: ChatServer) -> None:
    server.status = 403
    handle = l_http_checkpoint.run("squid")
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    assert isinstance(info.value.__cause__, LLMError)
    assert info.value.__cause__.name == "research_http.llm"
    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.failure is not None
    assert (execution.failure.type, execution.failure.checkpoint) == (
        "kitaru.llm_providers.LLMError",
        "research_http",
    )
    assert execution.checkpoints[0].status == "failed"
    assert len(execution.checkpoints[0].attempts) == 1  # an LLMError is not retried by the checkpoint
    assert server.count == 1


def test_an_unconfigured_provider_is_a_config_error() -> None:
    handle = l_http_checkpoint.run("clams")
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    cause = info.value.__cause__
    assert isinstance(cause, LLMConfigError) and "no model provider configured" in str(cause)
    failure = KitaruClient().executions.get(handle.exec_id).failure
    assert failure is not None and failure.type == "kitaru.llm_providers.LLMConfigError"


def test_llm_outside_a_flow_is_a_context_error() -> None:
    with pytest.raises(KitaruContextError, match="can only be called while a flow runs"):
        kitaru.llm("hello", model="offline")


@pytest.mark.parametrize("prompt", [None, 42, b"bytes", ["a list"]])
def test_a_prompt_that_is_not_a_string_is_a_usage_error(prompt: Any) -> None:
    @flow
    def l_bad_prompt() -> Any:
        return kitaru.llm(prompt, model="offline")

    handle = l_bad_prompt.run()
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    cause = info.value.__cause__
    assert isinstance(cause, KitaruUsageError)
    assert f"prompt must be a string, not {type(prompt).__name__}" in str(cause)
    assert KitaruClient().executions.get(handle.exec_id).checkpoints == []


def test_a_bad_call_name_is_refused_in_a_checkpoint() -> None:
    @checkpoint
    def named() -> str:
        return kitaru.llm("hi", model="offline", name="a/b")

    @flow
    def l_bad_name() -> Any:
        return named()

    with pytest.raises(FlowExecutionError) as info:
        l_bad_name.run().wait()
    assert isinstance(info.value.__cause__, InvalidNameError)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": 5}, "model must be a string, not int"),
        ({"system": ["be nice"]}, "system must be a string, not list"),
        ({"temperature": "hot"}, "temperature must be a number, not 'hot'"),
        ({"temperature": True}, "temperature must be a number, not True"),
        ({"max_tokens": "3"}, "max_tokens must be an integer >= 1, not '3'"),
        ({"max_tokens": 0}, "max_tokens must be an integer >= 1, not 0"),
        ({"max_tokens": 2.5}, "max_tokens must be an integer >= 1, not 2.5"),
    ],
)
def test_bad_parameters_are_usage_errors(options: dict[str, Any], message: str) -> None:
    @flow
    def l_bad_options() -> Any:
        return kitaru.llm("hi", **({"model": "offline"} | options))

    with pytest.raises(FlowExecutionError) as info:
        l_bad_options.run().wait()
    assert isinstance(info.value.__cause__, KitaruUsageError)
    assert message in str(info.value.__cause__)
