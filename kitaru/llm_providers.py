"""The model-facing half of ``kitaru.llm()``: providers that turn an :class:`LLMRequest` into an
:class:`LLMResult`, and :func:`resolve`, which picks one from the call and the environment.

Two providers:

* :class:`OfflineProvider` (``model="offline"``, ``"offline/<name>"``): deterministic, no network,
  for examples and tests. ``"offline/echo"`` answers with the prompt verbatim.
* :class:`OpenAICompatibleProvider`: ``POST {base_url}/chat/completions`` against OpenAI or any
  server that speaks its API (Ollama, vLLM, llama.cpp, LiteLLM, ...). Needs ``httpx``
  (``pip install 'kitaru[llm]'``), which is imported only when such a provider is created, so
  ``import kitaru`` stays cheap.

Configuration (read by :func:`resolve` on every call):

* ``KITARU_LLM_MODEL``: the model when ``kitaru.llm()`` is given none (may be ``offline...``).
* ``KITARU_LLM_BASE_URL``, else ``OPENAI_BASE_URL``: the API root, e.g. ``http://localhost:11434/v1``.
  Without one, ``https://api.openai.com/v1`` is used, but only when an API key is set.
* ``KITARU_LLM_API_KEY``, else ``OPENAI_API_KEY``: sent as ``Authorization: Bearer``; optional for
  local servers that need none.
* ``KITARU_LLM_TIMEOUT``: seconds per HTTP attempt (default 120).

Nothing ever falls back to the offline provider silently: an unconfigured call raises
:class:`LLMConfigError`.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .errors import KitaruError, UsageError

if TYPE_CHECKING:  # pragma: no cover - typing only; httpx is imported lazily
    import httpx

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_BACKOFF_S = 0.5
MAX_RETRY_AFTER_S = 20.0

OFFLINE_PROVIDER_NAME = "offline"
OPENAI_COMPATIBLE_PROVIDER_NAME = "openai-compatible"

ENV_MODEL = "KITARU_LLM_MODEL"
ENV_BASE_URL = "KITARU_LLM_BASE_URL"
ENV_API_KEY = "KITARU_LLM_API_KEY"
ENV_TIMEOUT = "KITARU_LLM_TIMEOUT"
ENV_OPENAI_BASE_URL = "OPENAI_BASE_URL"
ENV_OPENAI_API_KEY = "OPENAI_API_KEY"

_INSTALL_HINT = "pip install 'kitaru[llm]'"
_MAX_ERROR_TEXT = 500


# --- requests, results, errors ------------------------------------------------------------------


@dataclass(frozen=True)
class LLMRequest:
    """One completion request, as sent to a provider."""

    prompt: str
    model: str  # resolved model name sent to the provider
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class LLMResult:
    """One completion, with what the provider reported about it."""

    text: str
    model: str  # the model the provider says answered
    provider: str  # "offline" or "openai-compatible"
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    latency_ms: float
    finish_reason: str | None = None


class Provider(Protocol):
    name: str

    def complete(self, request: LLMRequest) -> LLMResult: ...


class LLMError(KitaruError):
    """A provider call failed (HTTP status, network, bad response); ``hint`` says what to check.

    ``status_code`` is the last HTTP status received (None for network errors), ``attempts`` how
    many requests were made.
    """

    def __init__(
        self,
        message: str,
        *,
        exec_id: str | None = None,
        name: str | None = None,
        object_id: str | None = None,
        hint: str | None = None,
        status_code: int | None = None,
        attempts: int | None = None,
    ) -> None:
        self.status_code = status_code
        self.attempts = attempts
        super().__init__(message, exec_id=exec_id, name=name, object_id=object_id, hint=hint)


class LLMConfigError(LLMError, UsageError):
    """No usable provider is configured; the message says which environment variables to set."""


# --- the offline provider -----------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
_MAX_QUOTE = 120


def _first_sentence(text: str) -> str:
    flat = " ".join(text.split())
    if not flat:
        return ""
    sentence = _SENTENCE_END.split(flat, maxsplit=1)[0]
    if len(sentence) > _MAX_QUOTE:
        sentence = sentence[: _MAX_QUOTE - 1].rstrip() + "…"
    return sentence


def _count_tokens(*texts: str | None) -> int:
    return sum(len(t.split()) for t in texts if t)


def _request_digest(request: LLMRequest) -> str:
    from blake3 import blake3  # core dependency; imported here to keep `import kitaru` cheap

    canonical = json.dumps(
        {
            "prompt": request.prompt,
            "model": request.model,
            "system": request.system,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return blake3(canonical.encode("utf-8")).hexdigest()[:12]


class OfflineProvider:
    """Deterministic answers without a network: the same request always gives the same text.

    ``offline`` (or ``offline/<anything>``) answers with a short sentence quoting the prompt's
    first sentence and a digest of the whole request (prompt, system, model, temperature,
    max_tokens), so different requests give different answers. ``offline/echo`` answers with the
    prompt verbatim. ``max_tokens`` truncates the answer to that many whitespace-separated words
    (``finish_reason="length"``). Token counts are whitespace word counts.
    """

    name = OFFLINE_PROVIDER_NAME

    def complete(self, request: LLMRequest) -> LLMResult:
        start = time.perf_counter()
        variant = _offline_variant(request.model)
        if variant == "echo":
            text = request.prompt
        else:
            quoted = _first_sentence(request.prompt) or "(empty prompt)"
            text = f'Offline answer [{_request_digest(request)}] to "{quoted}"'
            if request.system and request.system.strip():
                text += f" (following: {_first_sentence(request.system)})"
        finish_reason = "stop"
        if request.max_tokens is not None and _count_tokens(text) > max(request.max_tokens, 0):
            text = " ".join(text.split()[: max(request.max_tokens, 0)])
            finish_reason = "length"
        prompt_tokens = _count_tokens(request.system, request.prompt)
        completion_tokens = _count_tokens(text)
        return LLMResult(
            text=text,
            model=request.model,
            provider=self.name,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
            latency_ms=(time.perf_counter() - start) * 1000.0,
            finish_reason=finish_reason,
        )

    def __repr__(self) -> str:
        return "OfflineProvider()"


def _is_offline_model(model: str) -> bool:
    return model == "offline" or model.startswith("offline/")


def _offline_variant(model: str) -> str:
    """``"echo"`` for ``offline/echo`` (or a bare ``echo``), otherwise the default answerer."""
    variant = model.split("/", 1)[1] if model.startswith("offline/") else model
    return "echo" if variant == "echo" else "default"


# --- the OpenAI-compatible HTTP provider --------------------------------------------------------


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:
        raise LLMConfigError(
            "kitaru.llm() needs httpx to call an OpenAI-compatible server, and it is not installed "
            '(or use model="offline")',
            hint=_INSTALL_HINT,
        ) from exc
    return httpx


def _normalize_base_url(base_url: str) -> str:
    url = base_url.strip().rstrip("/")
    if url.endswith("/chat/completions"):
        url = url[: -len("/chat/completions")]
    if not url.startswith(("http://", "https://")):
        raise LLMConfigError(
            f"LLM base URL {base_url!r} is not an http(s) URL",
            hint=f"set {ENV_BASE_URL} to the API root, e.g. http://localhost:11434/v1",
        )
    return url


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return max(seconds, 0.0)


def _server_error_message(response: httpx.Response) -> str:
    """The server's own explanation of an error response, as short text."""
    try:
        data = response.json()
    except ValueError:
        data = None
    message: Any = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            message = err.get("message") or err.get("type") or err.get("code")
        elif isinstance(err, str):
            message = err
        if not message:
            message = data.get("message") or data.get("detail")
    if message is None or message == "":
        message = response.text.strip() or response.reason_phrase or "(empty body)"
    if not isinstance(message, str):
        message = json.dumps(message, ensure_ascii=False)
    text = " ".join(message.split())
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 1] + "…"


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _message_text(content: Any) -> str | None:
    """``choices[0].message.content`` as text: a string, or a list of ``{"type": "text"}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                return None
        return "".join(parts)
    return None


class OpenAICompatibleProvider:
    """Chat completions over HTTP against OpenAI or any server that speaks its API.

    One ``httpx.Client`` per provider (created on first use, shared by threads, reused across
    calls). 429, 5xx and connection failures are retried up to ``max_attempts`` times with
    exponential backoff, honouring ``Retry-After`` up to ``max_retry_after`` seconds; other errors
    and malformed responses raise :class:`LLMError` at once.
    """

    name = OPENAI_COMPATIBLE_PROVIDER_NAME

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff: float = DEFAULT_BACKOFF_S,
        max_retry_after: float = MAX_RETRY_AFTER_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._httpx = _import_httpx()
        self.base_url = _normalize_base_url(base_url)
        self.url = f"{self.base_url}/chat/completions"
        self._api_key = api_key or None
        self.timeout = float(timeout)
        self.max_attempts = max(1, int(max_attempts))
        self.backoff = max(0.0, float(backoff))
        self.max_retry_after = max(0.0, float(max_retry_after))
        self._sleep = sleep
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        auth = "with API key" if self._api_key else "no API key"
        return f"OpenAICompatibleProvider({self.base_url!r}, {auth}, timeout={self.timeout:g})"

    @property
    def has_api_key(self) -> bool:
        return self._api_key is not None

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None or self._client.is_closed:
                headers = {"Accept": "application/json"}
                if self._api_key:
                    headers["Authorization"] = f"Bearer {self._api_key}"
                self._client = self._httpx.Client(timeout=self.timeout, headers=headers)
            return self._client

    def close(self) -> None:
        """Close the HTTP connections; the provider reopens them if used again."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __enter__(self) -> OpenAICompatibleProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def request_body(request: LLMRequest) -> dict[str, Any]:
        """The JSON body sent for ``request``."""
        messages: list[dict[str, str]] = []
        if request.system is not None:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": request.prompt})
        body: dict[str, Any] = {"model": request.model, "messages": messages}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        return body

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        base = self.backoff * 2.0 ** (attempt - 1)
        return base * (1.0 + 0.25 * random.random())

    def complete(self, request: LLMRequest) -> LLMResult:
        hx = self._httpx
        body = self.request_body(request)
        client = self._http()
        start = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = client.post(self.url, json=body)
            except hx.TimeoutException as exc:
                if isinstance(exc, hx.ConnectTimeout) and attempt < self.max_attempts:
                    self._sleep(self._retry_delay(attempt, None))
                    continue
                raise LLMError(
                    f"LLM request to {self.url} timed out after {attempt} attempt(s) "
                    f"({type(exc).__name__}, timeout {self.timeout:g}s)",
                    hint=f"the server may be overloaded or the model slow; raise {ENV_TIMEOUT} (seconds)",
                    attempts=attempt,
                ) from exc
            except hx.UnsupportedProtocol as exc:
                raise LLMConfigError(
                    f"cannot call {self.url}: {exc}",
                    hint=f"set {ENV_BASE_URL} to an http(s) URL such as http://localhost:11434/v1",
                    attempts=attempt,
                ) from exc
            except hx.TransportError as exc:
                if attempt < self.max_attempts:
                    self._sleep(self._retry_delay(attempt, None))
                    continue
                raise LLMError(
                    f"LLM request to {self.url} failed after {attempt} attempt(s): "
                    f"{type(exc).__name__}: {exc}",
                    hint=f"is the server running and reachable at {self.base_url}? "
                    f"check {ENV_BASE_URL} (or {ENV_OPENAI_BASE_URL})",
                    attempts=attempt,
                ) from exc
            except hx.HTTPError as exc:  # decoding errors and the like: not worth retrying
                raise LLMError(
                    f"LLM request to {self.url} failed: {type(exc).__name__}: {exc}",
                    hint=f"is {self.base_url} an OpenAI-compatible API (usually ending in /v1)?",
                    attempts=attempt,
                ) from exc

            status = response.status_code
            if status == 429 or status >= 500:
                if attempt < self.max_attempts:
                    retry_after = _parse_retry_after(response.headers.get("retry-after"))
                    response.close()
                    self._sleep(self._retry_delay(attempt, retry_after))
                    continue
                raise self._status_error(response, attempt)
            if not 200 <= status < 300:
                raise self._status_error(response, attempt)
            return self._parse(response, request, start, attempt)

    def _status_error(self, response: httpx.Response, attempts: int) -> LLMError:
        status = response.status_code
        detail = _server_error_message(response)
        if status in (401, 403):
            hint = f"check the API key in {ENV_API_KEY} (or {ENV_OPENAI_API_KEY})"
            if not self._api_key:
                hint = f"the server wants an API key: set {ENV_API_KEY} (or {ENV_OPENAI_API_KEY})"
        elif status == 404:
            hint = (
                f"check the model name and {ENV_BASE_URL} ({self.base_url}); "
                "OpenAI-compatible APIs usually live under /v1"
            )
        elif 300 <= status < 400:
            where = response.headers.get("location")
            target = f" to {where}" if where else ""
            hint = f"the server redirects{target}; set {ENV_BASE_URL} to the final API URL"
        elif status == 429:
            hint = "rate limited or out of quota: wait, lower concurrency, or check your plan"
        elif status >= 500:
            hint = f"the server at {self.base_url} is failing; check its logs or try again later"
        else:
            hint = "the server rejected the request; check the model name and parameters"
        retried = f" after {attempts} attempts" if attempts > 1 else ""
        return LLMError(
            f"LLM request to {self.url} failed{retried}: HTTP {status}: {detail}",
            hint=hint,
            status_code=status,
            attempts=attempts,
        )

    def _malformed(self, what: str, response: httpx.Response, attempts: int) -> LLMError:
        return LLMError(
            f"LLM response from {self.url} is malformed: {what}",
            hint=f"is {self.base_url} an OpenAI-compatible API (usually ending in /v1)?",
            status_code=response.status_code,
            attempts=attempts,
        )

    def _parse(self, response: httpx.Response, request: LLMRequest, start: float, attempts: int) -> LLMResult:
        try:
            data = response.json()
        except ValueError:
            snippet = " ".join(response.text.split())[:200]
            raise self._malformed(f"not JSON: {snippet!r}", response, attempts) from None
        if not isinstance(data, dict):
            raise self._malformed(f"expected a JSON object, got {type(data).__name__}", response, attempts)
        if "error" in data and "choices" not in data:
            raise LLMError(
                f"LLM request to {self.url} failed: {_server_error_message(response)}",
                hint="the server answered with an error object; check the model name and parameters",
                status_code=response.status_code,
                attempts=attempts,
            )
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            raise self._malformed("no choices[0]", response, attempts)
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, Mapping):
            raise self._malformed("choices[0] has no message", response, attempts)
        text = _message_text(message.get("content"))
        if text is None:
            refusal = message.get("refusal")
            what = f"the model refused: {refusal}" if isinstance(refusal, str) else "no text content"
            raise self._malformed(f"choices[0].message has {what}", response, attempts)
        usage = data.get("usage")
        usage = usage if isinstance(usage, Mapping) else {}
        prompt_tokens = _optional_int(usage.get("prompt_tokens"))
        completion_tokens = _optional_int(usage.get("completion_tokens"))
        total_tokens = _optional_int(usage.get("total_tokens"))
        if total_tokens is None and prompt_tokens is not None and completion_tokens is not None:
            total_tokens = prompt_tokens + completion_tokens
        model = data.get("model")
        finish_reason = choice.get("finish_reason")
        return LLMResult(
            text=text,
            model=model if isinstance(model, str) and model else request.model,
            provider=self.name,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=total_tokens,
            latency_ms=(time.perf_counter() - start) * 1000.0,
            finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        )


