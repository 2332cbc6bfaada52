"""Device-supplied text: escaped for log lines, repaired for storage."""

from __future__ import annotations

import logging

import pytest
from asyncua import ua

from drivers.opcua.text import log_safe, value_text


@pytest.mark.parametrize(("text", "logged"), [
    ("PLC 7", "PLC 7"),
    ("CN=PLC\n2026-01-01 ERROR agent: forged", "CN=PLC\\n2026-01-01 ERROR agent: forged"),
    ("a\r\nb\tc", "a\\r\\nb\\tc"),
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("line\u2028sep\u2029par\x85nel", "line\\u2028sep\\u2029par\\x85nel"),
    ("evil\u202etxt.exe", "evil\\u202etxt.exe"),  # a bidi override would reorder what is shown
    ("bad\udcffbyte\x00", "bad\\udcffbyte\\x00"),
    ("Störung ✓ 温度", "Störung ✓ 温度"),
])
def test_log_safe_escapes_what_could_forge_or_hide_a_line(text: str, logged: str) -> None:
    assert log_safe(text) == logged
    assert log_safe(log_safe(text)) == logged, "escaping twice changes nothing"
    assert log_safe(text).isprintable()


def test_log_safe_bounds_the_length_and_takes_any_object() -> None:
    assert log_safe("x" * 1000) == "x" * 256 + "..."
    assert log_safe("x" * 1000, 10) == "x" * 10 + "..."
    assert log_safe(ua.LocalizedText("a\nb")) == str(ua.LocalizedText("a\nb")).replace("\n", "\\n")


def test_a_log_line_with_device_text_stays_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("drivers.opcua").info("server %s", log_safe("PLC\nCRITICAL agent: all good"))
    formatted = logging.Formatter("%(levelname)s %(message)s").format(caplog.records[0])
    assert formatted.count("\n") == 0


@pytest.mark.parametrize(("raw", "text", "mark"), [
    ("plain", "plain", None),
    ("ok\udcff", "ok\ufffd", "uncertain:bad_encoding"),
    ("\ud800 lone", "\ufffd lone", "uncertain:bad_encoding"),  # not an escaped byte: still replaced
    (b"\xc3\xa9t\xc3\xa9", "été", None),
    (b"\xff", "\ufffd", "uncertain:bad_encoding"),
    (ua.LocalizedText("x\udcff", "en"), "x\ufffd", "uncertain:bad_encoding"),
    (ua.LocalizedText(None, "en"), "", None),
    (ua.QualifiedName("Name", 2), "Name", None),
    ("pad\x00\x00", "pad", None),
    ("\x00in", "\ufffdin", "uncertain:bad_encoding"),
    ("y" * 256, "y" * 255, "uncertain:truncated"),
    ("\U0001F600" * 300, "\U0001F600" * 255, "uncertain:truncated"),  # characters, not bytes
    ([1, 2], "[1, 2]", None),
])
def test_value_text_is_valid_utf8_without_nul_and_at_most_255_characters(raw: object, text: str,
                                                                          mark: str | None) -> None:
    assert value_text(raw) == (text, mark)
