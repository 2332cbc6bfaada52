"""Engine creation for the central database: MySQL/MariaDB via PyMySQL, or embedded SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url

from agent.settings import CentralConfig


def resolve_url(url: str, password_file: Path | None = None) -> URL:
    """The URL with the password read from ``password_file`` when one is given."""
    parsed = make_url(url)
    if password_file is not None:
        parsed = parsed.set(password=password_file.read_text(encoding="utf-8").strip())
    return parsed


def redacted(url: URL) -> str:
    """The URL as safe to log: never the password."""
    return url.render_as_string(hide_password=True)


def make_engine(cfg: CentralConfig) -> Engine:
    """A pooled engine; SQLite files get WAL mode and their directory created."""
    parsed = resolve_url(cfg.url, cfg.password_file)
    connect_timeout = cfg.connect_timeout
    kwargs: dict[str, Any] = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
        engine = create_engine(parsed, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if parsed.get_backend_name() in ("mysql", "mariadb"):
        timeout = max(1, int(connect_timeout))
        connect_args: dict[str, Any] = {"connect_timeout": timeout, "read_timeout": 60, "write_timeout": 60,
                                        "charset": "utf8mb4"}
        if cfg.tls is not None:
            connect_args.update(ssl_ca=str(cfg.tls.ca), ssl_verify_cert=True,
                                ssl_verify_identity=cfg.tls.verify_hostname)
            if cfg.tls.cert is not None:
                connect_args.update(ssl_cert=str(cfg.tls.cert), ssl_key=str(cfg.tls.key or cfg.tls.cert))
        kwargs["connect_args"] = connect_args
    kwargs.update(pool_pre_ping=True, pool_recycle=3600, pool_size=2, max_overflow=2)
    return create_engine(parsed, **kwargs)
