"""Shared fixtures: a private MariaDB database per run, SQLite files, simulators on loopback."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from agent.central import migrate
from agent.central.engine import make_engine
from agent.settings import CentralConfig
from simulators.clock import START_ENV
from tests.clock import DAY_TIMES, SUITE_START, PinnedClock

# Simulators follow a daily pattern: pin their day for the whole run and every subprocess it starts.
os.environ[START_ENV] = SUITE_START

MARIADB_HOST = os.environ.get("HACKSKY_TEST_MYSQL_HOST", "127.0.0.1")
MARIADB_PORT = int(os.environ.get("HACKSKY_TEST_MYSQL_PORT", "3306"))


def _admin() -> pymysql.connections.Connection:
    return pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root", password="", autocommit=True)


@pytest.fixture(scope="session")
def mariadb_server() -> str:
    """Base URL of the test MariaDB server (fails loudly when it is not running)."""
    try:
        _admin().close()
    except pymysql.MySQLError as exc:
        pytest.fail(f"MariaDB at {MARIADB_HOST}:{MARIADB_PORT} is required for the tests: {exc}")
    return f"mysql+pymysql://root@{MARIADB_HOST}:{MARIADB_PORT}"


@pytest.fixture
def mariadb_url(mariadb_server: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"hacksky_test_{uuid.uuid4().hex[:12]}"
    admin = _admin()
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield f"{mariadb_server}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture(params=DAY_TIMES, ids=[f"{t}-{z}" for t, z in DAY_TIMES])
def pinned_clock(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[PinnedClock]:
    """Each test using it runs at every pinned time of day, with the process in that time zone."""
    day_time, tz = request.param
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        yield PinnedClock(day_time, tz)
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """An embedded SQLite database file for one test."""
    return f"sqlite:///{tmp_path / 'central.db'}"


@pytest.fixture(params=["sqlite", "mariadb"])
def central_url(request: pytest.FixtureRequest) -> str:
    """Each test using it runs once against SQLite and once against MariaDB."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def migrated_engine(central_url: str):  # type: ignore[no-untyped-def]
    """An engine on a database at the newest schema revision."""
    engine = make_engine(CentralConfig(url=central_url))
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def no_leftover_threads() -> Iterator[None]:
    """Fail a test that leaves threads running (as pymodbus' own suite does)."""
    before = set(threading.enumerate())
    yield
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()
                and not t.name.startswith(("pymysql", "asyncio_", "AnyIO worker"))]
    for t in leftover:
        t.join(timeout=5)
    still = [t.name for t in leftover if t.is_alive()]
    assert not still, f"test left threads running: {still}"
