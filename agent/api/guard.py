"""The API's front door as pure ASGI: Host check, bearer tokens, then a capped body.

It runs before FastAPI reads anything, so the body of a request with a foreign Host, without the
token or too large is never kept nor parsed (a 4 MB JSON body without a token used to be read and
parsed first: +46 to +48 MB of server memory).
"""

from __future__ import annotations

import hmac
import logging
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

#: the API's JSON bodies are a few hundred bytes; 64 KiB leaves room without inviting abuse
MAX_BODY = 64 * 1024
#: a refused request's body is read and dropped up to this much before the answer: a client that sends
#: all of it before reading, on a connection it asked to close, otherwise gets a reset instead (urllib did
#: at 64 KiB + 1); beyond, it is answered at once
DRAIN_LIMIT = 1024 * 1024
#: names a browser on this machine uses for the API; a DNS-rebound name is none of them
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
READ_METHODS = frozenset({"GET", "HEAD"})
#: readable without the read token (liveness probes; the dashboard's page and assets, which hold no
#: data: the page asks for the token and sends it with each data request)
PUBLIC_PATHS = frozenset({"/api/health", "/", "/dashboard"})
PUBLIC_PREFIX = "/dashboard/"


class AccessConfigError(Exception):
    """A token file cannot be read, the tokens clash, or an allowed host is malformed."""


@dataclass(frozen=True)
class Tokens:
    """Bearer tokens: ``write`` for the alert workflow (grants reads too), ``read`` for every GET."""

    write: str | None = None
    read: str | None = None


def load_tokens(write_file: str | None, read_file: str | None, environ: Mapping[str, str]) -> Tokens:
    """Tokens from files, else from $HACKSKY_API_TOKEN / $HACKSKY_API_READ_TOKEN; empty means none."""
    def one(path: str | None, variable: str) -> str | None:
        if not path:
            return environ.get(variable) or None
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().strip() or None
        except OSError as exc:
            raise AccessConfigError(f"cannot read token file {path}: {exc.strerror}") from exc

    tokens = Tokens(one(write_file, "HACKSKY_API_TOKEN"), one(read_file, "HACKSKY_API_READ_TOKEN"))
    if tokens.read is not None and tokens.read == tokens.write:
        raise AccessConfigError("the read token must differ from the write token (it would grant writes)")
    return tokens


def split_host(value: str) -> tuple[str, int | None] | None:
    """``name[:port]`` (IPv6 in brackets) as lower-case name and port; None when malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[:end + 1], value[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:] if rest else None
    else:
        name, sep, port_text = value.partition(":")
        port = port_text if sep else None
    if not name or (port is not None and not (port.isascii() and port.isdigit())):
        return None
    return name, int(port) if port is not None else None


def parse_allowed_hosts(entries: Iterable[str]) -> frozenset[tuple[str, int | None]]:
    """``--allowed-host`` values as (name, port): a bare name allows any port, ``name:port`` that port only."""
    allowed = set()
    for entry in entries:
        parsed = split_host(entry)
        if parsed is None:
            raise AccessConfigError(f"allowed host {entry!r} is not a host name or host:port")
        allowed.add(parsed)
    return frozenset(allowed)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class RequestGuard:
    """Checks, in order: Host (DNS rebinding), bearer token (before the body is read), body size."""

    def __init__(self, app: ASGIApp, tokens: Tokens, allowed: frozenset[tuple[str, int | None]] = frozenset(),
                 max_body: int = MAX_BODY) -> None:
        self.app, self.tokens, self.allowed, self.max_body = app, tokens, allowed, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        declared = int(length) if length is not None and length.isdigit() else None
        refusal = self._host_refusal(scope, headers) or self._auth_refusal(scope, headers)
        if refusal is None and declared is not None and declared > self.max_body:
            refusal = self._too_large()
        if refusal is not None:
            if _drainable(headers, declared):
                await _discard_body(receive, DRAIN_LIMIT)
            await refusal(scope, receive, send)
            return
        messages = await self._buffer_body(receive)
        if messages is None:  # chunked, and past the limit
            await self._too_large()(scope, receive, send)
            return
        await self.app(scope, _replay(messages, receive), send)

    def _host_allowed(self, scope: Scope, host: str) -> bool:
        parsed = split_host(host)
        if parsed is None:
            return False
        name, port = parsed
        if (name, None) in self.allowed or (name, port) in self.allowed:
            return True
        server = scope.get("server")
        if not server:
            return False
        bound_host, bound_port = server[0], server[1]
        bound = f"[{bound_host}]" if ":" in bound_host else bound_host
        return name in LOOPBACK_HOSTS | {bound.lower()} and (port or 80) == bound_port

    def _host_refusal(self, scope: Scope, headers: Headers) -> JSONResponse | None:
        host = headers.get("host", "")
        if self._host_allowed(scope, host):
            return None
        log.warning("refused a request for host %r (not this API's address, not --allowed-host)", host)
        return _error(400, f"host {host!r} is not allowed: this API answers to localhost, 127.0.0.1 or [::1] "
                           "on its port, its bound address and the names given with --allowed-host")

    def _auth_refusal(self, scope: Scope, headers: Headers) -> JSONResponse | None:
        if scope["method"] in READ_METHODS:
            if self.tokens.read is None or scope["path"] in PUBLIC_PATHS or scope["path"].startswith(PUBLIC_PREFIX):
                return None
            accepted = [t for t in (self.tokens.read, self.tokens.write) if t is not None]
        elif self.tokens.write is None:
            return _error(403, "writes are disabled: start the API with a token (HACKSKY_API_TOKEN or --token-file)")
        else:
            accepted = [self.tokens.write]
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and any(hmac.compare_digest(given.encode(), t.encode()) for t in accepted):
            return None
        return _error(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    def _too_large(self) -> JSONResponse:
        return _error(413, f"request body too large: the limit is {self.max_body} bytes")

    async def _buffer_body(self, receive: Receive) -> list[Message] | None:
        """The request's messages up to the end of its body; None once past ``max_body`` bytes.

        Buffering (at most ``max_body``) lets a chunked body get its 413 before the app starts;
        past the limit, the rest is dropped as for any refusal.
        """
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":  # the client left: the app sees the disconnect
                return messages
            size += len(message.get("body", b""))
            if size > self.max_body:
                if message.get("more_body", False):
                    await _discard_body(receive, DRAIN_LIMIT)
                return None
            if not message.get("more_body", False):
                return messages


def _drainable(headers: Headers, declared: int | None) -> bool:
    """Whether a refused request's body is worth dropping before the answer (see DRAIN_LIMIT)."""
    if "100-continue" in headers.get("expect", "").lower():
        return False  # the client waits for our word before sending: it gets the refusal instead
    if declared is not None:
        return 0 < declared <= DRAIN_LIMIT
    return "chunked" in headers.get("transfer-encoding", "").lower()


async def _discard_body(receive: Receive, limit: int) -> None:
    """Read and drop the rest of the body, up to about ``limit`` bytes: nothing is kept."""
    dropped = 0
    while dropped <= limit:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        dropped += len(message.get("body", b""))


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that hands out the buffered messages, then the server's."""
    pending = deque(messages)

    async def replayed() -> Message:
        return pending.popleft() if pending else await receive()

    return replayed
