"""Log lines carry an unambiguous time: ISO 8601 with the UTC offset (time zone pinned, clock not read)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from agent.logsetup import make_formatter

CREATED = 1_780_000_000.123  # 2026-05-28 20:26:40.123 UTC


@pytest.fixture
def pinned_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # +05:30, no daylight saving
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def record() -> logging.LogRecord:
    rec = logging.LogRecord("drivers.modbus.driver", logging.ERROR, __file__, 1, "device %s is down", ("m1",), None)
    rec.created = CREATED
    return rec


def test_text_lines_show_local_time_with_its_offset(pinned_tz: None) -> None:
    assert make_formatter("text").format(record()) == (
        "2026-05-29T01:56:40.123+05:30 ERROR   drivers.modbus.driver: device m1 is down")


def test_json_lines_show_utc_with_its_offset(pinned_tz: None) -> None:
    assert make_formatter("json").format(record()) == (
        '{"ts": "2026-05-28T20:26:40.123+00:00", "level": "ERROR", "logger": "drivers.modbus.driver", '
        '"message": "device m1 is down"}')


def test_under_journald_the_journal_stamps_the_time(pinned_tz: None) -> None:
    assert make_formatter("text", journald=True).format(record()) == "ERROR drivers.modbus.driver: device m1 is down"
