"""Where the store lives, and the store's own config file.

Location, first match wins: an explicit path > the ``KITARU_STORE`` environment variable > the
nearest ``.kitaru/`` directory walking up from the working directory > a per-user data directory.

A store directory holds ``config`` (JSON: format, store id, creation time), ``db/`` (the LMDB
environment) and ``locks/``. The config file marks the directory as a store, so that kitaru
never writes into a directory that merely happens to be named like one.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .errors import NotAStoreError, StoreFormatError
from .layout import CONFIG_FILE, DB_DIR, LOCK_DIR

STORE_FORMAT = 1
ENV_VAR = "KITARU_STORE"
PROJECT_DIR = ".kitaru"


class Location:
    """Where the store is, how it was found, and what was looked at on the way (for messages).

    A plain class, not a dataclass: ``kitaru-store log`` reads the config on its fast path
    (cli/quicklog.py), where the dataclasses module would cost ~15 ms of imports.
    """

    __slots__ = ("looked", "path", "source")

    path: Path
    source: str  # "explicit", "env", "project" or "user"
    looked: tuple[str, ...]

    def __init__(self, path: Path, source: str, looked: tuple[str, ...] = ()) -> None:
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "looked", looked)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Location is immutable: cannot set {name!r}")

    def __repr__(self) -> str:
        return f"Location(path={self.path!r}, source={self.source!r}, looked={self.looked!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Location):
            return NotImplemented
        return (self.path, self.source, self.looked) == (other.path, other.source, other.looked)

    def __hash__(self) -> int:
        return hash((self.path, self.source, self.looked))


def user_data_dir() -> Path:
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "kitaru" / "store"


def locate(explicit: str | os.PathLike[str] | None = None, *, cwd: Path | None = None) -> Location:
    if explicit is not None and str(explicit) != "":
        return Location(Path(explicit).expanduser().absolute(), "explicit")
    env = os.environ.get(ENV_VAR)
    if env:
        return Location(Path(env).expanduser().absolute(), "env", (f"${ENV_VAR}={env}",))
    here = (cwd or Path.cwd()).absolute()
    looked = [f"${ENV_VAR} (unset)"]
    for directory in (here, *here.parents):
        candidate = directory / PROJECT_DIR
        if candidate.is_dir():
            return Location(candidate, "project", (*looked, str(candidate)))
    looked.append(f"{PROJECT_DIR}/ in {here} and its parents")
    user = user_data_dir()
    looked.append(str(user))
    return Location(user, "user", tuple(looked))


def read_config(root: Path) -> dict[str, object] | None:
    """The store's config, None if ``root`` holds no store yet; NotAStoreError if it is something else."""
    cfg = root / CONFIG_FILE
    if not cfg.exists():
        # A store another process is creating shows its db/, locks/ and temporary config
        # (.config.*), then its config once linked (init_store): none of them is foreign, even
        # when the config appears between the check above and this scan.
        if root.is_dir() and any(
            p.name not in (DB_DIR, LOCK_DIR, CONFIG_FILE) and not p.name.startswith(f".{CONFIG_FILE}.")
            for p in root.iterdir()
        ):
            raise NotAStoreError(str(root), "it is a non-empty directory without a kitaru config file")
        if root.exists() and not root.is_dir():
            raise NotAStoreError(str(root), "it is a file, not a directory")
        if not cfg.exists():
            return None
    try:
        data = json.loads(cfg.read_text())
        fmt = int(data["format"])
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise NotAStoreError(str(root), f"its config file is unreadable ({exc})") from None
    if data.get("kind") != "kitaru-store":
        raise NotAStoreError(str(root), "its config file is not a kitaru store config")
    if fmt > STORE_FORMAT:
        raise StoreFormatError(
            f"store {root} has format {fmt}; this kitaru understands up to {STORE_FORMAT}",
            hint="upgrade kitaru to open this store",
        )
    return dict(data)


def init_store(root: Path) -> dict[str, object]:
    """Create the store directory and its config (atomically); idempotent under races."""
    import datetime as dt  # here, not at the top: only a new store needs them
    import uuid

    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    (root / LOCK_DIR).mkdir(mode=0o700, exist_ok=True)
    (root / DB_DIR).mkdir(mode=0o700, exist_ok=True)
    cfg = root / CONFIG_FILE
    if cfg.exists():
        existing = read_config(root)
        assert existing is not None
        return existing
    data: dict[str, object] = {
        "kind": "kitaru-store",
        "format": STORE_FORMAT,
        "store_id": uuid.uuid4().hex,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    tmp = root / f".{CONFIG_FILE}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, cfg)  # fails if another process created the config first: theirs wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    existing = read_config(root)
    assert existing is not None
    return existing
