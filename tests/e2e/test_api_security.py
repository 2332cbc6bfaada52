"""The API's front door over real HTTP: Host check, tokens before the body, capped bodies."""

from __future__ import annotations

import asyncio
import http.client
import json
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine

from agent.api import app as app_module
from agent.api.app import create_app
from agent.api.guard import DRAIN_LIMIT, MAX_BODY, AccessConfigError, Tokens, load_tokens, split_host
from agent.central import migrate
from agent.central.engine import make_engine
from agent.settings import CentralConfig
from tests.infra.api_server import Api, serve

TOKEN, READ_TOKEN = "write-s3cret", "read-s3cret"
ALLOWED = ["dashboard.plant.example", "proxy.example:8443"]
FOUR_MB = 4 * 1024 * 1024
#: JSON, but never parsed when the request is refused first
BIG_ALERT = json.dumps({"alert_type": "x", "severity": "low", "title": "t", "message": "a" * FOUR_MB}).encode()
GETS = ["/api/power-data", "/api/devices", "/api/alerts", "/api/attack-analysis", "/api/statistics",
        "/api/system-status", "/api/database/status", "/openapi.json", "/docs"]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An empty central database (SQLite: the checks here come before any query)."""
    engine = make_engine(CentralConfig(url=f"sqlite:///{tmp_path_factory.mktemp('guard') / 'central.db'}"))
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def guarded(engine: Engine) -> Iterator[Api]:
    """The API with a write token, a read token and two allowed hosts."""
    with serve(create_app(engine, TOKEN, read_token=READ_TOKEN, allowed_hosts=ALLOWED)) as api:
        yield api


@pytest.fixture
def pinned_now(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """The API's clock, pinned (alerts created here get this time)."""
    now = datetime(2026, 11, 29, 22, 22)
    monkeypatch.setattr(app_module, "_utcnow", lambda: now)
    return now


def chunks(data: bytes, size: int = 16 * 1024) -> Iterator[bytes]:
    """``data`` as pieces: urllib then sends it chunked, without Content-Length."""
    return (data[i:i + size] for i in range(0, len(data), size))


def keep_alive_post(api: Api, body: bytes, token: str | None = None,
                    chunked: bool = False) -> tuple[tuple[int, Any], int]:
    """POST ``body`` on a keep-alive connection (as browsers and requests do), then GET /api/health on it.

    Answers the POST's status and JSON, and the status of the GET: the connection outlived the refusal.
    """
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    try:
        conn.request("POST", "/api/alerts", body=chunks(body) if chunked else body, headers=headers)
        response = conn.getresponse()
        answer = (response.status, json.loads(response.read()))
        conn.request("GET", "/api/health")
        health = conn.getresponse()
        health.read()
        return answer, health.status
    finally:
        conn.close()


def alert_of_size(size: int, alert_type: str) -> bytes:
    """A valid alert body of exactly ``size`` bytes."""
    body = {"alert_type": alert_type, "severity": "low", "title": "padded", "message": ""}
    body["message"] = "m" * (size - len(json.dumps(body).encode()))
    raw = json.dumps(body).encode()
    assert len(raw) == size
    return raw


# -- tokens are checked before the body is read ------------------------------------------------

class Driven:
    """One request driven through the ASGI app directly, counting what the app pulled from the body."""

    def __init__(self, app: FastAPI, method: str, path: str, body: bytes, headers: dict[str, str],
                 server: tuple[str, int] = ("127.0.0.1", 8080)) -> None:
        self.pieces = list(chunks(body, 64 * 1024)) or [b""]
        self.bytes_read = 0
        self.sent: list[dict[str, Any]] = []
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(k.lower().encode(), v.encode()) for k, v in
                             {"host": f"{server[0]}:{server[1]}", **headers}.items()],
                 "client": ("127.0.0.1", 40000), "server": server}
        asyncio.run(app(scope, self.receive, self.send))

    async def receive(self) -> dict[str, Any]:
        if not self.pieces:
            return {"type": "http.disconnect"}
        piece = self.pieces.pop(0)
        self.bytes_read += len(piece)
        return {"type": "http.request", "body": piece, "more_body": bool(self.pieces)}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def body(self) -> Any:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


DECLARED = {"content-length": str(len(BIG_ALERT))}


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"},
                                     {"authorization": f"Bearer {READ_TOKEN}"}])
