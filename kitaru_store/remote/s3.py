"""The S3 transport: five operations on keys under a bucket and prefix, through boto3.

boto3 is imported when the first client is made, never at import time: ``kitaru-store --help``
and ``import kitaru`` do not load it, and a store without remotes never needs it installed.
Every botocore failure leaves this module as a typed RemoteError (errors.py).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

from .errors import (
    PreconditionFailed,
    RemoteAuthError,
    RemoteError,
    RemoteNotFoundError,
    RemoteTooLargeError,
)
from .settings import RemoteSpec

_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "SignatureDoesNotMatch",
        "InvalidSecurity",
        "AuthorizationHeaderMalformed",
        "403",
    }
)
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412"})
_CRED_HINT = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or AWS_PROFILE, or"
    " `kitaru-store remote set NAME --profile P`; credentials are never stored in the store"
)


def _install_hint() -> str:
    return "remotes need boto3: pip install 'kitaru[remote]'"


_shared_lock = threading.Lock()
_shared_loader: list[Any] = []


def _session(profile: str | None) -> Any:
    """A fresh boto3 session (credentials are looked up anew), sharing one botocore data loader:
    parsing the S3 service model again for every client costs some 50 ms."""
    import boto3
    import botocore.session

    with _shared_lock:  # botocore sessions are not thread-safe while they are set up
        core = botocore.session.Session()
        if _shared_loader:
            core.register_component("data_loader", _shared_loader[0])
        else:
            _shared_loader.append(core.get_component("data_loader"))
        return boto3.session.Session(botocore_session=core, profile_name=profile)


class S3Transport:
    """Keys relative to the remote's prefix; bodies are bytes. Thread-safe (one boto3 client)."""

    def __init__(self, spec: RemoteSpec, *, pool: int = 10) -> None:
        self.spec = spec
        self.location = spec.location
        self._pool = pool
        self._client: Any = None
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()  # requests sent, by operation (tests and reports)

    def describe(self) -> str:
        where = f" at {self.spec.endpoint_url}" if self.spec.endpoint_url else ""
        return f"{self.location}{where}"

    # -- the client -----------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        try:
            import boto3  # noqa: F401  (only to say what is missing when it is)
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError
        except ImportError as exc:
            raise RemoteError(f"cannot use remote {self.spec.name!r}: {exc}", hint=_install_hint()) from None
        options: dict[str, Any] = {
            "retries": {"mode": "standard", "max_attempts": 4},
            "connect_timeout": 10,
            "read_timeout": 60,
            "max_pool_connections": self._pool,
            # boto3 1.36+ adds CRC checksums to every upload by default, which several
            # S3-compatible servers reject; send them only where S3 requires them.
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
        }
        if self.spec.endpoint_url:
            options["s3"] = {"addressing_style": "path"}
        try:
            session = _session(self.spec.profile)
            region = self.spec.region or session.region_name or "us-east-1"
            return session.client(
                "s3", endpoint_url=self.spec.endpoint_url, region_name=region, config=Config(**options)
            )
        except BotoCoreError as exc:
            raise self._translate(exc, "connecting") from None

    # -- errors ---------------------------------------------------------------------------

    def _translate(self, exc: Exception, what: str, key: str | None = None) -> RemoteError:
        from botocore.exceptions import (
            ClientError,
            ConnectionError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
            ProfileNotFound,
        )

        where = f"{what} {self.location.key(key)}" if key is not None else what
        remote = f"remote {self.spec.name!r} ({self.describe()})"
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return RemoteAuthError(f"no usable credentials for {remote}: {exc}", hint=_CRED_HINT)
        if isinstance(exc, ProfileNotFound):
            return RemoteAuthError(f"{remote}: {exc}", hint=_CRED_HINT)
        if isinstance(exc, EndpointConnectionError | ConnectionError):
            return RemoteError(
                f"cannot reach {remote} while {where}: {exc}",
                hint="check the network and the endpoint URL (`kitaru-store remote list`); nothing"
                " half-written is left behind: run the command again",
            )
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = error.get("Message") or str(exc)
            if code in _AUTH_CODES or status == 403:
                return RemoteAuthError(f"{remote} refused access while {where}: {message}", hint=_CRED_HINT)
            if code == "NoSuchBucket":
                return RemoteNotFoundError(
                    f"bucket {self.location.bucket!r} does not exist on {remote}",
                    hint="create the bucket first (aws s3 mb, mc mb, ...), or fix the URL",
                )
            if code in _CONFLICT_CODES or status in (409, 412):
                return PreconditionFailed(f"{where} on {remote}: the key changed meanwhile ({code})")
            if code == "NotImplemented" or status == 501:
                return RemoteError(
                    f"{remote} does not support a request needed for {where}: {message}",
                    hint="kitaru needs conditional writes (If-None-Match: * and If-Match on PUT):"
                    " AWS S3, MinIO and Ceph RGW support them",
                )
            return RemoteError(f"{remote} failed while {where}: {code or status}: {message}")
        return RemoteError(f"{remote} failed while {where}: {exc}")

    def _missing(self, exc: Exception) -> bool:
        from botocore.exceptions import ClientError

        if not isinstance(exc, ClientError):
            return False
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code in ("NoSuchKey", "404", "NotFound") or (status == 404 and code != "NoSuchBucket")

    def _count(self, op: str) -> None:
        with self._lock:
            self.counts[op] += 1

    # -- operations -----------------------------------------------------------------------

    def head(self, key: str) -> str | None:
        """The key's ETag, or None if it does not exist."""
        client = self.client
        self._count("head")
        try:
            response = client.head_object(Bucket=self.location.bucket, Key=self.location.key(key))
        except Exception as exc:
            if self._missing(exc):
                return None
            raise self._translate(exc, "checking", key) from None
        return _etag(response, self.location.key(key))

    def get(self, key: str, *, limit: int | None = None) -> tuple[bytes, str] | None:
        """(body, ETag), or None if the key does not exist.

        With ``limit``, a body longer than ``limit`` bytes raises RemoteTooLargeError: refused on
        its Content-Length before any of it is read, else after at most ``limit + 1`` bytes.
        """
        client = self.client
        self._count("get")
        try:
            response = client.get_object(Bucket=self.location.bucket, Key=self.location.key(key))
            stream = response["Body"]
            try:
                body = read_capped(stream, response.get("ContentLength"), limit, key)
            finally:
                stream.close()  # unread bytes are dropped with the connection, never read
        except RemoteTooLargeError:
            raise
        except Exception as exc:
            if self._missing(exc):
                return None
            raise self._translate(exc, "reading", key) from None
        return body, _etag(response, self.location.key(key))

    def put(self, key: str, body: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        """Write ``body``; returns the new ETag. A failed condition raises PreconditionFailed."""
        client = self.client
        extra: dict[str, Any] = {}
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        if if_match is not None:
            extra["IfMatch"] = if_match
        self._count("put")
        try:
            response = client.put_object(
                Bucket=self.location.bucket,
                Key=self.location.key(key),
                Body=body,
                ContentType="application/octet-stream",
                **extra,
            )
        except Exception as exc:
            if if_match is not None and self._missing(exc):
                raise PreconditionFailed(f"{self.location.key(key)} was deleted meanwhile") from None
            raise self._translate(exc, "writing", key) from None
        return _etag(response, self.location.key(key))

    def list(self, prefix: str) -> Iterator[tuple[str, str]]:
        """(key relative to the remote's prefix, ETag) for every key under ``prefix``."""
        client = self.client
        base = self.location.prefix
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.location.bucket, "Prefix": base + prefix}
            if token:
                kwargs["ContinuationToken"] = token
            self._count("list")
            try:
                page = client.list_objects_v2(**kwargs)
            except Exception as exc:
                raise self._translate(exc, "listing", prefix) from None
            for item in page.get("Contents", ()):
                yield str(item["Key"])[len(base) :], _etag(item, str(item["Key"]))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return


