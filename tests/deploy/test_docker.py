"""Dockerfile and docker-compose.yml, checked statically (no image is built here), and the compose
database user's grants, run for real on MariaDB."""

from __future__ import annotations

import re
import secrets
import tomllib
import uuid
from pathlib import Path

import pymysql
import yaml
from alembic import command
from sqlalchemy import delete, insert, select, update

from agent.central import migrate, schema
from agent.central.engine import make_engine
from agent.settings import CentralConfig, MonitoringConfig

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
AGENT_USER_SQL = ROOT / "deploy" / "compose" / "initdb" / "agent-user.sh"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments left out."""
    joined = re.sub(r"\\\n\s*", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#")))
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in joined.splitlines() if ln.strip()]


def test_image_installs_from_the_hashed_lock_then_the_package_alone() -> None:
    runs = [args for ins, args in instructions(DOCKERFILE) if ins == "RUN"]
    lock = next(i for i, r in enumerate(runs) if "--require-hashes -r /tmp/requirements.lock" in r)
    package = next(i for i, r in enumerate(runs) if "--no-deps ." in r)
    assert lock < package


def test_image_copies_every_shipped_package_and_the_build_context_has_them() -> None:
    copied = {args.split()[0] for ins, args in instructions(DOCKERFILE) if ins == "COPY" and "--from" not in args}
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    shipped = {p.rstrip("*") for p in find["include"]}
    assert shipped <= copied and "requirements.lock" in copied and "bench" not in copied
    allowed = {ln[1:] for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.startswith("!")}
    assert copied <= allowed, ".dockerignore keeps out something the Dockerfile copies"
    assert all((ROOT / c).exists() for c in copied)


def test_healthcheck_asks_health_where_the_agent_serves_it_by_default() -> None:
    (check,) = [args for ins, args in instructions(DOCKERFILE) if ins == "HEALTHCHECK"]
    default = MonitoringConfig()
    assert f"http://{default.listen}:{default.port}/health" in check
    assert instructions(DOCKERFILE)[-1] == ("ENTRYPOINT", '["hacksky-edge"]')


def test_compose_commits_no_password_and_the_agent_reads_the_generated_one() -> None:
    services = COMPOSE["services"]
    assert "secrets" not in COMPOSE, "no password file from the repository"
    assert not (ROOT / "deploy" / "mysql_password.example").exists()
    env = services["mysql"]["environment"]
    assert env["MYSQL_RANDOM_ROOT_PASSWORD"] == "yes"
    assert not {"MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_PASSWORD_FILE", "MYSQL_ROOT_PASSWORD"} & set(env), \
        "the image's MYSQL_USER gets ALL on the database: the agent's user is made by initdb instead"
    compose_map = yaml.safe_load((ROOT / "config" / "compose.yaml").read_text())
    password_file = Path(compose_map["central"]["password_file"])
    mounts = dict(v.split(":")[:2][::-1] for v in services["agent"]["volumes"])
    assert mounts[str(password_file.parent)] == "db-secret"
    assert "db-secret:/run/secrets" in services["db-password"]["volumes"]
    for service in ("mysql", "agent"):
        assert services[service]["depends_on"]["db-password"] == {"condition": "service_completed_successfully"}
    for volume in (v.split(":")[0] for s in services.values() for v in s.get("volumes", [])):
        assert volume in COMPOSE["volumes"] or (ROOT / volume).exists(), volume


def _agent_user_sql(user: str, database: str, password: str) -> list[str]:
    """The statements of deploy/compose/initdb/agent-user.sh, as the mysql entrypoint would send them."""
    body = AGENT_USER_SQL.read_text().split("<<EOSQL\n", 1)[1].split("\nEOSQL", 1)[0]
    body = (body.replace("${hacksky_password}", password).replace("\\`${MYSQL_DATABASE}\\`", f"`{database}`")
            .replace("'hacksky_edge'@'%'", f"'{user}'@'%'"))
    lines = [ln for ln in body.splitlines() if not ln.startswith("--")]
    return [s.strip() for s in " ".join(lines).split(";") if s.strip()]


def test_compose_agent_user_can_migrate_write_and_downgrade_its_database(mariadb_url: str, tmp_path: Path) -> None:
    database = mariadb_url.rsplit("/", 1)[1]
    user, password = f"hs_{uuid.uuid4().hex[:12]}", secrets.token_hex(16)
    admin = pymysql.connect(host="127.0.0.1", port=int(mariadb_url.rsplit(":", 1)[1].split("/")[0]), user="root",
                            password="", autocommit=True)
    try:
        with admin.cursor() as cur:
            for statement in _agent_user_sql(user, database, password):
                cur.execute(statement)
            cur.execute(f"SHOW GRANTS FOR '{user}'@'%'")
            grants = [row[0] for row in cur.fetchall()]
        (on_database,) = [g for g in grants if not g.startswith("GRANT USAGE ON *.*")]
        privileges, _, target = on_database.removeprefix("GRANT ").partition(" ON ")
        assert set(privileges.split(", ")) == {"SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "ALTER", "INDEX",
                                               "REFERENCES", "DROP"}
        assert target.startswith(f"`{database}`.* TO") and "GRANT OPTION" not in target
        (tmp_path / "pass").write_text(password + "\n")
        url = mariadb_url.replace("root@", f"{user}@")
        engine = make_engine(CentralConfig(url=url, password_file=tmp_path / "pass"))
        try:
            assert migrate.upgrade(engine) == migrate.head_revision()
            with engine.begin() as conn:
                conn.execute(insert(schema.devices).values(gateway_id="gw", device_id_str="m1"))
                conn.execute(update(schema.devices).values(status="online"))
                assert conn.execute(select(schema.devices.c.status)).scalar() == "online"
                conn.execute(delete(schema.devices))
            cfg = migrate.alembic_config()
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.downgrade(cfg, "base")
            assert migrate.current_revision(engine) is None
            assert migrate.upgrade(engine) == migrate.head_revision()
        finally:
            engine.dispose()
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        admin.close()
