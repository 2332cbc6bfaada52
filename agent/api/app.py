"""FastAPI application over the central database: read-only except the alert workflow."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import Engine, insert, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from agent.api import queries as q
from agent.api.dashboard import mount_dashboard
from agent.api.guard import MAX_BODY, RequestGuard, Tokens, parse_allowed_hosts
from agent.api.series import SeriesQuery
from agent.api.series import series as series_of
from agent.central import migrate, schema
from agent.central.writer import GRANT_REFUSED, error_code
from agent.units import parse_duration

log = logging.getLogger(__name__)

Severity = Literal["low", "medium", "high", "critical"]
#: deeper pages cost the database a scan of every skipped row; narrow with since/until instead
MAX_OFFSET = 1_000_000
#: an offset whose '+' a URL turned into a space: ``...T23:22:00 01:00``
_PLUS_AS_SPACE = re.compile(r"\d \d\d(:?\d\d)?$")


class NewAlert(BaseModel):
    """An alert raised by the central team (not by a gateway)."""

    alert_type: str = Field(min_length=1, max_length=64)
    severity: Severity
    title: str = Field(min_length=1, max_length=255)
    message: str | None = None
    system: str | None = Field(default="central", max_length=64)
    gateway_id: str | None = Field(default=None, max_length=64)


class Acknowledge(BaseModel):
    """Who acknowledges."""

    by: str = Field(min_length=1, max_length=64)


def _utcnow() -> datetime:
    """Now as naive UTC, the way the schema stores times."""
    return datetime.now(UTC).replace(tzinfo=None)


def naive_utc(t: datetime | None) -> datetime | None:
    """A query time the way the schema stores it: an aware time converted to UTC, a naive one taken as UTC."""
    return t.astimezone(UTC).replace(tzinfo=None) if t is not None and t.tzinfo is not None else t


def window(gateway: str | None = None, device: str | None = None, since: datetime | None = None,
           until: datetime | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
           offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> q.Window:
    """Filters shared by the list endpoints (times in UTC unless they carry an offset)."""
    since, until = naive_utc(since), naive_utc(until)
    if since and until and since >= until:
        raise HTTPException(400, "since must be before until")
    return q.Window(gateway, device, since, until, limit, offset)


def describe(error: Any, cause: BaseException | None) -> str:
    """One validation error as ``field: message``; a body that is not JSON says where it breaks."""
    if error["type"] == "json_invalid":
        where = f" at line {cause.lineno} column {cause.colno}" if isinstance(cause, json.JSONDecodeError) else ""
        return f"request body is not valid JSON: {error.get('ctx', {}).get('error', error['msg'])}{where}"
    field = ".".join(str(p) for p in error["loc"] if p not in ("query", "body", "path")) or "body"
    hint = ""
    if isinstance(error.get("input"), str) and _PLUS_AS_SPACE.search(error["input"]):
        hint = " (a '+' in a URL reads as a space: send it as %2B)"
    return f"{field}: {error['msg']}{hint}"


#: the shared filters as a dependency (module level: FastAPI resolves string annotations from globals)
Win = Annotated[q.Window, Depends(window)]


def create_app(engine: Engine, token: str | None, *, read_token: str | None = None,
               allowed_hosts: Iterable[str] = (), max_body: int = MAX_BODY,
               clock: Callable[[], datetime] = _utcnow) -> FastAPI:
    """The API bound to one central database; writes need ``Authorization: Bearer <token>``.

    With ``read_token`` every GET but /api/health needs a bearer token too (either one). Requests
    must name a loopback host or the bound address, or one of ``allowed_hosts`` (DNS rebinding);
    a malformed one raises ``AccessConfigError``. ``clock`` gives now as naive UTC (a gateway is online,
    stale or offline by its last heartbeat's age).
    """
    app = FastAPI(title="HackSky Edge central API", version="1.0",
                  description="The HackSky dashboard's endpoints over the central database. GET endpoints are "
                              "read-only (and need a token when the API has a read token); creating, "
                              "acknowledging and resolving alerts needs the API token.")
    app.add_middleware(RequestGuard, tokens=Tokens(token, read_token), allowed=parse_allowed_hosts(allowed_hosts),
                       max_body=max_body)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [describe(e, exc.__cause__) for e in exc.errors()]
        return JSONResponse({"error": "; ".join(problems)}, status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(SQLAlchemyError)
    async def database_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.error("central database error on %s: %s", request.url.path, exc)
        if error_code(exc) in GRANT_REFUSED:  # the API's own database user may not do this
            return JSONResponse({"error": "the API's database user is not allowed to do this: "
                                          "grant it the hacksky_api role (hacksky-edge central grants)"},
                                status_code=403)
        return JSONResponse({"error": "central database unavailable"}, status_code=503)

    # RequestGuard checks the tokens before the body is read; this only documents them in OpenAPI
    Auth = Security(HTTPBearer(auto_error=False))
    reads = [Auth] if read_token else []

    @app.get("/api/health", summary="API and database liveness")
    def health() -> JSONResponse:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return JSONResponse({"status": "degraded", "database": f"down: {type(exc).__name__}"}, status_code=503)
        # the API's clock: the dashboard's "last hour" is the API's, whatever the browser's clock says
        return JSONResponse({"status": "ok", "database": "up", "now": clock().isoformat() + "Z"})

    @app.get("/api/power-data", dependencies=reads, summary="Power meter rows, newest first")
    def power_data(w: Win, anomalies_only: bool = False) -> dict[str, Any]:
        with engine.connect() as conn:
            return q.power_data(conn, w, anomalies_only)

    @app.get("/api/devices", dependencies=reads, summary="Devices of every gateway")
    def devices(gateway: str | None = None, status: Literal["online", "degraded", "offline", "unknown"] | None = None,
                type: str | None = None) -> dict[str, Any]:
        with engine.connect() as conn:
            return q.devices(conn, gateway, status, type)

    @app.get("/api/points", dependencies=reads, summary="Devices' points: kind, unit and role as each map declares")
    def points(gateway: str | None = None, device: str | None = None, role: str | None = None,
               removed: bool = False) -> dict[str, Any]:
        with engine.connect() as conn:
            return q.points(conn, gateway, device, role, removed)

    @app.get("/api/alerts", dependencies=reads, summary="Alerts, newest first")
    def alerts(w: Win, severity: Severity | None = None, resolved: bool | None = None,
               acknowledged: bool | None = None) -> dict[str, Any]:
        with engine.connect() as conn:
            return q.alerts(conn, w, severity, resolved, acknowledged)

    @app.post("/api/alerts", status_code=201, dependencies=[Auth], summary="Raise an alert")
    def create_alert(body: NewAlert) -> dict[str, Any]:
        now = _utcnow()
        with engine.begin() as conn:
            result = conn.execute(insert(schema.alerts).values(
                **body.model_dump(), event_key=f"central/{now.isoformat()}/{body.alert_type}"[:191],
                created_at=now, updated_at=now))
            alert_id = int(result.inserted_primary_key[0])  # type: ignore[index]
            return q.alert(conn, alert_id) or {}

    def _workflow(alert_id: int, values: dict[str, Any], unless: Any) -> dict[str, Any]:
        t = schema.alerts
        with engine.begin() as conn:
            if conn.execute(select(t.c.id).where(t.c.id == alert_id)).first() is None:
                raise HTTPException(404, f"no alert {alert_id}")
            conn.execute(update(t).where(t.c.id == alert_id, unless).values(**values))  # idempotent
            return q.alert(conn, alert_id) or {}

    @app.post("/api/alerts/{alert_id}/acknowledge", dependencies=[Auth], summary="Acknowledge an alert")
    def acknowledge(alert_id: int, body: Acknowledge) -> dict[str, Any]:
        now = _utcnow()
        return _workflow(alert_id, {"acknowledged": True, "acknowledged_by": body.by, "acknowledged_at": now,
                                    "updated_at": now}, schema.alerts.c.acknowledged.is_(False))

    @app.post("/api/alerts/{alert_id}/resolve", dependencies=[Auth], summary="Resolve an alert")
    def resolve(alert_id: int) -> dict[str, Any]:
        now = _utcnow()
        return _workflow(alert_id, {"resolved": True, "resolved_at": now, "updated_at": now},
                         schema.alerts.c.resolved.is_(False))

    @app.get("/api/attack-analysis", dependencies=reads,
             summary="Attack detections with a summary by type and threat level")
    def attack_analysis(w: Win, attack_type: str | None = None) -> dict[str, Any]:
        with engine.connect() as conn:
            return q.attack_analysis(conn, w, attack_type)

    @app.get("/api/statistics", dependencies=reads, summary="Aggregates: readings, power per meter, alerts, detections")
    def statistics(w: Win) -> dict[str, Any]:
        with engine.connect() as conn:
            return q.statistics(conn, w)

    @app.get("/api/system-status", dependencies=reads,
             summary="Every gateway's devices, latest self-metrics and open incidents")
    def system_status() -> dict[str, Any]:
        with engine.connect() as conn:
            return q.system_status(conn, clock())

    @app.get("/api/series", dependencies=reads,
             summary="One point of one device over time: raw readings, or 1-minute / 1-hour buckets by range and step")
    def series(device: str, point: str, gateway: str | None = None, since: datetime | None = None,
               until: datetime | None = None, step: str | None = None,
               format: Literal["points", "columns"] = "points") -> JSONResponse:
        until = naive_utc(until) or clock()
        since = naive_utc(since) or until - timedelta(hours=1)
        if since >= until:
            raise HTTPException(400, "since must be before until")
        try:
            seconds = parse_duration(step) if step is not None else None
        except ValueError as exc:
            raise HTTPException(400, f"step: {exc}") from None
        with engine.connect() as conn:
            d = schema.devices
            found = conn.execute(select(d.c.id, d.c.gateway_id).where(
                d.c.device_id_str == device, *([d.c.gateway_id == gateway] if gateway else []))).fetchall()
            if not found:
                raise HTTPException(404, f"no device {device!r}" + (f" on gateway {gateway!r}" if gateway else ""))
            if len(found) > 1:
                raise HTTPException(400, f"device {device!r} exists on gateways "
                                         f"{', '.join(sorted(g for _, g in found))}: give gateway=")
            try:  # JSON-ready already (ISO times, floats): up to 100,000 points skip FastAPI's encoder
                return JSONResponse(series_of(conn, engine, SeriesQuery(found[0][0], point, since, until, seconds),
                                              columns=format == "columns"))
            except ValueError as exc:
                raise HTTPException(400, str(exc)) from None

    @app.get("/api/gateways", dependencies=reads,
             summary="Every gateway: online / stale / offline by its last heartbeat, version, device map, clock")
    def gateways(status: Literal["online", "stale", "offline"] | None = None) -> dict[str, Any]:
        with engine.connect() as conn:
            return q.fleet(conn, clock(), status)

    @app.get("/api/database/status", dependencies=reads, summary="Backend, schema revision and row counts")
    def database_status() -> dict[str, Any]:
        with engine.connect() as conn:
            counts = q.table_counts(conn)
        return {"backend": engine.dialect.name, "revision": migrate.current_revision(engine),
                "expected_revision": migrate.head_revision(), "tables": counts}

    mount_dashboard(app)
    return app