# --- resolution --------------------------------------------------------------------------------

_OFFLINE = OfflineProvider()
_http_providers: dict[tuple[str, str | None, float], OpenAICompatibleProvider] = {}
_http_providers_lock = threading.Lock()


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def _timeout_from_env() -> float:
    raw = _env(ENV_TIMEOUT)
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        timeout = float(raw)
    except ValueError:
        timeout = float("nan")
    if not timeout > 0 or timeout == float("inf"):
        raise LLMConfigError(
            f"{ENV_TIMEOUT}={raw!r} is not a positive number of seconds",
            hint=f"set {ENV_TIMEOUT} to e.g. 120, or unset it for the default",
        )
    return timeout


def _http_provider(base_url: str, api_key: str | None, timeout: float) -> OpenAICompatibleProvider:
    """One shared provider (and so one connection pool) per configuration."""
    key = (_normalize_base_url(base_url), api_key, timeout)
    with _http_providers_lock:
        provider = _http_providers.get(key)
        if provider is None:
            provider = OpenAICompatibleProvider(base_url, api_key, timeout=timeout)
            _http_providers[key] = provider
        return provider


def resolve(model: str | None) -> tuple[Provider, str]:
    """Pick the provider and the model name for a kitaru.llm() call.

    ``model`` (else ``KITARU_LLM_MODEL``) of ``"offline"`` or ``"offline/<name>"`` selects the
    :class:`OfflineProvider`, and is returned unchanged as the model name. Anything else goes to
    the OpenAI-compatible server at ``KITARU_LLM_BASE_URL`` / ``OPENAI_BASE_URL`` (or OpenAI
    itself when only an API key is set). A blank ``model`` counts as not given. Raises
    :class:`LLMConfigError` when no server is configured or no model is named; never falls back
    to the offline provider.
    """
    chosen = model.strip() if model is not None else ""
    if not chosen:
        chosen = _env(ENV_MODEL) or ""
    if chosen and _is_offline_model(chosen):
        return _OFFLINE, chosen

    base_url = _env(ENV_BASE_URL, ENV_OPENAI_BASE_URL)
    api_key = _env(ENV_API_KEY, ENV_OPENAI_API_KEY)
    if base_url is None:
        if api_key is None:
            raise LLMConfigError(
                f"kitaru.llm() has no model provider configured: set {ENV_BASE_URL} (and {ENV_API_KEY} "
                f"if the server needs a key), or {ENV_API_KEY} alone to use {DEFAULT_OPENAI_BASE_URL}, "
                'or use model="offline" for deterministic offline answers',
                hint=(
                    f"e.g. {ENV_BASE_URL}=http://localhost:11434/v1 for Ollama; "
                    f"{ENV_OPENAI_BASE_URL} and {ENV_OPENAI_API_KEY} are read too"
                ),
            )
        base_url = DEFAULT_OPENAI_BASE_URL
    if not chosen:
        raise LLMConfigError(
            f"kitaru.llm() was given no model: pass model=... or set {ENV_MODEL}",
            hint="e.g. gpt-4o-mini for OpenAI, llama3.1 for Ollama, or offline for offline answers",
        )
    timeout = _timeout_from_env()
    return _http_provider(base_url, api_key, timeout), chosen


__all__ = [
    "LLMConfigError",
    "LLMError",
    "LLMRequest",
    "LLMResult",
    "OfflineProvider",
    "OpenAICompatibleProvider",
    "Provider",
    "resolve",
]
