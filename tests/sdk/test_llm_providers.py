"""kitaru.llm_providers: the offline provider, resolution from the environment, and the
OpenAI-compatible HTTP provider against a real local server (no outside network)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kitaru.errors import KitaruError
from kitaru.llm_providers import (
    LLMConfigError,
    LLMError,
    LLMRequest,
    LLMResult,
    OfflineProvider,
    OpenAICompatibleProvider,
    Provider,
    resolve,
)

ENV_VARS = (
    "KITARU_LLM_MODEL",
    "KITARU_LLM_BASE_URL",
    "KITARU_LLM_API_KEY",
    "KITARU_LLM_TIMEOUT",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's own LLM configuration never leaks into these tests."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


# --- a real OpenAI-compatible server on 127.0.0.1 ----------------------------------------------


@dataclass
class Canned:
    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes -> raw
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def completion(text: str = "hello from the server", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "served-model-2024",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
    }
    body.update(extra)
    return body


class FakeServer:
    """Serves queued canned responses (the last one repeats) and records every request."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._queue: list[Canned] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                canned = server._record(
                    Recorded("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
                )
                if canned.delay:
                    time.sleep(canned.delay)
                if isinstance(canned.body, (dict, list)):
                    payload = json.dumps(canned.body).encode()
                    ctype = "application/json"
                elif isinstance(canned.body, str):
                    payload, ctype = canned.body.encode(), "text/plain"
                else:
                    payload, ctype = canned.body or b"", "application/octet-stream"
                try:
                    self.send_response(canned.status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(payload)))
                    for key, value in canned.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.timeout = 5
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()

    def _record(self, request: Recorded) -> Canned:
        with self._lock:
            self.requests.append(request)
            if not self._queue:
                return Canned(500, {"error": {"message": "no canned response"}})
            return self._queue.pop(0) if len(self._queue) > 1 else self._queue[0]

    def respond(self, *canned: Canned) -> None:
        with self._lock:
            self._queue = list(canned)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    srv = FakeServer()
    try:
        yield srv
    finally:
        srv.close()


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


def make_provider(
    base_url: str, sleeps: SleepRecorder, api_key: str | None = None, **kw: Any
) -> OpenAICompatibleProvider:
    kw.setdefault("timeout", 10.0)
    return OpenAICompatibleProvider(base_url, api_key, sleep=sleeps, **kw)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- errors -------------------------------------------------------------------------------------


def test_error_hierarchy() -> None:
    assert issubclass(LLMError, KitaruError)
    assert issubclass(LLMConfigError, LLMError)
    err = LLMError("boom", hint="check it", status_code=503, attempts=3, exec_id="e1", name="n")
    assert (err.status_code, err.attempts, err.exec_id, err.name) == (503, 3, "e1", "n")
    assert str(err) == "boom (check it)"
    assert err.to_dict()["error"] == "LLMError"


# --- the offline provider -----------------------------------------------------------------------


def offline(prompt: str, model: str = "offline", **kw: Any) -> LLMResult:
    return OfflineProvider().complete(LLMRequest(prompt=prompt, model=model, **kw))


def test_offline_is_deterministic() -> None:
    req = LLMRequest("What is durable execution? Answer in one line.", "offline", system="Be brief.")
    first, second = OfflineProvider().complete(req), OfflineProvider().complete(req)
    assert first.text == second.text
    assert first.provider == "offline" and first.model == "offline"
    assert first.finish_reason == "stop"
    assert '"What is durable execution?"' in first.text  # quotes the first sentence
    assert "Answer in one line" not in first.text
    assert first.latency_ms >= 0
    assert first.prompt_tokens == 10  # 2 system words + 8 prompt words
    assert first.completion_tokens == len(first.text.split())
    assert first.total_tokens == first.prompt_tokens + first.completion_tokens


