"""FastAPI application over the central database: read-only except the alert workflow."""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import Engine, insert, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from agent import migrate, schema
from agent.api import queries as q

log = logging.getLogger(__name__)

Severity = Literal["low", "medium", "high", "critical"]


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


def window(gateway: str | None = None, device: str | None = None, since: datetime | None = None,
           until: datetime | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
           offset: Annotated[int, Query(ge=0)] = 0) -> q.Window:
    """Filters shared by the list endpoints (times in UTC)."""
    if since and until and since >= until:
        raise HTTPException(400, "since must be before until")
    return q.Window(gateway, device, since.replace(tzinfo=None) if since else None,
                    until.replace(tzinfo=None) if until else None, limit, offset)


#: the shared filters as a dependency (module level: FastAPI resolves string annotations from globals)
Win = Annotated[q.Window, Depends(window)]


def create_app(engine: Engine, token: str | None) -> FastAPI:
    """The API bound to one central database; writes need ``Authorization: Bearer <token>``."""
    app = FastAPI(title="HackSky Edge central API", version="1.0",
                  description="The HackSky dashboard's endpoints over the central database. GET endpoints are "
                              "read-only; creating, acknowledging and resolving alerts needs the API token.")

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'] if p not in ('query', 'body', 'path'))}: {e['msg']}"
                    for e in exc.errors()]
        return JSONResponse({"error": "; ".join(problems)}, status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(SQLAlchemyError)
    async def database_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.error("central database error on %s: %s", request.url.path, exc)
        return JSONResponse({"error": "central database unavailable"}, status_code=503)

    def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            raise HTTPException(403, "writes are disabled: start the API with a token (HACKSKY_API_TOKEN or "
                                     "--token-file)")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    Auth = Depends(authorized)

    @app.get("/api/health", summary="API and database liveness")
    def health() -> JSONResponse:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return JSONResponse({"status": "degraded", "database": f"down: {type(exc).__name__}"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "up"})

    @app.get("/api/power-data", summary="Power meter rows, newest first")
    def power_data(w: Win, anomalies_only: bool = False) -> dict[str, Any]:
        with engine.connect() as conn:
            return q.power_data(conn, w, anomalies_only)

    @app.get("/api/devices", summary="Devices of every gateway")
    def devices(gateway: str | None = None, status: Literal["online", "degraded", "offline", "unknown"] | None = None,
                type: str | None = None) -> dict[str, Any]:
        with engine.connect() as conn:
            return q.devices(conn, gateway, status, type)

    @app.get("/api/alerts", summary="Alerts, newest first")
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

    @app.get("/api/attack-analysis", summary="Attack detections with a summary by type and threat level")
    def attack_analysis(w: Win, attack_type: str | None = None) -> dict[str, Any]:
        with engine.connect() as conn:
            return q.attack_analysis(conn, w, attack_type)

    @app.get("/api/statistics", summary="Aggregates: readings, power per meter, alerts, detections")
    def statistics(w: Win) -> dict[str, Any]:
        with engine.connect() as conn:
            return q.statistics(conn, w)

    @app.get("/api/system-status", summary="Every gateway's devices, latest self-metrics and open incidents")
    def system_status() -> dict[str, Any]:
        with engine.connect() as conn:
            return q.system_status(conn)

    @app.get("/api/database/status", summary="Backend, schema revision and row counts")
    def database_status() -> dict[str, Any]:
        with engine.connect() as conn:
            counts = q.table_counts(conn)
        return {"backend": engine.dialect.name, "revision": migrate.current_revision(engine),
                "expected_revision": migrate.head_revision(), "tables": counts}

    return app
