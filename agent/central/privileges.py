"""``check --connect`` on the central database: does the map's user hold what the gateway needs
(the privileges of the ``hacksky_gateway`` role, :mod:`agent.central.grants`)? Each missing one is
reported with the GRANT that fixes it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TextIO

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from agent.settings import CentralConfig

GATEWAY_ROLE = "hacksky_gateway"
_NAME = r"(?:`(?:[^`]|``)*`|\*)"
_PRIVILEGE_LINE = re.compile(rf"^GRANT (?P<privileges>.+?) ON (?P<db>{_NAME})\.(?P<table>{_NAME}) TO ")
_ROLE_LINE = re.compile(r"^GRANT (?P<roles>`.*`) TO (?P<grantee>`.*)$")
_QUOTED = re.compile(r"`((?:[^`]|``)*)`(?:@`(?:[^`]|``)*`)?")


def _unquote(name: str) -> str:
    return name[1:-1].replace("``", "`") if name.startswith("`") else name


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _like(pattern: str, name: str) -> bool:
    """``name`` matches a database-level grant's name, a LIKE pattern (``_``, ``%``, ``\\`` escapes)."""
    regex, escaped = [], False
    for ch in pattern:
        if escaped or ch not in "\\%_":
            regex.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            regex.append(".*" if ch == "%" else ".")
    return re.fullmatch("".join(regex), name) is not None


@dataclass(frozen=True)
class _Grant:
    """One privilege line of SHOW GRANTS: privileges on every database, one (a pattern), or one table."""

    privileges: frozenset[str]
    database: str  # "*": every database
    table: str  # "*": every table of the database(s)

    def covers(self, privilege: str, database: str, table: str) -> bool:
        if privilege not in self.privileges and not {"ALL", "ALL PRIVILEGES"} & self.privileges:
            return False
        if self.database == "*":
            return True
        if self.table == "*":
            return _like(self.database, database)
        return (self.database, self.table) == (database, table)


def _parse_grant(line: str) -> _Grant | None:
    """A privilege line's privileges and target; None for other lines (roles, PROXY, routines).
    Column privileges (``SELECT (`a`)``) do not count: the gateway needs whole tables."""
    match = _PRIVILEGE_LINE.match(line)
    if match is None:
        return None
    parts = re.split(r",\s*(?![^()]*\))", match["privileges"])
    privileges = frozenset(p.strip().upper() for p in parts if "(" not in p)
    return _Grant(privileges, _unquote(match["db"]), _unquote(match["table"]))


@dataclass(frozen=True)
class MissingGrant:
    """Privileges the central user lacks on one table, and the statement granting them."""

    privileges: tuple[str, ...]
    target: str  # `db`.`table`
    grantee: str  # 'user'@'host'

    @property
    def statement(self) -> str:
        return f"GRANT {', '.join(self.privileges)} ON {self.target} TO {self.grantee};"

    def __str__(self) -> str:
        return f"missing {', '.join(self.privileges)} on {self.target}: {self.statement}"


@dataclass(frozen=True)
class Privileges:
    """What the central user (with its active roles) lacks of a role's privileges."""

    user: str  # 'user'@'host'
    active_roles: tuple[str, ...]
    inactive_roles: tuple[str, ...]  # granted to the user, but not enabled at login (not its default role)
    missing: tuple[MissingGrant, ...]
    mariadb: bool = True

    def default_role_statement(self, role: str) -> str:
        """The statement enabling ``role`` at the user's every login (MariaDB and MySQL 8 differ)."""
        return f"SET DEFAULT ROLE {_quote(role)} {'FOR' if self.mariadb else 'TO'} {self.user};"


def _needed(role: str) -> list[tuple[str, str]]:
    """(table, privilege) pairs ``role`` holds in :data:`agent.central.grants.ROLES`, in its order."""
    from agent.central.grants import ROLES

    return [(table, privilege.strip()) for privileges, tables in ROLES[role]
            for table in tables for privilege in privileges.split(",")]


