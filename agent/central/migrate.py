"""Create or upgrade the central schema with Alembic (``hacksky-edge init-db``)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from agent.central.engine import named_lock

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).with_name("migrations")
#: MySQL/MariaDB named lock held while migrating (GET_LOCK), and how long to wait for it
LOCK_NAME, LOCK_WAIT = "hacksky_edge_migrate", 120


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migrations (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest revision this agent knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def upgrade(engine: Engine) -> str:
    """Bring the database to the newest revision; returns it."""
    cfg = alembic_config()
    before = current_revision(engine)
    # gateways starting together against one empty database migrate one after another
    with engine.begin() as conn, named_lock(conn, LOCK_NAME, LOCK_WAIT) as got:
        if not got:
            raise TimeoutError(f"another process held the migration lock {LOCK_NAME!r} for {LOCK_WAIT} s")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    head = head_revision()
    if before != head:
        log.info("central schema upgraded from %s to %s", before or "empty", head)
    return head
