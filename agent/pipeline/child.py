"""What the agent's helper processes (the writer, the polling shards) share: how they start and die."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
from pathlib import Path
from typing import BinaryIO

import agent
from agent.logsetup import JsonLines

PR_SET_PDEATHSIG = 1
#: ``auto`` gives a map offering at least this many points per second a writer process and one
#: polling process per core; below it one process polls and writes with less memory and meets
#: the lag target (measured: docs/performance.md, "Processes")
SPLIT_FROM_POINTS_PER_S = 20_000
#: systemd's variables are the agent's alone: a helper must not notify for it
SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def child_environment() -> dict[str, str]:
    """The agent's environment without systemd's variables, with this package importable."""
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARIABLES}
    root = str(Path(agent.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def log_settings() -> tuple[str, str]:
    """(level, format) of the agent's logging, for a helper to log the same way."""
    root = logging.getLogger()
    json_lines = any(isinstance(h.formatter, JsonLines) for h in root.handlers)
    return logging.getLevelName(root.getEffectiveLevel()), "json" if json_lines else "text"


def become_child() -> BinaryIO:
    """In a helper: die with the agent (Linux: even on its SIGKILL), leave SIGINT/SIGTERM to the
    agent (it stops its helpers itself), and keep the original stdout for messages (whatever a
    library prints goes to stderr instead); returns that stdout."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return out
