"""``hacksky-edge central grants``: least-privilege MySQL/MariaDB roles for each kind of user.

- ``hacksky_gateway``: what an agent needs (``auto_migrate: false``): insert and update what it
  writes, read what it checks; no DELETE, no DDL.
- ``hacksky_maintain``: ``central maintain``: rebuild rollups, delete past retention, add and drop
  the daily partitions of ``readings`` (MySQL asks ALTER and DROP on the table for that).
- ``hacksky_api``: ``hacksky-edge api``: read everything, raise, acknowledge and resolve alerts.
- ``hacksky_reader``: the central team's queries and dashboards: read only.

Schema changes stay with the administrator who runs ``init-db``.
"""

from __future__ import annotations

from collections.abc import Iterator

#: role -> [(privileges, tables)]; ``*`` is every table of the database
ROLES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "hacksky_gateway": [
        # INSERT ... ON DUPLICATE KEY UPDATE (replays are no-ops) needs UPDATE as well as INSERT
        ("SELECT, INSERT, UPDATE", ("devices", "readings", "power_readings", "alerts", "attack_detections",
                                    "system_metrics", "gateways", "rollup_pending", "device_points")),
        ("SELECT", ("alembic_version",)),
    ],
    "hacksky_maintain": [
        # rebuild rollups, mark hours (--backfill)
        ("SELECT, INSERT, DELETE", ("readings_1m", "readings_1h", "power_1h", "rollup_pending")),
        ("SELECT, DELETE, ALTER, DROP", ("readings",)),  # REORGANIZE and DROP PARTITION
        ("SELECT, DELETE", ("power_readings", "system_metrics", "alerts", "attack_detections")),
        ("SELECT", ("devices", "gateways", "alembic_version")),
    ],
    "hacksky_api": [
        ("SELECT", ("*",)),
        ("INSERT, UPDATE", ("alerts",)),
    ],
    "hacksky_reader": [
        ("SELECT", ("*",)),
    ],
}


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def grants_sql(database: str) -> Iterator[str]:
    """The statements creating the roles and granting them, for ``database``."""
    db = _quote(database)
    yield f"-- least-privilege roles for the HackSky Edge central database {db}"
    for role, grants in ROLES.items():
        yield f"CREATE ROLE IF NOT EXISTS {role};"
        for privileges, tables in grants:
            for table in tables:
                target = f"{db}.*" if table == "*" else f"{db}.{_quote(table)}"
                yield f"GRANT {privileges} ON {target} TO {role};"
    yield ("-- then, per user: CREATE USER 'plant_a_gw'@'%' IDENTIFIED BY '...'; GRANT hacksky_gateway TO "
           "'plant_a_gw'@'%'; SET DEFAULT ROLE hacksky_gateway FOR 'plant_a_gw'@'%'; (MariaDB; MySQL 8: "
           "SET DEFAULT ROLE hacksky_gateway TO 'plant_a_gw'@'%';)")