def test_offline_varies_with_every_request_field() -> None:
    base = offline("Tell me a joke.", system="You are funny.", temperature=0.2)
    variants = [
        offline("Tell me a joke!", system="You are funny.", temperature=0.2),
        offline("Tell me a joke.", system="You are dull.", temperature=0.2),
        offline("Tell me a joke.", system=None, temperature=0.2),
        offline("Tell me a joke.", "offline/other", system="You are funny.", temperature=0.2),
        offline("Tell me a joke.", system="You are funny.", temperature=0.9),
        offline("Tell me a joke.", system="You are funny."),
    ]
    texts = {base.text, *(v.text for v in variants)}
    assert len(texts) == 1 + len(variants)


def test_offline_long_and_empty_prompts() -> None:
    long = offline("word " * 500)
    assert len(long.text) < 250
    empty = offline("")
    assert "(empty prompt)" in empty.text and empty.prompt_tokens == 0


def test_offline_max_tokens_truncates() -> None:
    result = offline("What is durable execution? Explain.", max_tokens=3)
    assert result.completion_tokens == 3 and len(result.text.split()) == 3
    assert result.finish_reason == "length"
    assert offline("What?", max_tokens=1000).finish_reason == "stop"


def test_offline_echo_returns_prompt_verbatim() -> None:
    prompt = "  line one\nline two.  Second sentence!  "
    result = offline(prompt, "offline/echo", system="ignored for the text", temperature=1.5)
    assert result.text == prompt
    assert result.model == "offline/echo" and result.provider == "offline"
    assert result.completion_tokens == 6
    assert result.prompt_tokens == 4 + 6
    assert offline("a b c d", "offline/echo", max_tokens=2).text == "a b"


def test_offline_provider_satisfies_protocol() -> None:
    provider: Provider = OfflineProvider()
    assert provider.name == "offline"


