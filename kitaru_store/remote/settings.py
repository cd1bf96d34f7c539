"""Where remotes are configured, and what a store remembers about them.

* ``<store>/remotes.json``: the configured remotes (name, URL, endpoint, region, profile and the
  SDK opt-ins). Rewritten whole, atomically (a temporary file renamed over it), under the
  exclusive lock ``locks/remotes.lock``. Credentials are never written: they come from the
  standard AWS environment variables, shared config files or the named profile.
* ``<store>/remote-tracking/<remote>/<exec id>``: for each execution pushed to or pulled from a
  remote, the ETag the remote gave that version of its manifest and the BLAKE3 of the manifest's
  bytes. It tells "the remote has not changed since we last synced" and "we have not changed
  since we last synced" apart without downloading anything (docs/remotes.md, "Which version
  wins"). Losing these files costs only extra requests; they are a cache, not state.

Only the standard library at import time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kitaru_store import layout
from kitaru_store.locks import FileLock

from .errors import RemoteError, RemoteNotFoundError

REMOTES_FILE = "remotes.json"
REMOTES_FORMAT = 1
TRACKING_DIR = "remote-tracking"
LOCK_FILE = "remotes.lock"
# KITARU_REMOTE=NAME turns on the load fallback and write-through for remote NAME in this process;
# KITARU_REMOTE=off turns both off whatever remotes.json says.
ENV_VAR = "KITARU_REMOTE"
OFF_VALUES = frozenset({"0", "off", "no", "false", "none"})
DEFAULT_NAME = "origin"
# Matched whole (fullmatch): "$" would also accept a name ending in a newline. The name is a
# directory under remote-tracking/, so it can never be ".", ".." or hold a separator.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_EXEC_ID = re.compile(r"[0-9a-f]{32}")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9]$")
_FILE_HINT = "fix or delete it, then add the remotes again with `kitaru-store remote add`"
_URL_HINT = "a remote URL is s3://BUCKET or s3://BUCKET/PREFIX (MinIO, Ceph, ...: add --endpoint-url)"


@dataclass(frozen=True, slots=True)
class RemoteURL:
    """``s3://bucket/prefix``: ``prefix`` is empty or ends with ``/``."""

    bucket: str
    prefix: str = ""

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, relative: str) -> str:
        return self.prefix + relative