def test_unauthorized_write_never_reads_a_large_body(engine: Engine, headers: dict[str, str]) -> None:
    app = create_app(engine, TOKEN, read_token=READ_TOKEN)
    declared = Driven(app, "POST", "/api/alerts", BIG_ALERT, {**headers, **DECLARED})
    assert (declared.status, declared.bytes_read) == (401, 0)
    # chunked, the size is unknown: what comes is dropped (not kept) up to DRAIN_LIMIT, then the answer
    chunked = Driven(app, "POST", "/api/alerts", BIG_ALERT, headers)
    assert chunked.status == 401 and chunked.bytes_read <= DRAIN_LIMIT + 64 * 1024
    waiting = Driven(app, "POST", "/api/alerts", BIG_ALERT, {**headers, "expect": "100-continue"})
    assert (waiting.status, waiting.bytes_read) == (401, 0)


def test_writes_disabled_never_read_the_body(engine: Engine) -> None:
    disabled = Driven(create_app(engine, None), "POST", "/api/alerts", BIG_ALERT, DECLARED)
    assert (disabled.status, disabled.bytes_read) == (403, 0)
    assert "writes are disabled" in disabled.body["error"]


def test_oversized_bodies_are_read_no_further_than_needed(engine: Engine) -> None:
    app, auth = create_app(engine, TOKEN), {"authorization": f"Bearer {TOKEN}"}
    declared = Driven(app, "POST", "/api/alerts", BIG_ALERT, {**auth, **DECLARED})
    assert (declared.status, declared.bytes_read) == (413, 0)
    # chunked: kept up to the limit, then dropped up to DRAIN_LIMIT; never the whole 4 MB
    chunked = Driven(app, "POST", "/api/alerts", BIG_ALERT, auth)
    assert chunked.status == 413 and chunked.bytes_read <= MAX_BODY + DRAIN_LIMIT + 2 * 64 * 1024 < len(BIG_ALERT)


def test_malformed_body_without_token_is_401_not_a_parse_error(guarded: Api) -> None:
    assert guarded.call("POST", "/api/alerts", raw=b"{not json")[0] == 401
    assert guarded.call("POST", "/api/alerts", raw=b"{not json", token=READ_TOKEN)[0] == 401, \
        "the read token grants no writes"
    for chunked in (False, True):
        assert keep_alive_post(guarded, BIG_ALERT + b"{not json", chunked=chunked) == (
            (401, {"error": "missing or wrong bearer token"}), 200)


# -- body size ---------------------------------------------------------------------------------

TOO_LARGE = {"error": f"request body too large: the limit is {MAX_BODY} bytes"}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_the_limit_is_413(guarded: Api, chunked: bool) -> None:
    # urllib sends "Connection: close" and reads only once all is sent: the refused body must be drained
    body = alert_of_size(MAX_BODY + 1, "just_over")
    assert guarded.call("POST", "/api/alerts", raw=chunks(body) if chunked else body, token=TOKEN) == (413, TOO_LARGE)
    assert keep_alive_post(guarded, BIG_ALERT, TOKEN, chunked) == ((413, TOO_LARGE), 200)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_at_the_limit_is_served(guarded: Api, pinned_now: datetime, chunked: bool) -> None:
    body = alert_of_size(MAX_BODY, f"at_limit_{chunked}")
    code, created = guarded.call("POST", "/api/alerts", raw=chunks(body) if chunked else body, token=TOKEN)
    assert code == 201 and created["alert_type"] == f"at_limit_{chunked}"
    assert created["created_at"] == pinned_now.isoformat() + "Z"


# -- read token --------------------------------------------------------------------------------

@pytest.mark.parametrize("path", GETS)
def test_read_token_guards_every_get(guarded: Api, path: str) -> None:
    assert guarded.call("GET", path)[0] == 401
    assert guarded.call("GET", path, token="wrong")[0] == 401
    assert guarded.call("GET", path, token=READ_TOKEN)[0] == 200
    assert guarded.call("GET", path, token=TOKEN)[0] == 200, "the write token grants reads"


def test_health_and_the_dashboard_page_need_no_token(guarded: Api) -> None:
    code, health = guarded.call("GET", "/api/health")
    assert (code, health["status"], health["database"]) == (200, "ok", "up")
    # the page and its assets hold no data (the page asks for the token); the data behind it needs the token
    for path in ("/dashboard/", "/dashboard/app.js", "/dashboard/vendor/uplot/uPlot.iife.min.js"):
        assert guarded.call("GET", path)[0] == 200, path
    assert guarded.call("GET", "/api/points")[0] == 401
    assert guarded.call("GET", "/api/points", token=READ_TOKEN)[0] == 200
    with urllib.request.urlopen(guarded.base + "/dashboard/", timeout=10) as page:
        policy = page.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert "<title>HackSky Edge</title>" in page.read().decode()


