"""`check --connect`'s reading of every point (real simulators on loopback) and its check of the
central user's privileges (real MariaDB, throw-away users and roles)."""

from __future__ import annotations

import io
import socket
import struct
import uuid
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest
import yaml
from sqlalchemy import create_engine

from agent.central import migrate
from agent.central.grants import ROLES
from agent.central.privileges import check_privileges
from agent.configload import load_config_text
from agent.pointcheck import check_devices
from agent.settings import AgentConfig, CentralConfig
from simulators.opcua_plant import OpcUaPlant
from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread, free_port
from simulators.store import RegisterImage
from tests.conftest import MARIADB_HOST, MARIADB_PORT

#: a float32 whose low word makes the word-swapped decoding a NaN (0x420C7FC0, about 35.12)
NAN_WHEN_SWAPPED = struct.unpack(">f", bytes.fromhex("420C7FC0"))[0]


class SteadyMeter(PowerMeter):
    """A power meter whose measurements stay put (round values: their word-swapped decodings are absurd)."""

    def __init__(self, voltages: tuple[float, float, float] = (230.0, 230.0, 230.0)) -> None:
        self.voltages = voltages
        super().__init__(seed=0)

    def measure(self, wall: float) -> dict[str, float]:
        l1, l2, l3 = self.voltages
        return {"voltage_l1": l1, "voltage_l2": l2, "voltage_l3": l3, "current_l1": 20.0, "current_l2": 20.0,
                "current_l3": 20.0, "active_power": 40.0, "frequency": 50.0, "power_factor": 0.5,
                "temperature": NAN_WHEN_SWAPPED}


class RewindingCounter:
    """An energy counter (input 0, uint32, Wh) that loses 5 Wh at each refresh: a reset, or the wrong register."""

    def __init__(self) -> None:
        self.image = RegisterImage()
        self.wh = 10_000
        self.image.put("input", 0, self.wh, "uint32")

    def refresh(self, now: float) -> None:
        self.wh -= 5
        self.image.put("input", 0, self.wh, "uint32")


def f32(name: str, address: int, unit: str | None = None, role: str | None = None, **more: Any) -> dict[str, Any]:
    return {"name": name, "address": address, "type": "float32", "unit": unit, "role": role, **more}


METER_POINTS = [
    f32("voltage_l1", 0, "V", "voltage"), f32("voltage_l2", 2, "V", "voltage"), f32("voltage_l3", 4, "V", "voltage"),
    f32("current_l1", 6, "A", "current"), f32("active_power", 12, "kW", "power"),
    f32("frequency", 14, "Hz", "frequency"), f32("power_factor", 16, None, "power_factor"),
    f32("temperature", 18, "°C", "temperature"),
    {"name": "energy", "table": "input", "address": 10, "type": "uint64", "unit": "Wh", "role": "energy"},
    {"name": "breaker", "table": "coil", "address": 0, "type": "bool"},
]


def config(*devices: dict[str, Any]) -> AgentConfig:
    return load_config_text(yaml.safe_dump({
        "gateway": {"id": "gw-check"}, "defaults": {"timeout": "300ms"},
        "devices": [d if d.get("protocol") == "opcua" else {"host": "127.0.0.1", **d} for d in devices]}))


def run_check(cfg: AgentConfig) -> tuple[int, str]:
    out = io.StringIO()
    code = check_devices(cfg, out, recheck_after=0.2)
    return code, out.getvalue()


def line_of(text: str, start: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith(start)]
    return line


def test_a_right_map_answers_every_point_without_warnings_and_reads_only_counters_twice() -> None:
    sim = ModbusSimulator({1: PowerMeter(seed=3)})
    with SimulatorThread([sim]):
        code, text = run_check(config({"id": "meter", "port": sim.port, "points": METER_POINTS}))
    assert code == 0, text
    assert line_of(text, "device meter ").startswith(
        f"device meter (modbus 127.0.0.1:{sim.port}/1): reachable, 10 of 10 points answered, read in ")
    assert "warning:" not in text and "note:" not in text
    assert line_of(text, "  meter breaker ").split() == ["meter", "breaker", "good", "1"]
    assert line_of(text, "  meter frequency ").endswith(" Hz")
    assert text.endswith("devices: 1 of 1 reachable, 10 of 10 points answered, 0 warnings\n")
    # the holding registers and the coil once, the energy counter (input registers) twice
    assert dict(sim.requests.function_codes) == {1: 1, 3: 1, 4: 2}