def parse_url(text: str) -> RemoteURL:
    parts = urlsplit(text.strip())
    if parts.scheme != "s3":
        raise RemoteError(f"unsupported remote URL {text!r}", name=text, hint=_URL_HINT)
    if "@" in parts.netloc or parts.password or parts.username:
        raise RemoteError(
            f"remote URL {text!r} holds credentials",
            name=text,
            hint="credentials are never stored: set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or a profile",
        )
    if parts.query or parts.fragment:
        raise RemoteError(f"remote URL {text!r} has a query or fragment", name=text, hint=_URL_HINT)
    bucket = parts.netloc
    if not _BUCKET.match(bucket):
        raise RemoteError(f"{bucket!r} is not a bucket name", name=text, hint=_URL_HINT)
    segments = [s for s in parts.path.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise RemoteError(f"remote URL {text!r} has '.' or '..' in its prefix", name=text, hint=_URL_HINT)
    prefix = "".join(s + "/" for s in segments)
    return RemoteURL(bucket, prefix)


def check_endpoint(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteError(
            f"endpoint URL {url!r} is not an http(s) URL",
            name=url,
            hint="for example http://127.0.0.1:9000 (MinIO) or https://s3.example.com",
        )
    if parts.username or parts.password:
        raise RemoteError(
            f"endpoint URL {url!r} holds credentials",
            name=url,
            hint="credentials are never stored: use the AWS environment variables or a profile",
        )
    return url.rstrip("/")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RemoteError(
            f"{name!r} is not a usable remote name",
            name=str(name),
            hint="1-64 characters: letters, digits, '.', '_' and '-', starting with a letter or digit",
        )
    return name


@dataclass(frozen=True, slots=True)
class RemoteSpec:
    """One configured remote, as kept in remotes.json."""

    name: str
    url: str
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    fallback: bool = False  # load() fetches objects missing locally from this remote
    write_through: bool = False  # every commit that changes an execution pushes it here

    @property
    def location(self) -> RemoteURL:
        return parse_url(self.url)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> RemoteSpec:
        """The spec kept in remotes.json under ``name``, checked like `remote add` checks it."""
        known = {f.name for f in fields(cls)} - {"name"}
        given = {k: v for k, v in data.items() if k in known}
        for key in ("url", "endpoint_url", "region", "profile"):
            if not isinstance(given.get(key, ""), str | None):
                raise TypeError(f"{key} of remote {name!r} is not text")
        for key in ("fallback", "write_through"):
            if not isinstance(given.get(key, False), bool):
                raise TypeError(f"{key} of remote {name!r} is not true or false")
        if not isinstance(given.get("url"), str):
            raise TypeError(f"remote {name!r} has no url")
        return make_spec(name, **given)


def make_spec(
    name: str,
    url: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    fallback: bool = False,
    write_through: bool = False,
) -> RemoteSpec:
    """A checked spec: the URL in its normal form, the endpoint an http(s) URL without credentials."""
    return RemoteSpec(
        name=check_name(name),
        url=str(parse_url(url)),
        endpoint_url=check_endpoint(endpoint_url) if endpoint_url else None,
        region=region or None,
        profile=profile or None,
        fallback=bool(fallback),
        write_through=bool(write_through),
    )


# --- remotes.json ----------------------------------------------------------------------------


def _file(root: Path) -> Path:
    return root / REMOTES_FILE


def load(root: Path) -> dict[str, RemoteSpec]:
    """The configured remotes, by name (empty if there is no remotes.json)."""
    path = _file(root)
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise RemoteError(f"cannot read {path}: {exc.strerror}", hint="check its permissions") from None
    try:
        data = json.loads(raw)
        fmt = int(data.get("format", 1))
        remotes = data["remotes"]
        if not isinstance(remotes, dict):
            raise TypeError("remotes is not an object")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RemoteError(
            f"{path} is not a remotes file: {exc}",
            hint=_FILE_HINT,
        ) from None
    if fmt > REMOTES_FORMAT:
        raise RemoteError(
            f"{path} has format {fmt}; this kitaru understands up to {REMOTES_FORMAT}",
            hint="upgrade kitaru",
        )
    try:  # names and URLs are checked as `remote add` checks them: a name is a directory here
        return {name: RemoteSpec.from_dict(name, spec) for name, spec in sorted(remotes.items())}
    except RemoteError as exc:
        raise RemoteError(
            f"{path} holds a remote that cannot be used: {exc.message}",
            name=exc.name,
            hint=_FILE_HINT,
        ) from None
    except (TypeError, AttributeError) as exc:
        raise RemoteError(
            f"{path} is not a remotes file: {exc}",
            hint=_FILE_HINT,
        ) from None


def _save(root: Path, remotes: dict[str, RemoteSpec]) -> None:
    data = {
        "format": REMOTES_FORMAT,
        "remotes": {
            name: {k: v for k, v in spec.to_dict().items() if k != "name"}
            for name, spec in sorted(remotes.items())
        },
    }
    tmp = root / f".{REMOTES_FILE}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, _file(root))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _locked(root: Path) -> FileLock:
    (root / layout.LOCK_DIR).mkdir(mode=0o700, exist_ok=True)
    lock = FileLock(layout.lock_file(root, LOCK_FILE))
    lock.acquire(exclusive=True, timeout=10.0, what="changing the remotes")
    return lock


def add(root: Path, spec: RemoteSpec) -> RemoteSpec:
    lock = _locked(root)
    try:
        remotes = load(root)
        if spec.name in remotes:
            raise RemoteError(
                f"remote {spec.name!r} exists already ({remotes[spec.name].url})",
                name=spec.name,
                hint="remove it first, change it with `kitaru-store remote set`, or pick another name",
            )
        remotes[spec.name] = spec
        _save(root, remotes)
    finally:
        lock.release()
    return spec


def update(root: Path, name: str, **changes: Any) -> RemoteSpec:
    """Change fields of a configured remote (None leaves a field as it is)."""
    lock = _locked(root)
    try:
        remotes = load(root)
        current = _require(remotes, name)
        wanted = {k: v for k, v in changes.items() if v is not None}
        merged = replace(current, **wanted)
        spec = make_spec(
            merged.name,
            merged.url,
            endpoint_url=merged.endpoint_url,
            region=merged.region,
            profile=merged.profile,
            fallback=merged.fallback,
            write_through=merged.write_through,
        )
        remotes[name] = spec
        _save(root, remotes)
    finally:
        lock.release()
    return spec


def remove(root: Path, name: str) -> RemoteSpec:
    """Forget a remote and what this store tracked about it. Nothing on the remote changes."""
    lock = _locked(root)
    try:
        remotes = load(root)
        spec = _require(remotes, name)
        del remotes[name]
        _save(root, remotes)
        shutil.rmtree(root / TRACKING_DIR / name, ignore_errors=True)
    finally:
        lock.release()
    return spec


def _require(remotes: dict[str, RemoteSpec], name: str) -> RemoteSpec:
    spec = remotes.get(name)
    if spec is None:
        known = ", ".join(remotes) or "(none)"
        raise RemoteNotFoundError(
            f"no remote named {name!r}",
            name=name,
            hint=f"configured remotes: {known}; add one with `kitaru-store remote add NAME s3://BUCKET/PREFIX`",
        )
    return spec


def get(root: Path, name: str | None = None) -> RemoteSpec:
    """The remote ``name``; without a name: ``origin``, else the only remote there is."""
    remotes = load(root)
    if name is not None:
        return _require(remotes, name)
    if DEFAULT_NAME in remotes:
        return remotes[DEFAULT_NAME]
    if len(remotes) == 1:
        return next(iter(remotes.values()))
    if not remotes:
        raise RemoteNotFoundError(
            "this store has no remote",
            hint="add one with `kitaru-store remote add origin s3://BUCKET/PREFIX`",
        )
    raise RemoteError(
        f"this store has several remotes ({', '.join(remotes)}) and none is named {DEFAULT_NAME!r}",
        hint="name the remote with --remote NAME",
    )


def sdk_remotes(root: Path) -> tuple[RemoteSpec | None, RemoteSpec | None]:
    """(fallback remote, write-through remote) for the SDK, from KITARU_REMOTE or remotes.json."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env.lower() in OFF_VALUES:
        return None, None
    if not _file(root).exists():
        if env:
            _require({}, env)
        return None, None
    remotes = load(root)
    if env:
        spec = _require(remotes, env)
        return spec, spec
    fallback = next((s for s in remotes.values() if s.fallback), None)
    write_through = next((s for s in remotes.values() if s.write_through), None)
    return fallback, write_through


# --- tracking --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tracked:
    """What the remote held the last time this store pushed or pulled one execution."""

    etag: str  # the remote's ETag for that manifest version
    digest: str  # BLAKE3 (hex) of the manifest's bytes


def _tracking_file(root: Path, remote: str, exec_id: str) -> Path:
    if not _EXEC_ID.fullmatch(exec_id):
        raise RemoteError(f"{exec_id!r} is not an execution id", hint="give a full execution id")
    return root / TRACKING_DIR / check_name(remote) / exec_id


def read_tracking(root: Path, remote: str, exec_id: str) -> Tracked | None:
    try:
        data = json.loads(_tracking_file(root, remote, exec_id).read_text())
        return Tracked(str(data["etag"]), str(data["digest"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or damaged: a cache miss


def write_tracking(root: Path, remote: str, exec_id: str, tracked: Tracked) -> None:
    path = _tracking_file(root, remote, exec_id)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.parent / f".{exec_id}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_text(json.dumps({"etag": tracked.etag, "digest": tracked.digest}) + "\n")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a cache: failing to write it only costs requests later


__all__ = [
    "DEFAULT_NAME",
    "ENV_VAR",
    "RemoteSpec",
    "RemoteURL",
    "Tracked",
    "add",
    "get",
    "load",
    "make_spec",
    "parse_url",
    "remove",
    "update",
]
