"""The API served by uvicorn in a thread of this process (the demo's dashboard, tests, benchmarks)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI


@contextmanager
def serving(app: FastAPI, host: str, port: int, start_timeout: float = 20.0) -> Iterator[uvicorn.Server]:
    """``app`` on ``host:port`` for the block; OSError if it cannot listen there (a port in use)."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    failed: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as exc:  # SystemExit when uvicorn cannot bind
            failed.append(exc)

    thread = threading.Thread(target=run, name="api", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.should_exit = True
        thread.join(5)
        raise OSError(f"the API could not listen on {host}:{port}" + (f" ({failed[0]!r})" if failed else ""))
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(10)
