"""What the agent's helper processes (the writer, the polling shards) share: how they start and die."""

from __future__ import annotations

import asyncio
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

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
#: How long a starting helper may take to say it is ready.
READY_TIMEOUT = 60.0
#: Longest wait between two starts of a helper that keeps dying.
RESTART_MAX = 10.0
#: A helper whose input closed has this long to finish and exit before it is killed.
EXIT_GRACE = 10.0
#: Default size limit of one line a helper exchanges with the agent (StreamReader's is 64 KiB).
LINE_LIMIT = 16 * 2**20
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


async def spawn(module: str, limit: int = LINE_LIMIT) -> asyncio.subprocess.Process:
    """``python -m module`` with pipes on stdin and stdout (stderr shared with the agent's log)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env=child_environment(), limit=limit)


def send(process: asyncio.subprocess.Process | None, data: bytes) -> None:
    """Write to a helper's input; nothing if it is not running (its restart brings it up to date)."""
    if process is None or process.stdin is None or process.returncode is not None:
        return
    with contextlib.suppress(ConnectionError, RuntimeError):
        process.stdin.write(data)


async def stop_child(process: asyncio.subprocess.Process | None, what: str, grace: float = EXIT_GRACE) -> None:
    """Close a helper's input (it exits once it has finished what it holds); kill it after ``grace``."""
    if process is None or process.returncode is not None:
        return
    if process.stdin is not None:
        process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        log.warning("the %s did not exit; killing it", what)
        process.kill()
        await process.wait()


async def stdin_reader(limit: int = LINE_LIMIT) -> asyncio.StreamReader:
    """In a helper: its standard input as a stream, for the agent's commands."""
    reader = asyncio.StreamReader(limit=limit)
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


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
