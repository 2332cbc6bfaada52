"""A serial line without hardware: two pseudo-terminals joined by socat (a null-modem cable)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def serial_pair(directory: Path) -> Iterator[tuple[str, str]]:
    """Paths of the two ends (``directory/a``, ``directory/b``) while socat joins them.

    A pty ignores the baud rate: the pair is for behaviour, not for timing.
    """
    socat = shutil.which("socat")
    assert socat, "socat is not installed (.ci/run installs it)"
    a, b = directory / "a", directory / "b"
    proc = subprocess.Popen([socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not (a.exists() and b.exists()):
            assert proc.poll() is None, f"socat exited: {proc.stderr.read() if proc.stderr else ''!r}"
            assert time.monotonic() < deadline, "socat made no pty pair within 10 s"
            time.sleep(0.01)
        yield str(a), str(b)
    finally:
        proc.terminate()
        proc.wait(10)
