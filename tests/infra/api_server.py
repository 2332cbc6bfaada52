"""The central API served by uvicorn on a free loopback port in a thread, and a small client for it
(tests, and benchmarks run from a checkout)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from email.message import Message
from typing import Any

from fastapi import FastAPI

from agent.api.background import serving
from simulators.server import free_port

TOKEN = "s3cret-token"


def _decoded(raw: bytes, headers: Message) -> Any:
    """A response body: JSON parsed, anything else (the /docs page) as text."""
    return json.loads(raw) if headers.get_content_type() == "application/json" else raw.decode()


class Api:
    def __init__(self, port: int, statements: list[str] | None = None) -> None:
        self.port, self.base = port, f"http://127.0.0.1:{port}"
        self.statements = statements if statements is not None else []

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None, *,
             raw: bytes | Iterable[bytes] | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """One request; ``raw`` is sent as is (an iterable of chunks goes chunked, without Content-Length)."""
        headers = {"Content-Type": "application/json", **(headers or {})}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, method=method, headers=headers, data=data)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, _decoded(r.read(), r.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, _decoded(exc.read(), exc.headers)

    def get(self, path: str) -> Any:
        code, body = self.call("GET", path)
        assert code == 200, body
        return body


@contextmanager
def serve(app: FastAPI, statements: list[str] | None = None) -> Iterator[Api]:
    """``app`` served by uvicorn on a free loopback port, in a thread, for the block."""
    port = free_port()
    with serving(app, "127.0.0.1", port):
        yield Api(port, statements)