# Read a body in pieces of this size: never more than the cap (plus one piece) in memory, even
# from a server that sends no Content-Length or a wrong one.
_PIECE = 256 << 10
_MAX_ETAG = 1024


def read_capped(stream: Any, length: Any, limit: int | None, key: str) -> bytes:
    """The whole of ``stream`` (a botocore StreamingBody), refused once longer than ``limit``."""
    if limit is None:
        return bytes(stream.read())
    if isinstance(length, int) and length > limit:
        raise RemoteTooLargeError(key, limit, bytes(stream.read(16)))
    out = bytearray()
    while True:
        piece = stream.read(min(_PIECE, limit + 1 - len(out)))
        if not piece:
            return bytes(out)
        out += piece
        if len(out) > limit:
            raise RemoteTooLargeError(key, limit, bytes(out[:16]))


def _etag(response: Any, where: str) -> str:
    """The ETag a server sent: printable ASCII of sane length (it is sent back in If-Match and
    kept in tracking files), else a RemoteError."""
    etag = response.get("ETag", "")
    if not isinstance(etag, str) or len(etag) > _MAX_ETAG or not (etag.isascii() and etag.isprintable()):
        raise RemoteError(
            f"the server sent an unusable ETag for {where}: {str(etag)[:80]!r}",
            hint="the server is not S3-compatible; use another endpoint",
        )
    return etag


__all__ = ["S3Transport", "read_capped"]