def gateway_privileges(engine: Engine, database: str, role: str = GATEWAY_ROLE) -> Privileges:
    """Compare the privileges of the engine's user (its own and its active roles', from SHOW GRANTS)
    with those of ``role`` on ``database``. MySQL/MariaDB only."""
    with engine.connect() as conn:
        mariadb = bool(getattr(conn.dialect, "is_mariadb", False))  # known once connected
        current_user = conn.execute(text("SELECT CURRENT_USER()")).scalar_one()
        lines = [str(row[0]) for row in conn.execute(text(_show_grants(conn, mariadb)))]
        enabled = conn.execute(text("SELECT ROLE_NAME FROM information_schema.ENABLED_ROLES")).scalars()
        active = tuple(str(r) for r in enabled if r is not None)  # MariaDB: one NULL row when none is
    name, _, host = str(current_user).rpartition("@")
    user = "'{}'@'{}'".format(name.replace("'", "''"), host.replace("'", "''"))
    user_quoted = f"{_quote(name)}@{_quote(host)}"
    granted = [role_name for line in lines if (m := _ROLE_LINE.match(line)) and m["grantee"].startswith(user_quoted)
               for role_name in _QUOTED.findall(m["roles"])]
    grants = [g for g in map(_parse_grant, lines) if g is not None]
    missing: dict[str, list[str]] = {}
    for table, privilege in _needed(role):
        if not any(g.covers(privilege, database, table) for g in grants):
            missing.setdefault(table, []).append(privilege)
    db = _quote(database)
    return Privileges(user, active, tuple(r for r in granted if r not in active), tuple(
        MissingGrant(tuple(privileges), f"{db}.*" if table == "*" else f"{db}.{_quote(table)}", user)
        for table, privileges in missing.items()), mariadb)


def _show_grants(conn: Connection, mariadb: bool) -> str:
    """MariaDB's SHOW GRANTS lists the active roles' privileges too; MySQL 8 needs them named (USING)."""
    if mariadb:
        return "SHOW GRANTS"
    roles = conn.execute(text("SELECT CURRENT_ROLE()")).scalar()
    return "SHOW GRANTS" if roles in (None, "NONE") else f"SHOW GRANTS FOR CURRENT_USER() USING {roles}"


def check_privileges(central: CentralConfig, out: TextIO, role: str = GATEWAY_ROLE) -> int:
    """One line on the central user's privileges, then one per table it lacks some on, with the GRANT
    fixing it; 1 when one is missing or they cannot be read. An SQLite file has no users to check."""
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from agent.central.engine import make_engine, redact_url
    from agent.central.writer import error_text

    where = redact_url(central.url)
    try:
        url = make_url(central.url)
    except ArgumentError:
        url = None
    if url is None or url.get_backend_name() not in ("mysql", "mariadb"):
        kind = "file database" if url is not None and url.get_backend_name() == "sqlite" else "no database server"
        out.write(f"central database {where}: {kind}: no privileges to check\n")
        return 0
    if not url.database:
        out.write(f"central database {where} names no database: no privileges to check\n")
        return 1
    # logged in without the database: a user holding nothing on it may not select it (1044), and is told what to grant
    server = URL.create(url.drivername, url.username, url.password, url.host, url.port, None, url.query)
    engine = make_engine(central.model_copy(update={"url": server.render_as_string(hide_password=False)}))
    try:
        found = gateway_privileges(engine, url.database, role)
    except SQLAlchemyError as exc:
        out.write(f"central privileges not checked: {error_text(exc)}\n")
        return 1
    finally:
        engine.dispose()
    roles = f" (roles {', '.join(found.active_roles)})" if found.active_roles else ""
    if not found.missing:
        out.write(f"central user {found.user}{roles}: holds every privilege of {role} the gateway needs\n")
        return 0
    out.write(f"central user {found.user}{roles} lacks privileges the gateway needs (those of {role}, "
              "see `hacksky-edge central grants`):\n")
    for grant in found.missing:
        out.write(f"  {grant}\n")
    for inactive in found.inactive_roles:
        out.write(f"  role {_quote(inactive)} is granted but not active at login, so it does not count: "
                  f"{found.default_role_statement(inactive)}\n")
    return 1
