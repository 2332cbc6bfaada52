"""Engine creation for the central database: MySQL/MariaDB via PyMySQL, or embedded SQLite."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError

from agent.settings import CentralConfig


def is_mysql(bind: Engine | Connection) -> bool:
    """MySQL or MariaDB (the server dialects), as opposed to the embedded SQLite file."""
    return bind.dialect.name in ("mysql", "mariadb")


@contextmanager
def named_lock(conn: Connection, name: str, wait: float) -> Iterator[bool]:
    """Hold the MySQL/MariaDB named lock ``name`` (``GET_LOCK``, waiting up to ``wait`` seconds) for
    the block; yields whether it was got. SQLite has no other writer host: always got."""
    if not is_mysql(conn):
        yield True
        return
    got = conn.execute(text("SELECT GET_LOCK(:name, :wait)"), {"name": name, "wait": wait}).scalar() == 1
    try:
        yield got
    finally:
        if got:
            conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})


def resolve_url(url: str, password_file: Path | None = None) -> URL:
    """The URL with the password read from ``password_file`` when one is given."""
    parsed = make_url(url)
    if password_file is not None:
        parsed = parsed.set(password=password_file.read_text(encoding="utf-8").strip())
    return parsed


#: query parameters of a database URL that carry a secret (``?password=``, ``?passwd=``, ...)
SECRET_PARAM = re.compile(r"pass|pwd|secret|token|api_?key|credential", re.IGNORECASE)
_USERINFO_PASSWORD = re.compile(r"(//[^/:@]*:)[^/@]*@")
_QUERY_SECRET = re.compile(rf"([?&][^=&]*(?:{SECRET_PARAM.pattern})[^=&]*=)[^&]*", re.IGNORECASE)


def secret_params(url: URL) -> list[str]:
    """Names of the URL's query parameters that carry a secret."""
    return [name for name in url.query if SECRET_PARAM.search(name)]


def redacted(url: URL) -> str:
    """The URL as safe to log: its password and secret query parameters shown as ``***``."""
    secrets = secret_params(url)
    kept = url.difference_update_query(secrets)
    shown = kept.render_as_string(hide_password=True)
    if not secrets:
        return shown
    return shown + ("&" if kept.query else "?") + "&".join(f"{name}=***" for name in secrets)


def redact_url(url: str) -> str:
    """``url`` as safe to show (log, ``status``, state file), even when it does not parse."""
    try:
        return redacted(make_url(url))
    except (ArgumentError, ValueError):
        return _QUERY_SECRET.sub(r"\1***", _USERINFO_PASSWORD.sub(r"\1***@", url))


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
    # a connection per parallel pack, plus device registration and the odd overflow
    kwargs.update(pool_pre_ping=True, pool_recycle=3600, pool_size=cfg.parallel_writes() + 1, max_overflow=2)
    return create_engine(parsed, **kwargs)
