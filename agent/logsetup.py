"""Logging set-up for the CLI: readable lines or JSON lines, quiet third-party chatter."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime


def iso_time(created: float, utc: bool = False) -> str:
    """ISO 8601 with milliseconds and the offset: local time (``+05:30``) or UTC."""
    moment = datetime.fromtimestamp(created, UTC)
    return (moment if utc else moment.astimezone()).isoformat(timespec="milliseconds")


class IsoLines(logging.Formatter):
    """Text lines stamped with local time and its UTC offset (a bare local time is ambiguous)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_time(record.created)


class JsonLines(logging.Formatter):
    """One JSON object per record: ts (UTC), level, logger, message (+ exc when there is a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": iso_time(record.created, utc=True),
               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def make_formatter(log_format: str = "text", journald: bool = False) -> logging.Formatter:
    """JSON lines, or text lines; under journald without a timestamp (the journal adds its own)."""
    if log_format == "json":
        return JsonLines()
    if journald:
        return logging.Formatter("%(levelname)s %(name)s: %(message)s")
    return IsoLines("%(asctime)s %(levelname)-7s %(name)s: %(message)s")


def setup_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Log to stderr; under systemd (journald) leave timestamps to the journal."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(log_format, journald=bool(os.environ.get("JOURNAL_STREAM"))))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # pymodbus logs every timeout/refused connection at ERROR; the driver reports these once.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    # asyncua logs a traceback per failed publish while a server is away; the driver reports it once
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    logging.getLogger("alembic").setLevel(logging.WARNING)