def test_wrong_maps_warn_point_by_point() -> None:
    sim = ModbusSimulator({1: SteadyMeter(voltages=(230.0, 231.0, 190.0))})
    with SimulatorThread([sim]):
        code, text = run_check(config(
            {"id": "swapped", "port": sim.port, "points": [
                f32("active_power", 12, "kW", word_order="little"), f32("temperature", 18, "°C", word_order="little"),
                f32("current_l1", 6, "A")]},
            {"id": "mislabelled", "port": sim.port, "points": [
                f32("frequency", 0, "Hz", "frequency"), f32("power_factor", 12, role="power_factor"),
                f32("voltage_l1", 14, "V", "voltage"), {"name": "ghost", "address": 40}]},
            {"id": "phases", "port": sim.port, "points": [f32(f"voltage_l{i + 1}", 2 * i, "V", "voltage")
                                                          for i in range(3)]}))
    assert code == 1, "a point failed"
    swapped = line_of(text, "  swapped active_power ")
    assert "good" in swapped and "warning: word-swapped? with word_order big it reads 40 kW" in swapped
    not_finite = line_of(text, "  swapped temperature ")
    assert "bad:not_finite" in not_finite
    assert f"word-swapped? with word_order big it reads {NAN_WHEN_SWAPPED:.6g} °C" in not_finite
    assert "warning:" not in line_of(text, "  swapped current_l1 "), "a right float32 beside them"
    assert "warning: frequency 230 Hz outside 45-65 Hz" in line_of(text, "  mislabelled frequency ")
    assert "warning: power factor 40 outside [-1, 1]" in line_of(text, "  mislabelled power_factor ")
    assert ("warning: voltage 50 V not within ±15% of a nominal voltage (nearest 100 V)"
            in line_of(text, "  mislabelled voltage_l1 "))
    ghost = line_of(text, "  mislabelled ghost ")
    assert ghost.split()[2:4] == ["bad:exception:2", "-"] and "(device degraded: exception:2 x1)" in ghost
    assert "reachable, 3 of 4 points answered" in line_of(text, "device mislabelled ")
    # 190 V is within 15 % of 220 V, but not of the other phases
    assert "warning:" not in "".join(line_of(text, f"  phases voltage_l{i} ") for i in (1, 2, 3))
    assert line_of(text, "  phases note: ") == ("  phases note: phase voltages disagree by 18% (more than 10%): "
                                                 "voltage_l1 230 V, voltage_l2 231 V, voltage_l3 190 V")


def test_unreachable_devices_are_reported_and_the_others_read() -> None:
    sim = ModbusSimulator({1: PowerMeter(seed=4)})
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(8)  # accepts connections (kernel backlog) and never answers
    closed = free_port()
    try:
        with SimulatorThread([sim]):
            code, text = run_check(config(
                {"id": "dead", "port": closed, "points": [f32("v", 0, "V", "voltage"), f32("f", 14, "Hz")]},
                {"id": "mute", "port": mute.getsockname()[1], "points": [f32("v", 0, "V")]},
                {"id": "meter", "port": sim.port, "points": [f32("v", 0, "V", "voltage")]},
                {"id": "spare", "enabled": False, "port": sim.port, "points": [f32("v", 0, "V")]}))
    finally:
        mute.close()
    assert code == 1
    assert line_of(text, "device dead ").startswith(
        f"device dead (modbus 127.0.0.1:{closed}/1): UNREACHABLE (device down: connection x2; connection refused), "
        "0 of 2 points answered")
    assert "  dead " not in text and "  mute " not in text  # one line for a device none of whose points answered
    assert line_of(text, "device mute ").startswith("device mute (modbus 127.0.0.1:")
    assert "UNREACHABLE (device down: timeout x1)" in line_of(text, "device mute ")
    assert "reachable, 1 of 1 points answered" in line_of(text, "device meter ")
    assert "device spare: disabled, not read\n" in text
    assert text.endswith("devices: 1 of 3 reachable, 1 of 4 points answered, 0 warnings\n")


def test_a_counter_going_backwards_warns_and_a_rising_one_does_not() -> None:
    sim = ModbusSimulator({1: PowerMeter(seed=5), 2: RewindingCounter()})
    with SimulatorThread([sim]):
        code, text = run_check(config(
            {"id": "meter", "port": sim.port, "points": [
                {"name": "energy", "table": "input", "address": 10, "type": "uint64", "unit": "Wh"}]},
            {"id": "rewinding", "port": sim.port, "unit_id": 2, "points": [
                {"name": "import", "table": "input", "address": 0, "type": "uint32", "unit": "kWh", "scale": 0.001}]}))
    assert code == 0, "warnings do not fail the check"
    assert "warning:" not in line_of(text, "  meter energy ")
    assert line_of(text, "  rewinding import ").endswith(
        "good 9.995 kWh  warning: counter went backwards: 9.995 then 9.99 kWh 0.2 s later")
    assert text.endswith("1 warning\n")


