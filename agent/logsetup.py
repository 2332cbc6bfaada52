"""Logging set-up for the CLI: readable lines, quiet third-party chatter."""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr; under systemd (journald) leave timestamps to the journal."""
    journald = bool(os.environ.get("JOURNAL_STREAM"))
    fmt = "%(levelname)s %(name)s: %(message)s" if journald else \
        "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr, force=True)
    # pymodbus logs every timeout/refused connection at ERROR; the driver reports these once.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
