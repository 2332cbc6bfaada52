"""Logging set-up for the CLI: readable lines or JSON lines, quiet third-party chatter."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime


class JsonLines(logging.Formatter):
    """One JSON object per record: ts, level, logger, message (+ exc when there is a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Log to stderr; under systemd (journald) leave timestamps to the journal."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLines())
    else:
        journald = bool(os.environ.get("JOURNAL_STREAM"))
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if journald else
                                               "%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # pymodbus logs every timeout/refused connection at ERROR; the driver reports these once.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # asyncua logs a traceback per failed publish while a server is away; the driver reports it once
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    logging.getLogger("alembic").setLevel(logging.WARNING)
