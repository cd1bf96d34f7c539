"""Validation of user-given names (artifacts, checkpoints, flows, pins). No heavy imports.

Every name is at most MAX_NAME characters. A name that is part of an LMDB key is also limited in
UTF-8 bytes: LMDB refuses keys longer than LMDB_MAX_KEY, and each key leaves its own budget for
the name in it (docs/design.md 4.4). The limits are checked here, at the API, so that a write
never reaches LMDB with a key it refuses.
"""

from __future__ import annotations

import re

from . import layout
from .errors import InvalidNameError

MAX_NAME = 255  # characters, every kind of name
ARTIFACT_TYPES: tuple[str, ...] = ("prompt", "response", "context", "input", "output", "blob")
# An execution's statuses (manifests.Status lists the same); here, importable without msgspec.
STATUSES: tuple[str, ...] = ("running", "waiting", "completed", "failed", "cancelled")

LMDB_MAX_KEY = 511  # bytes: LMDB's limit on a key (lmdb's default build; Environment.max_key_size())
# A memory record key: kind + scope name + 0x00 + memory key + 0x00 + version (layout.py).
MEMORY_KEY_BYTES = LMDB_MAX_KEY - layout.MEMORY_KEY_OVERHEAD  # scope name and memory key together
# The UTF-8 bytes a name may take, by kind: what its key leaves for it. Names of other kinds
# (artifacts, checkpoints, tags, waits, LLM calls) are never part of a key: MAX_NAME characters.
MAX_NAME_BYTES = {
    "flow name": LMDB_MAX_KEY - len(layout.flow_key("", b"")) - layout.SUMMARY_KEY_BYTES,  # exec_flow
    "pin name": LMDB_MAX_KEY - len(layout.PIN_PREFIX),  # refs: "pin/" + name
    "memory namespace": MEMORY_KEY_BYTES - 1,  # with a memory key of at least 1 byte
}


# What no name may hold: the C0 and C1 control characters (Unicode category Cc, U+0000-U+001F and
# U+007F-U+009F; U+009B is a terminal's CSI, the start of an escape sequence); the bidirectional
# controls (Unicode's Bidi_Control: the mark U+061C, the marks U+200E and U+200F, the embeddings
# and overrides U+202A-U+202E, the isolates U+2066-U+2069), which make a name display as another
# ("Trojan source"); U+FEFF, an invisible byte-order mark; and the line and paragraph separators
# U+2028 and U+2029, which break a line. Other format characters (U+200C and U+200D, which scripts
# and emoji sequences need) are allowed. A regular expression character class; the CLI escapes
# the same characters in free text it prints to a terminal (cli/output.py terminal_text).
CONTROL_CHARACTERS = "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff"
_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")


def escape(c: str) -> str:
    """A character as the escape that names it in a message: ``\\u009b``."""
    return f"\\u{ord(c):04x}"


def refused_character(text: str) -> str | None:
    """The first control character (CONTROL_CHARACTERS) in ``text``, escaped, or None."""
    if text.isascii() and text.isprintable():
        return None  # the common case
    found = _CONTROL.search(text)
    return escape(found[0]) if found else None


def utf8(name: str, what: str) -> bytes:
    """``name`` in UTF-8; a lone surrogate (which has none) is an InvalidNameError."""
    try:
        return name.encode()
    except UnicodeEncodeError:
        raise InvalidNameError(
            f"{what} {name[:80]!r} is not valid unicode text (lone surrogates)",
            name=name[:80],
            hint="pass text that encodes as UTF-8",
        ) from None


def fits(name: str, what: str) -> bool:
    """Whether a name of this kind can be in the store at all (its key fits): a lookup by a
    longer name finds nothing, without asking LMDB."""
    limit = MAX_NAME_BYTES.get(what)
    return limit is None or len(name.encode(errors="surrogatepass")) <= limit


def validate_name(name: object, *, what: str = "name", exec_id: str | None = None) -> str:
    """Names are non-empty text of at most 255 characters with no control characters (see
    refused_character) or slashes, and, for the kinds in MAX_NAME_BYTES, at most that many bytes
    of UTF-8."""
    if not isinstance(name, str):
        raise InvalidNameError(
            f"{what} must be a string, not {type(name).__name__}",
            exec_id=exec_id,
            hint="pass the name as text",
        )
    problem = None
    limit = MAX_NAME_BYTES.get(what)
    hint = "use letters, digits, '_', '-', '.', ':' and spaces; at most 255 characters"
    if not name or not name.strip():
        problem = "is empty"
    elif len(name) > MAX_NAME:
        problem = f"is longer than {MAX_NAME} characters"
    elif refused := refused_character(name):
        problem = f"contains control characters ({refused})"
    elif "/" in name or "\\" in name:
        problem = "contains a path separator"
    elif name != name.strip():
        problem = "has leading or trailing white space"
    elif limit is not None and len(utf8(name, what)) > limit:
        problem = f"is too long: {len(utf8(name, what))} bytes of UTF-8, at most {limit} fit"
        hint = f"use a shorter name: a {what} takes at most {limit} bytes of UTF-8 (1 to 4 a character)"
    else:
        utf8(name, what)
    if problem:
        raise InvalidNameError(f"{what} {name[:80]!r} {problem}", exec_id=exec_id, name=name[:80], hint=hint)
    return name