def test_without_read_token_reads_stay_open(engine: Engine) -> None:
    with serve(create_app(engine, TOKEN)) as api:
        assert api.call("GET", "/api/devices") == (200, {"items": [], "total": 0})
        assert api.call("POST", "/api/alerts/1/resolve")[0] == 401


def test_tokens_come_from_files_or_the_environment(tmp_path: Path) -> None:
    (tmp_path / "write").write_text("from-file\n")
    (tmp_path / "read").write_text("read-file\n")
    env = {"HACKSKY_API_TOKEN": "from-env", "HACKSKY_API_READ_TOKEN": "read-env"}
    assert load_tokens(None, None, env) == Tokens("from-env", "read-env")
    assert load_tokens(str(tmp_path / "write"), str(tmp_path / "read"), env) == Tokens("from-file", "read-file")
    assert load_tokens(None, None, {"HACKSKY_API_TOKEN": ""}) == Tokens(None, None)
    with pytest.raises(AccessConfigError, match=r"cannot read token file .*missing"):
        load_tokens(None, str(tmp_path / "missing"), env)
    with pytest.raises(AccessConfigError, match="must differ"):
        load_tokens(None, None, {"HACKSKY_API_TOKEN": "same", "HACKSKY_API_READ_TOKEN": "same"})


# -- Host header (DNS rebinding) ---------------------------------------------------------------

@pytest.mark.parametrize(("host", "allowed"), [
    ("127.0.0.1:{port}", True),
    ("localhost:{port}", True),
    ("LocalHost:{port}", True),
    ("[::1]:{port}", True),
    ("dashboard.plant.example", True),
    ("dashboard.plant.example:443", True),
    ("proxy.example:8443", True),
    ("evil.example:{port}", False),
    ("evil.example", False),
    ("localhost:{other}", False),
    ("localhost", False),  # port 80, not the API's
    ("127.0.0.1.evil.example:{port}", False),
    ("localhost.:{port}", False),
    ("proxy.example:9000", False),
    ("proxy.example", False),
    ("[::1:{port}", False),
    ("localhost:{port}x", False),
])
def test_host_header_must_name_this_api(guarded: Api, host: str, allowed: bool) -> None:
    host = host.format(port=guarded.port, other=guarded.port + 1)
    code, body = guarded.call("GET", "/api/health", headers={"Host": host})
    if allowed:
        assert code == 200, body
    else:
        assert code == 400 and body["error"].startswith(f"host {host!r} is not allowed"), body


def test_host_is_checked_before_the_token(guarded: Api) -> None:
    for token in (None, TOKEN):
        code, body = guarded.call("POST", "/api/alerts", raw=b"{}", token=token,
                                  headers={"Host": f"rebound.example:{guarded.port}"})
        assert code == 400 and "not allowed" in body["error"]


@pytest.mark.parametrize(("server", "host", "status"), [
    (("10.1.2.3", 8080), "10.1.2.3:8080", 200),
    (("10.1.2.3", 8080), "10.1.2.4:8080", 400),
    (("fd00::5", 8080), "[fd00::5]:8080", 200),
    (("fd00::5", 8080), "[fd00::6]:8080", 400),
])
def test_the_bound_address_is_an_allowed_host(engine: Engine, server: tuple[str, int], host: str,
                                              status: int) -> None:
    driven = Driven(create_app(engine, TOKEN), "GET", "/api/health", b"", {"host": host}, server=server)
    assert driven.status == status


def test_malformed_allowed_host_is_refused_at_start(engine: Engine) -> None:
    with pytest.raises(AccessConfigError, match="'bad host:port:' is not a host name or host:port"):
        create_app(engine, TOKEN, allowed_hosts=["bad host:port:"])


@pytest.mark.parametrize(("value", "parsed"), [
    ("LocalHost:8080", ("localhost", 8080)),
    ("[::1]:8080", ("[::1]", 8080)),
    ("[::1]", ("[::1]", None)),
    ("example.org", ("example.org", None)),
    ("", None), (":80", None), ("[::1", None), ("[::1]x", None), ("a:b:c", None), ("a:", None), ("a:٣", None),
])
def test_split_host(value: str, parsed: tuple[str, int | None] | None) -> None:
    assert split_host(value) == parsed
