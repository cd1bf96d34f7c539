"""Object ids, execution ids, artifact ids and their short (prefix) forms.

Object ids are 32-byte BLAKE3 digests shown as 64 lowercase hex characters. Execution and
artifact ids are random UUIDs (version 4) shown as 32 hex characters without dashes; dashed
input is accepted. Random rather than time-ordered UUIDs keep short prefixes unique the way
git's short hashes are: time-ordered ids share their leading characters.
"""

from __future__ import annotations

import os

from .errors import InvalidIdError

OBJECT_ID_BYTES = 32
OBJECT_ID_HEX = OBJECT_ID_BYTES * 2
UUID_HEX = 32
UUID_BYTES = UUID_HEX // 2
MIN_PREFIX = 4
_HEX = frozenset("0123456789abcdef")
ID_HINT = "object ids are 64 hex characters, execution and artifact ids 32; a unique prefix of 4+ works"


def new_uuid() -> str:
    """A random (version 4) UUID as 32 hex digits: uuid.uuid4().hex, without building a UUID."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw.hex()


def normalize_hex(text: str, *, what: str, full_length: int) -> str:
    """Lower-case, strip dashes and whitespace, and check that ``text`` is hex of a usable length."""
    if not isinstance(text, str):
        raise InvalidIdError(f"{what} must be a string, not {type(text).__name__}", hint=ID_HINT)
    cleaned = text.strip().lower().replace("-", "")
    if not cleaned or not set(cleaned) <= _HEX:
        raise InvalidIdError(
            f"{what} {text!r} is not a hex id",
            name=text,
            hint=f"{what}s are hex strings of up to {full_length} characters (at least {MIN_PREFIX})",
        )
    if len(cleaned) > full_length:
        raise InvalidIdError(
            f"{what} {text!r} is longer than {full_length} hex characters", name=text, hint=ID_HINT
        )
    if len(cleaned) < MIN_PREFIX:
        raise InvalidIdError(
            f"{what} prefix {text!r} is too short", name=text, hint=f"give at least {MIN_PREFIX} characters"
        )
    return cleaned


def short(hex_id: str, length: int = 12) -> str:
    return hex_id[:length]