def test_an_opcua_device_in_subscribe_mode_is_read_once_and_an_unknown_node_fails() -> None:
    port = free_port()
    with SimulatorThread([OpcUaPlant(port=port)]):
        code, text = run_check(config({
            "id": "plc", "protocol": "opcua", "endpoint": f"opc.tcp://127.0.0.1:{port}/hacksky/plant",
            "mode": "subscribe", "timeout": "1s", "points": [
                {"name": "level", "path": "/Objects/2:Plant/2:Tank1/2:Level", "unit": "m"},
                {"name": "ghost", "path": "/Objects/2:Plant/2:Tank1/2:Nope"}]}))
    assert code == 1
    assert "reachable, 1 of 2 points answered" in line_of(text, "device plc ")
    assert line_of(text, "  plc level ").split()[2] == "good"
    assert line_of(text, "  plc ghost ").endswith("bad:not_read - (the driver returned no reading for it; its log "
                                                  "says why)")


# -- privileges ----------------------------------------------------------------------------------------

def admin() -> pymysql.connections.Connection:
    return pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root", password="", autocommit=True)


@pytest.fixture
def throwaway(mariadb_url: str) -> Iterator[tuple[str, str, Any]]:
    """(database, user) on a migrated database: a user with no privileges yet, and a root cursor; both
    the user and any role named ``<user>_r...`` are dropped afterwards."""
    engine = create_engine(mariadb_url)
    migrate.upgrade(engine)
    engine.dispose()
    database = mariadb_url.rsplit("/", 1)[1]
    user = f"pc_{uuid.uuid4().hex[:12]}"
    root = admin()
    cur = root.cursor()
    cur.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw'")
    try:
        yield database, user, cur
    finally:
        cur.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
        for role in (f"{user}_outer", f"{user}_inner"):
            cur.execute(f"DROP ROLE IF EXISTS {role}")
        root.close()


def check_as(user: str, database: str) -> tuple[int, str]:
    out = io.StringIO()
    code = check_privileges(CentralConfig(url=f"mysql+pymysql://{user}:pw@{MARIADB_HOST}:{MARIADB_PORT}/{database}"),
                            out)
    return code, out.getvalue()


def test_missing_privileges_are_listed_with_the_grants_that_fix_them(throwaway: tuple[str, str, Any]) -> None:
    database, user, root = throwaway
    pattern = database.replace("_", "\\_")[:-4] + "%"  # a database-level grant by LIKE pattern counts
    root.execute(f"GRANT SELECT, INSERT ON `{pattern}`.* TO '{user}'@'127.0.0.1'")
    root.execute(f"GRANT UPDATE ON `{database}`.`readings` TO '{user}'@'127.0.0.1'")
    root.execute(f"GRANT SELECT (`point`), UPDATE (`point`) ON `{database}`.`device_points` TO '{user}'@'127.0.0.1'")
    code, text = check_as(user, database)
    assert code == 1
    lines = text.splitlines()
    assert lines[0] == (f"central user '{user}'@'127.0.0.1' lacks privileges the gateway needs (those of "
                        "hacksky_gateway, see `hacksky-edge central grants`):")
    written = [table for privileges, tables in ROLES["hacksky_gateway"] if "UPDATE" in privileges for table in tables]
    assert lines[1:] == [f"  missing UPDATE on `{database}`.`{table}`: GRANT UPDATE ON `{database}`.`{table}` "
                         f"TO '{user}'@'127.0.0.1';" for table in written if table != "readings"], \
        "column privileges do not count"
    for line in lines[1:]:
        root.execute(line.split(": ", 1)[1])
    assert check_as(user, database) == (0, f"central user '{user}'@'127.0.0.1': holds every privilege of "
                                           "hacksky_gateway the gateway needs\n")


def test_a_role_counts_once_it_is_active_at_login(throwaway: tuple[str, str, Any]) -> None:
    database, user, root = throwaway
    outer, inner = f"{user}_outer", f"{user}_inner"
    for role in (outer, inner):
        root.execute(f"CREATE ROLE {role}")
    root.execute(f"GRANT SELECT, INSERT, UPDATE ON `{database}`.* TO {inner}")
    root.execute(f"GRANT {inner} TO {outer}")  # a role granted to a role counts with it
    root.execute(f"GRANT {outer} TO '{user}'@'127.0.0.1'")
    code, text = check_as(user, database)
    assert code == 1 and text.count("  missing ") == sum(len(t) for _, t in ROLES["hacksky_gateway"])
    fix = f"SET DEFAULT ROLE `{outer}` FOR '{user}'@'127.0.0.1';"
    assert text.splitlines()[-1] == f"  role `{outer}` is granted but not active at login, so it does not count: {fix}"
    root.execute(fix)
    code, text = check_as(user, database)
    assert code == 0 and f"'{user}'@'127.0.0.1' (roles " in text and "holds every privilege" in text


def test_a_file_database_has_no_privileges_to_check(sqlite_url: str) -> None:
    out = io.StringIO()
    assert check_privileges(CentralConfig(url=sqlite_url), out) == 0
    assert out.getvalue() == f"central database {sqlite_url}: file database: no privileges to check\n"
