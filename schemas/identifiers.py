"""What an identifier, an event source and a free-text field may hold: one rule for every reader.

An identifier (customer, partner, product, catalog entry) is the same ASCII word in events, in
the catalog and in URL paths, so that what an event names can be queried, invoiced and scoped.
A source is a URI-reference written one way only: ingest keys are bound to source prefixes, so
``backup/../sim://hv-001`` must not pass for something under ``backup/``. Free text (resource ids
and names, units) may be any printable Unicode, but no control or invisible formatting
character: those split CSV rows and log lines, and hide one name behind another.

The checks use ``fullmatch``: Python's ``$`` also matches before a final newline.
"""

from __future__ import annotations

import re

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""As JSON Schema and pydantic state it (their ``$`` is the end of the text)."""
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

SOURCE_PATTERN = r"^[A-Za-z0-9/][A-Za-z0-9._~:/@-]{0,255}$"
_SOURCE = re.compile(r"[A-Za-z0-9/][A-Za-z0-9._~:/@-]{0,255}")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")

UNPRINTABLE_RANGES = (
    (0x00, 0x1F),
    (0x7F, 0x9F),
    (0xAD, 0xAD),
    (0x61C, 0x61C),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x2028, 0x202E),
    (0x2060, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
)
"""Control characters (C0, C1), line and paragraph separators, and the invisible formatting
characters (soft hyphen, zero-width and direction marks and overrides, word joiners, BOM)."""
UNPRINTABLE_CLASS = "[" + "".join(f"\\x{{{low:x}}}-\\x{{{high:x}}}" for low, high in UNPRINTABLE_RANGES) + "]"
"""The same characters as a regex class in Rust's syntax, for polars."""
_UNPRINTABLE = re.compile("[" + "".join(f"{chr(low)}-{chr(high)}" for low, high in UNPRINTABLE_RANGES) + "]")


def identifier_refusal(value: str) -> str | None:
    """Why ``value`` is no identifier, or None."""
    if _IDENTIFIER.fullmatch(value):
        return None
    return f"{value!r} is not an identifier: 1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit"


def source_refusal(source: str) -> str | None:
    """Why ``source`` is not a source in its one written form, or None: ASCII letters, digits and
    ``. _ ~ : / @ -``, starting with a letter, a digit or ``/`` (an absolute path), and a path
    without ``.``, ``..`` or empty segments (``scheme://`` aside)."""
    if not _SOURCE.fullmatch(source):
        return (
            f"{source!r} is not a source: 1 to 256 of A-Z a-z 0-9 . _ ~ : / @ -, starting with a letter, a digit or /"
        )
    scheme = _SCHEME.match(source)
    path = source[scheme.end() :] if scheme else source.removeprefix("/")
    segments = path.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        return f"{source!r} is not a source in its normal form: no '.', '..' or empty path segments"
    return None


def text_refusal(value: str, *, trimmed: bool = False) -> str | None:
    """Why free text may not be stored as it is, or None; ``trimmed`` text (a resource id, a
    unit) may not start or end with white space either."""
    found = _UNPRINTABLE.search(value)
    if found is not None:
        return f"holds the control or formatting character U+{ord(found.group()):04X}"
    if trimmed and value != value.strip():
        return "starts or ends with white space"
    return None


def unit_refusal(unit: str) -> str | None:
    """Why ``unit`` is no unit: printable, and starting with a letter or a digit (``GB``,
    ``instance``, ``m³``), not with what a spreadsheet runs (``=``, ``+``...)."""
    if not unit[:1].isalnum():
        return f"{unit!r} is not a unit: it starts with a letter or a digit"
    return text_refusal(unit, trimmed=True)


def printable(value: str) -> str:
    """``value`` if ``text_refusal`` finds nothing wrong with it (trimmed): a validator for names."""
    reason = text_refusal(value, trimmed=True)
    if reason is not None:
        raise ValueError(reason)
    return value
