"""Engine creation for the central database: MySQL/MariaDB via PyMySQL, or embedded SQLite."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError

from agent.settings import CentralConfig

log = logging.getLogger(__name__)


def is_mysql(bind: Engine | Connection) -> bool:
    """MySQL or MariaDB (the server dialects), as opposed to the embedded SQLite file."""
    return bind.dialect.name in ("mysql", "mariadb")


@contextmanager
def named_lock(conn: Connection, name: str, wait: float) -> Iterator[bool]:
    """Hold the MySQL/MariaDB named lock ``name`` of the connection's database (``GET_LOCK``, waiting
    up to ``wait`` seconds) for the block; yields whether it was got. Named locks belong to the
    server: the name carries a digest of the database's, so two databases on one server never wait
    for each other. SQLite has no other writer host: always got."""
    if not is_mysql(conn):
        yield True
        return
    scoped = conn.execute(text("SELECT CONCAT(:name, '@', LEFT(MD5(DATABASE()), 16))"), {"name": name}).scalar()
    got = conn.execute(text("SELECT GET_LOCK(:name, :wait)"), {"name": scoped, "wait": wait}).scalar() == 1
    try:
        yield got
    finally:
        if got:
            conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": scoped})


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
    engine = create_engine(parsed, **kwargs)
    if is_mysql(engine):
        Failover(nodes_of(cfg)).install(engine)
    return engine


def nodes_of(cfg: CentralConfig) -> list[tuple[str, int]]:
    """(host, port) of the url's server, then of each ``failover`` node (MySQL/MariaDB URLs)."""
    url = make_url(cfg.url)
    return [(url.host or "localhost", url.port or 3306)] + [_node(n) for n in cfg.failover]


#: errors after which a connection is not used again: a Galera node that left the primary
#: component (1047 "WSREP has not yet prepared node"), a server shutting down (1053), a killed
#: connection (1927); the pool is emptied and the next connection goes through the failover
NODE_GONE = {1047, 1053, 1927}


def _node(text_: str) -> tuple[str, int]:
    host, _, port = text_.partition(":")
    return host, int(port or 3306)


def _ready(conn: Any) -> bool:
    """False when the server is a Galera node (``wsrep_on``) outside the primary component
    (``wsrep_ready`` OFF). MariaDB builds with Galera support say ``wsrep_ready`` OFF when not
    clustered: ``wsrep_on`` tells."""
    cur = conn.cursor()
    try:  # the caller closes the connection when this raises
        cur.execute("SHOW VARIABLES LIKE 'wsrep_on'")
        clustered = cur.fetchone()
        if clustered is None or str(clustered[1]).upper() != "ON":
            return True
        cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep_ready'")
        row = cur.fetchone()
    finally:
        cur.close()
    return row is not None and str(row[1]).upper() == "ON"


#: the failover of each MySQL/MariaDB engine made here
_FAILOVERS: WeakKeyDictionary[Engine, Failover] = WeakKeyDictionary()


def failover_of(engine: Engine) -> Failover | None:
    """The node list and the node in use of an engine from :func:`make_engine` (None: SQLite)."""
    return _FAILOVERS.get(engine)


def adjust_connect_params(engine: Engine, adjust: Callable[[dict[str, Any]], None]) -> None:
    """Have ``adjust`` change the DBAPI connect parameters of ``engine``'s new connections."""
    failover = failover_of(engine)
    if failover is not None:
        failover.adjusters.append(adjust)
    else:
        event.listen(engine, "do_connect", lambda _d, _r, _a, cparams: adjust(cparams))


class Failover:
    """Connects to the first of ``nodes`` that answers and is ready, starting from the one that
    last worked (sticky: it does not move back when an earlier node returns)."""

    def __init__(self, nodes: list[tuple[str, int]]) -> None:
        self.nodes = nodes
        self.current = 0
        self.moves = 0  # times a connection went to another node than the last one
        #: changes to the connect parameters (see :func:`adjust_connect_params`)
        self.adjusters: list[Callable[[dict[str, Any]], None]] = []
        self._lock = threading.Lock()

    def install(self, engine: Engine) -> None:
        """Hook into ``engine``'s connects and error handling (its ``do_connect`` makes the connection,
        so later ``do_connect`` listeners are not called: use :func:`adjust_connect_params`)."""
        event.listen(engine, "do_connect", self.connect)
        event.listen(engine, "handle_error", self.classify)
        _FAILOVERS[engine] = self

    def connect(self, dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        failure: BaseException | None = None
        for adjust in self.adjusters:
            adjust(cparams)
        for step in range(len(self.nodes)):
            index = (self.current + step) % len(self.nodes)
            host, port = self.nodes[index]
            try:
                conn = dialect.connect(*cargs, **{**cparams, "host": host, "port": port})
            except dialect.loaded_dbapi.Error as exc:
                failure = exc
                continue
            try:
                ready = _ready(conn)
            except dialect.loaded_dbapi.Error as exc:
                ready, failure = False, exc
            except BaseException:
                conn.close()
                raise
            if not ready:
                conn.close()
                failure = failure or dialect.loaded_dbapi.OperationalError(1047, f"{host}:{port} is not ready")
                continue
            with self._lock:  # several pool threads may connect at once
                if index != self.current:
                    log.warning("central database: now on %s:%s (%s:%s failed)", host, port,
                                *self.nodes[self.current])
                    self.moves += 1
                self.current = index
            return conn
        assert failure is not None
        raise failure

    @staticmethod
    def classify(context: Any) -> None:
        """Errors of a node that left (NODE_GONE) count as disconnects: the pool starts afresh."""
        args = getattr(context.original_exception, "args", ())
        if args and args[0] in NODE_GONE:
            context.is_disconnect = True
