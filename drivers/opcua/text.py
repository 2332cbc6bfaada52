"""Text a device sends, made safe: escaped for log lines, valid and bounded for storage."""

from __future__ import annotations

import re
from typing import Any

from asyncua import ua

#: the ``value_text`` column is VARCHAR(255): longer text is cut to this many characters
MAX_TEXT = 255
BAD_ENCODING = "uncertain:bad_encoding"
TRUNCATED = "uncertain:truncated"

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SURROGATE = re.compile("[\ud800-\udfff]")


def log_safe(text: object, limit: int = 256) -> str:
    """``text`` on one log line: control, format and separator characters escaped as in ``repr``.

    Backslashes are left alone, so escaping twice changes nothing; a device cannot forge a
    line (newline, carriage return, U+2028) or hide text (ANSI escapes, bidi overrides).
    Longer text is cut to ``limit`` characters and ends with ``...``.
    """
    s = str(text)
    cut = len(s) > limit
    s = s[:limit]
    if not s.isprintable():
        s = "".join(c if c.isprintable() else _ESCAPES.get(c) or _escape(c) for c in s)
    return s + "..." if cut else s


def _escape(c: str) -> str:
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def value_text(raw: Any) -> tuple[str, str | None]:
    """The stored text of a non-numeric value and, when it had to be repaired, the quality saying so.

    asyncua decodes String with ``surrogateescape``, so bytes that are not UTF-8 arrive as lone
    surrogates that the database drivers cannot encode: they become U+FFFD (``uncertain:bad_encoding``).
    A ByteString is read as UTF-8 the same way. NUL padding at the end (fixed-length PLC strings)
    is dropped silently; a NUL inside the text becomes U+FFFD and marks the reading, since MariaDB
    and SQLite tools handle NUL badly. Text over 255 characters is cut (``uncertain:truncated``).
    """
    if isinstance(raw, ua.LocalizedText):
        raw = raw.Text or ""
    elif isinstance(raw, ua.QualifiedName):
        raw = raw.Name or ""
    if isinstance(raw, bytes | bytearray):
        text = bytes(raw).decode("utf-8", "surrogateescape")
    else:
        text = str(raw)
    fixed = _valid_utf8(text).rstrip("\x00").replace("\x00", "\ufffd")
    mark = BAD_ENCODING if fixed != text.rstrip("\x00") else None
    if len(fixed) > MAX_TEXT:
        fixed, mark = fixed[:MAX_TEXT], mark or TRUNCATED
    return fixed, mark


def _valid_utf8(text: str) -> str:
    """Escaped bytes (U+DC80..U+DCFF) decoded again with U+FFFD; any other lone surrogate replaced."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that is not an escaped byte (from an ExtensionObject's str())
        return _SURROGATE.sub("\ufffd", text)