# --- resolution ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["offline", "offline/echo", "offline/anything"])
def test_resolve_offline_argument(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # even with a server configured, an offline model stays offline
    monkeypatch.setenv("KITARU_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    provider, name = resolve(model)
    assert isinstance(provider, OfflineProvider) and name == model


def test_resolve_offline_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_LLM_MODEL", "offline/echo")
    provider, name = resolve(None)
    assert isinstance(provider, OfflineProvider) and name == "offline/echo"
    # a blank argument counts as not given
    assert resolve("  ")[1] == "offline/echo"


def test_resolve_argument_beats_env_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_LLM_MODEL", "offline")
    monkeypatch.setenv("KITARU_LLM_BASE_URL", "http://localhost:11434/v1")
    provider, name = resolve("llama3.1")
    assert isinstance(provider, OpenAICompatibleProvider) and name == "llama3.1"
    monkeypatch.setenv("KITARU_LLM_MODEL", "qwen2.5")
    provider, name = resolve("offline")
    assert isinstance(provider, OfflineProvider) and name == "offline"


def test_resolve_not_offline_prefix_lookalikes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_LLM_BASE_URL", "http://localhost:8000/v1")
    for model in ("offline-model", "my/offline", "Offline2"):
        provider, name = resolve(model)
        assert isinstance(provider, OpenAICompatibleProvider) and name == model


def test_resolve_nothing_configured_raises() -> None:
    with pytest.raises(LLMConfigError) as info:
        resolve("gpt-4o-mini")
    message = info.value.message
    assert "KITARU_LLM_BASE_URL" in message and "KITARU_LLM_API_KEY" in message
    assert 'model="offline"' in message


def test_resolve_nothing_configured_and_no_model_raises() -> None:
    with pytest.raises(LLMConfigError, match="KITARU_LLM_BASE_URL"):
        resolve(None)


def test_resolve_never_falls_back_to_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_LLM_MODEL", "gpt-4o-mini")
    with pytest.raises(LLMConfigError):
        resolve(None)


def test_resolve_kitaru_base_url_without_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_LLM_BASE_URL", "http://localhost:11434/v1/")
    monkeypatch.setenv("KITARU_LLM_MODEL", "llama3.1")
    provider, name = resolve(None)
    assert isinstance(provider, OpenAICompatibleProvider)
    assert name == "llama3.1"
    assert provider.base_url == "http://localhost:11434/v1"
    assert provider.url == "http://localhost:11434/v1/chat/completions"
    assert not provider.has_api_key
    assert provider.timeout == 120.0
    assert provider.name == "openai-compatible"


def test_resolve_kitaru_variables_beat_openai_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_LLM_BASE_URL", "http://kitaru.local/v1")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://openai.local/v1")
    monkeypatch.setenv("KITARU_LLM_API_KEY", "sk-kitaru")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    provider, _ = resolve("m")
    assert isinstance(provider, OpenAICompatibleProvider)
    assert provider.base_url == "http://kitaru.local/v1"
    assert provider._api_key == "sk-kitaru"


def test_resolve_openai_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://openai.local/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    provider, _ = resolve("m")
    assert isinstance(provider, OpenAICompatibleProvider)
    assert provider.base_url == "http://openai.local/v1"
    assert provider._api_key == "sk-openai"


@pytest.mark.parametrize("key_var", ["KITARU_LLM_API_KEY", "OPENAI_API_KEY"])
def test_resolve_key_only_uses_openai(key_var: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(key_var, "sk-test-secret")
    provider, name = resolve("gpt-4o-mini")
    assert isinstance(provider, OpenAICompatibleProvider)
    assert provider.base_url == "https://api.openai.com/v1" and provider.has_api_key
    assert name == "gpt-4o-mini"
    assert "sk-test-secret" not in repr(provider)


def test_resolve_endpoint_but_no_model_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_LLM_BASE_URL", "http://localhost:11434/v1")
    with pytest.raises(LLMConfigError, match="KITARU_LLM_MODEL"):
        resolve(None)
    with pytest.raises(LLMConfigError, match="KITARU_LLM_MODEL"):
        resolve("")


def test_resolve_blank_env_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_LLM_BASE_URL", "  ")
    monkeypatch.setenv("KITARU_LLM_API_KEY", "")
    with pytest.raises(LLMConfigError):
        resolve("m")


def test_resolve_timeout_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_LLM_BASE_URL", "http://localhost:11434/v1")
    monkeypatch.setenv("KITARU_LLM_TIMEOUT", "7.5")
    provider, _ = resolve("m")
    assert isinstance(provider, OpenAICompatibleProvider) and provider.timeout == 7.5
    for bad in ("abc", "0", "-1", "nan", "inf"):
        monkeypatch.setenv("KITARU_LLM_TIMEOUT", bad)
        with pytest.raises(LLMConfigError, match="KITARU_LLM_TIMEOUT"):
            resolve("m")


def test_resolve_bad_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_LLM_BASE_URL", "localhost:11434/v1")
    with pytest.raises(LLMConfigError, match="http"):
        resolve("m")


def test_resolve_shares_one_provider_per_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_LLM_BASE_URL", "http://localhost:11434/v1")
    first, _ = resolve("a")
    second, _ = resolve("b")
    assert first is second
    monkeypatch.setenv("KITARU_LLM_API_KEY", "k")
    third, _ = resolve("a")
    assert third is not first


def test_missing_httpx_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # makes `import httpx` raise ImportError
    with pytest.raises(LLMConfigError) as info:
        OpenAICompatibleProvider("http://localhost:11434/v1")
    assert info.value.hint == "pip install 'kitaru[llm]'"
    monkeypatch.setenv("KITARU_LLM_BASE_URL", "http://missing-httpx.local/v1")
    with pytest.raises(LLMConfigError, match=r"kitaru\[llm\]"):
        resolve("m")
    # the offline provider needs no httpx
    assert isinstance(resolve("offline")[0], OfflineProvider)


def test_importing_does_not_import_httpx() -> None:
    code = (
        "import sys, kitaru, kitaru.llm_providers as p\n"
        "p.resolve('offline')[0].complete(p.LLMRequest('hi', 'offline'))\n"
        "assert 'httpx' not in sys.modules, 'httpx imported eagerly'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --- the OpenAI-compatible provider against a local server --------------------------------------


def test_http_success_sends_the_right_request(server: FakeServer, sleeps: SleepRecorder) -> None:
    server.respond(Canned(body=completion("Paris.")))
    with make_provider(server.base_url, sleeps, api_key="sk-local") as provider:
        result = provider.complete(
            LLMRequest(
                "Capital of France?", "my-model", system="Answer tersely.", temperature=0.0, max_tokens=5
            )
        )
    assert result == LLMResult(
        text="Paris.",
        model="served-model-2024",
        provider="openai-compatible",
        prompt_tokens=11,
        completion_tokens=4,
        total_tokens=15,
        latency_ms=result.latency_ms,
        finish_reason="stop",
    )
    assert 0 <= result.latency_ms < 30_000
    assert sleeps.delays == []
    [req] = server.requests
    assert req.method == "POST" and req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-local"
    assert req.headers["content-type"] == "application/json"
    assert req.json() == {
        "model": "my-model",
        "messages": [
            {"role": "system", "content": "Answer tersely."},
            {"role": "user", "content": "Capital of France?"},
        ],
        "temperature": 0.0,
        "max_tokens": 5,
    }


def test_http_minimal_request_and_missing_usage(server: FakeServer, sleeps: SleepRecorder) -> None:
    body = completion("ok")
    del body["usage"], body["model"]
    body["choices"][0]["finish_reason"] = None
    server.respond(Canned(body=body))
    provider = make_provider(server.base_url, sleeps)
    result = provider.complete(LLMRequest("hi", "local-model"))
    provider.close()
    assert result.text == "ok"
    assert result.model == "local-model"  # the server did not say; the requested one is reported
    assert (result.prompt_tokens, result.completion_tokens, result.total_tokens) == (None, None, None)
    assert result.finish_reason is None
    [req] = server.requests
    assert "authorization" not in req.headers
    assert req.json() == {"model": "local-model", "messages": [{"role": "user", "content": "hi"}]}


def test_http_reuses_client_across_calls(server: FakeServer, sleeps: SleepRecorder) -> None:
    server.respond(Canned(body=completion("same")))
    with make_provider(server.base_url, sleeps) as provider:
        client = provider._http()
        results = [provider.complete(LLMRequest(f"q{i}", "m")) for i in range(3)]
        assert provider._http() is client
    assert [r.text for r in results] == ["same"] * 3
    assert [r.json()["messages"][0]["content"] for r in server.requests] == ["q0", "q1", "q2"]


def test_http_content_parts_are_joined(server: FakeServer, sleeps: SleepRecorder) -> None:
    body = completion()
    body["choices"][0]["message"]["content"] = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    server.respond(Canned(body=body))
    with make_provider(server.base_url, sleeps) as provider:
        assert provider.complete(LLMRequest("hi", "m")).text == "ab"


def test_http_retries_429_then_succeeds(server: FakeServer, sleeps: SleepRecorder) -> None:
    server.respond(
        Canned(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "2"}),
        Canned(body=completion("after retry")),
    )
    with make_provider(server.base_url, sleeps) as provider:
        result = provider.complete(LLMRequest("hi", "m"))
    assert result.text == "after retry"
    assert len(server.requests) == 2
    assert server.requests[0].body == server.requests[1].body
    assert sleeps.delays == [2.0]  # Retry-After honoured


def test_http_retry_after_is_capped(server: FakeServer, sleeps: SleepRecorder) -> None:
    server.respond(
        Canned(429, {"error": {"message": "later"}}, headers={"Retry-After": "3600"}),
        Canned(503, "overloaded"),
        Canned(body=completion()),
    )
    with make_provider(server.base_url, sleeps, max_retry_after=5.0, backoff=0.1) as provider:
        provider.complete(LLMRequest("hi", "m"))
    assert len(server.requests) == 3
    assert sleeps.delays[0] == 5.0
    assert 0.2 <= sleeps.delays[1] <= 0.25  # exponential backoff: 0.1 * 2, plus at most 25% jitter


def test_http_500_three_times_raises(server: FakeServer, sleeps: SleepRecorder) -> None:
    server.respond(Canned(500, {"error": {"message": "model crashed", "type": "server_error"}}))
    with make_provider(server.base_url, sleeps, backoff=0.5) as provider, pytest.raises(LLMError) as info:
        provider.complete(LLMRequest("hi", "m"))
    err = info.value
    assert not isinstance(err, LLMConfigError)
    assert len(server.requests) == 3
    assert err.status_code == 500 and err.attempts == 3
    assert "HTTP 500" in err.message and "model crashed" in err.message
    assert err.hint
    assert len(sleeps.delays) == 2
    assert 0.5 <= sleeps.delays[0] <= 0.625 and 1.0 <= sleeps.delays[1] <= 1.25


def test_http_429_exhausted_raises(server: FakeServer, sleeps: SleepRecorder) -> None:
    server.respond(Canned(429, {"error": {"message": "quota exceeded"}}, headers={"Retry-After": "0"}))
    with make_provider(server.base_url, sleeps) as provider, pytest.raises(LLMError) as info:
        provider.complete(LLMRequest("hi", "m"))
    assert info.value.status_code == 429 and "quota exceeded" in info.value.message
    assert "rate limited" in (info.value.hint or "")
    assert len(server.requests) == 3 and sleeps.delays == [0.0, 0.0]


def test_http_401_is_not_retried(server: FakeServer, sleeps: SleepRecorder) -> None:
    server.respond(Canned(401, {"error": {"message": "Incorrect API key provided"}}))
    provider = make_provider(server.base_url, sleeps, api_key="sk-very-secret")
    with provider, pytest.raises(LLMError) as info:
        provider.complete(LLMRequest("hi", "m"))
    err = info.value
    assert len(server.requests) == 1 and sleeps.delays == []
    assert err.status_code == 401 and "Incorrect API key provided" in err.message
    assert "KITARU_LLM_API_KEY" in (err.hint or "")
    assert "sk-very-secret" not in str(err)


def test_http_404_and_400_messages(server: FakeServer, sleeps: SleepRecorder) -> None:
    server.respond(Canned(404, "404 page not found"), Canned(400, {"detail": "unknown model 'x'"}))
    with make_provider(server.base_url, sleeps) as provider:
        with pytest.raises(LLMError, match="404 page not found") as info404:
            provider.complete(LLMRequest("hi", "x"))
        assert "/v1" in (info404.value.hint or "")
        with pytest.raises(LLMError, match="unknown model 'x'") as info400:
            provider.complete(LLMRequest("hi", "x"))
        assert info400.value.status_code == 400
    assert len(server.requests) == 2


def test_http_malformed_json_raises(server: FakeServer, sleeps: SleepRecorder) -> None:
    server.respond(Canned(200, "<html>this is not the API</html>"))
    with make_provider(server.base_url, sleeps) as provider, pytest.raises(LLMError) as info:
        provider.complete(LLMRequest("hi", "m"))
    assert "not JSON" in info.value.message
    assert info.value.hint and "/v1" in info.value.hint
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "body",
    [
        [1, 2, 3],
        {"choices": []},
        {"choices": "nope"},
        {"choices": [{"message": None}]},
        {"choices": [{"message": {"role": "assistant", "content": None}}]},
        {"choices": [{"message": {"role": "assistant", "content": None, "refusal": "I can't"}}]},
        {"error": {"message": "model overloaded"}},
    ],
    ids=["list", "no-choices", "choices-str", "no-message", "null-content", "refusal", "error-object"],
)
def test_http_malformed_shapes_raise(body: Any, server: FakeServer, sleeps: SleepRecorder) -> None:
    server.respond(Canned(200, body))
    with make_provider(server.base_url, sleeps) as provider, pytest.raises(LLMError) as info:
        provider.complete(LLMRequest("hi", "m"))
    assert info.value.status_code == 200
    if isinstance(body, dict) and "error" in body:
        assert "model overloaded" in info.value.message
    if "refusal" in json.dumps(body):
        assert "I can't" in info.value.message


def test_http_connection_refused_raises(sleeps: SleepRecorder) -> None:
    port = closed_port()
    provider = make_provider(f"http://127.0.0.1:{port}/v1", sleeps, backoff=0.01)
    with provider, pytest.raises(LLMError) as info:
        provider.complete(LLMRequest("hi", "m"))
    err = info.value
    assert not isinstance(err, LLMConfigError)
    assert err.status_code is None and err.attempts == 3
    assert f"127.0.0.1:{port}" in err.message
    assert "KITARU_LLM_BASE_URL" in (err.hint or "")
    assert len(sleeps.delays) == 2


def test_http_connection_error_then_success(server: FakeServer, sleeps: SleepRecorder) -> None:
    """A connection that drops mid-request is retried like a refused one."""
    server.respond(Canned(body=completion("recovered")))
    provider = make_provider(server.base_url, sleeps)
    calls = {"n": 0}
    real_post = provider._http().post

    def flaky_post(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise provider._httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return real_post(*args, **kwargs)

    provider._http().post = flaky_post  # type: ignore[method-assign]
    try:
        assert provider.complete(LLMRequest("hi", "m")).text == "recovered"
    finally:
        provider.close()
    assert calls["n"] == 2 and len(server.requests) == 1 and len(sleeps.delays) == 1


def test_http_read_timeout_raises(server: FakeServer, sleeps: SleepRecorder) -> None:
    server.respond(Canned(body=completion(), delay=2.0))
    start = time.monotonic()
    with make_provider(server.base_url, sleeps, timeout=0.2) as provider, pytest.raises(LLMError) as info:
        provider.complete(LLMRequest("hi", "m"))
    assert time.monotonic() - start < 30
    assert "timed out" in info.value.message
    assert "KITARU_LLM_TIMEOUT" in (info.value.hint or "")


def test_http_via_resolve_end_to_end(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch, sleeps: SleepRecorder
) -> None:
    monkeypatch.setenv("KITARU_LLM_BASE_URL", server.base_url)
    monkeypatch.setenv("KITARU_LLM_API_KEY", "sk-resolve")
    monkeypatch.setenv("KITARU_LLM_MODEL", "env-model")
    monkeypatch.setenv("KITARU_LLM_TIMEOUT", "9")
    server.respond(Canned(body=completion("via resolve")))
    provider, model = resolve(None)
    try:
        result = provider.complete(LLMRequest("hello", model))
    finally:
        assert isinstance(provider, OpenAICompatibleProvider)
        provider.close()
    assert result.text == "via resolve" and result.provider == "openai-compatible"
    [req] = server.requests
    assert req.json()["model"] == "env-model"
    assert req.headers["authorization"] == "Bearer sk-resolve"


def test_http_base_url_given_as_full_endpoint(server: FakeServer, sleeps: SleepRecorder) -> None:
    server.respond(Canned(body=completion()))
    with make_provider(server.base_url + "/chat/completions/", sleeps) as provider:
        provider.complete(LLMRequest("hi", "m"))
    assert server.requests[0].path == "/v1/chat/completions"


def test_http_date_retry_after(server: FakeServer, sleeps: SleepRecorder) -> None:
    server.respond(
        Canned(503, "busy", headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),  # in the past
        Canned(body=completion()),
    )
    with make_provider(server.base_url, sleeps) as provider:
        provider.complete(LLMRequest("hi", "m"))
    assert sleeps.delays == [0.0]
