"""Hot reload: devices added, removed and changed per device; unchanged ones never pause."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy.exc import OperationalError

from agent.configload import load_config_text
from agent.pipeline.service import Agent
from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread
from tests.helpers import async_wait_until, device_map, query, run_agent, wait_until

ROOT = Path(__file__).resolve().parents[2]
POINTS = [{"name": "power", "address": 12, "type": "float32", "role": "power"}]


def meter(device_id: str, port: int, unit: int, interval: str = "100ms") -> dict[str, object]:
    return {"id": device_id, "type": "power_meter", "host": "127.0.0.1", "port": port, "unit_id": unit,
            "interval": interval, "timeout": "90ms", "points": POINTS}


def test_reload_adds_removes_and_changes_devices_without_pausing_the_others(central_url: str,
                                                                            tmp_path: Path) -> None:
    server = ModbusSimulator({u: PowerMeter(seed=u) for u in (1, 2, 3)})
    buf = str(tmp_path / "buf")
    seen: dict[str, object] = {}

    with SimulatorThread([server]):
        port = server.port
        before = device_map("gw-reload", central_url, buf, [meter("keep", port, 1), meter("drop", port, 2),
                                                          meter("slow", port, 3, "100ms")])
        after = device_map("gw-reload", central_url, buf, [meter("keep", port, 1), meter("slow", port, 3, "500ms"),
                                                         meter("new", port, 2)])

        async def scenario(agent: Agent) -> None:
            await async_wait_until(lambda: agent.device_stats["keep"].polls >= 10)
            keep_stats = agent.device_stats["keep"]
            seen["drop_polls"] = agent.device_stats["drop"].polls
            result = await agent.reload(load_config_text(after))
            seen["result"] = result
            seen["same_stats"] = agent.device_stats["keep"] is keep_stats
            polls, slow = keep_stats.polls, agent.device_stats["slow"].polls
            await asyncio.sleep(2.0)
            seen["keep_polls"] = keep_stats.polls - polls
            seen["slow_polls"] = agent.device_stats["slow"].polls - slow  # counters keep counting across reloads
            seen["new_polls"] = agent.device_stats["new"].polls
            seen["keep_missed"] = keep_stats.missed
            await async_wait_until(lambda: agent.stats.central_state == "up"
                                   and not agent.delivery.buffer.reading_rows)

        agent = run_agent(before, scenario)
    assert seen["result"] == {"added": ["new"], "removed": ["drop"], "changed": ["slow"], "restart_needed": []}
    assert seen["same_stats"] and seen["keep_missed"] == 0
    # keep polled every 100 ms straight through the reload
    assert 17 <= seen["keep_polls"] <= 21  # type: ignore[operator]
    assert 3 <= seen["slow_polls"] <= 5, "slow now polls every 500 ms"  # type: ignore[operator]
    assert 17 <= seen["new_polls"] <= 21  # type: ignore[operator]
    (dropped_rows,) = query(central_url, """SELECT count(*) FROM readings r JOIN devices d ON d.id = r.device_id
        WHERE d.device_id_str = 'drop'""")[0]
    assert seen["drop_polls"] <= dropped_rows <= seen["drop_polls"] + 1, "drop stopped at the reload"  # type: ignore[operator]
    (reload_result,) = query(central_url, "SELECT last_reload_result FROM gateways WHERE gateway_id = 'gw-reload'")[0]
    assert reload_result == "applied: 1 added, 1 removed, 1 changed", "central sees the reload on the gateway's row"
    status = dict(query(central_url, "SELECT device_id_str, status_reason FROM devices"))
    assert status["drop"] == "removed from the device map" and "new" in status
    (stored,) = query(central_url, "SELECT count(*) FROM readings")[0]
    assert stored == agent.stats.readings_taken, "nothing buffered was lost across the reload"


def test_sighup_refuses_an_invalid_map_then_applies_a_valid_one(tmp_path: Path) -> None:
    server = ModbusSimulator({1: PowerMeter(seed=1), 2: PowerMeter(seed=2)})
    db = tmp_path / "c.db"
    config = tmp_path / "edge.yaml"
    with SimulatorThread([server]):
        good = device_map("gw-hup", f"sqlite:///{db}", str(tmp_path / "buf"), [meter("m1", server.port, 1)])
        config.write_text(good)
        proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)], cwd=tmp_path,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True)
        state = tmp_path / "buf" / "state.json"
        wait_until(lambda: state.exists() and json.loads(state.read_text())["readings_taken"] >= 5)
        config.write_text(good.replace("interval: 100ms", "interval: 100 parsecs", 1))
        proc.send_signal(signal.SIGHUP)
        taken = json.loads(state.read_text())["readings_taken"]
        wait_until(lambda: json.loads(state.read_text())["readings_taken"] > taken + 10)
        # the central team sees the refusal on the gateway's row, and the map it still runs
        wait_until(lambda: str(reload_row(db)[0]).startswith("refused: 1 problem(s) in the device map; first: "))
        assert reload_row(db)[1] == hashlib.sha256(good.encode()).hexdigest()
        config.write_text(device_map("gw-hup", f"sqlite:///{db}", str(tmp_path / "buf"),
                                     [meter("m1", server.port, 1), meter("m2", server.port, 2)]))
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "m2" in json.loads(state.read_text())["devices"]
                   and json.loads(state.read_text())["devices"]["m2"]["polls"] > 3)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "reload refused, keeping the running configuration" in stderr
    assert f"{config}:" in stderr and "interval" in stderr
    assert "reload applied: 1 added, 0 removed, 0 changed, 1 unchanged" in stderr
    assert "Traceback" not in stderr
    rows = dict(query(f"sqlite:///{db}", """SELECT d.device_id_str, count(*) FROM readings r
        JOIN devices d ON d.id = r.device_id GROUP BY d.device_id_str"""))
    assert rows["m1"] > 10 and rows["m2"] > 3
    assert reload_row(db) == ("applied: 1 added, 0 removed, 0 changed", hashlib.sha256(config.read_bytes()).hexdigest())


def reload_row(db: Path) -> tuple[str | None, str | None]:
    """The gateway's last reload result and device map hash as central has them (None before the first beat)."""
    try:
        rows = query(f"sqlite:///{db}", "SELECT last_reload_result, device_map_hash FROM gateways")
    except OperationalError:  # the schema is not there yet
        return None, None
    return (rows[0][0], rows[0][1]) if rows else (None, None)
