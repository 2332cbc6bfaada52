"""The agent against an independent Modbus TCP server (pyModbusTCP, not pymodbus), into MariaDB."""

from __future__ import annotations

import asyncio
import random
import struct
from pathlib import Path

from pyModbusTCP.server import DataBank, ModbusServer
from sqlalchemy import create_engine, text

from agent.configload import load_config_text
from agent.pipeline.service import Agent
from simulators.server import free_port
from tests.helpers import async_wait_until, device_map

FORMATS = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f",
           "int64": ">q", "uint64": ">Q", "float64": ">d"}


def words(value: float, type_: str, byte_order: str, word_order: str) -> list[int]:
    """Registers as a device would lay them out (written here with struct, not our encoder)."""
    raw = struct.pack(FORMATS[type_], value)
    regs = [raw[i] << 8 | raw[i + 1] for i in range(0, len(raw), 2)]
    if word_order == "little":
        regs = regs[::-1]
    if byte_order == "little":
        regs = [(r & 0xFF) << 8 | r >> 8 for r in regs]
    return regs


def test_values_from_an_independent_server_land_exactly(mariadb_url: str, tmp_path: Path) -> None:
    rng = random.Random(42)
    bank = DataBank()
    points, expected = [], {}
    address = 100
    for type_, fmt in FORMATS.items():
        for byte_order in ("big", "little"):
            for word_order in ("big", "little"):
                if type_.startswith("float"):
                    value: float | int = struct.unpack(fmt, struct.pack(fmt, rng.uniform(-1e6, 1e6)))[0]
                else:
                    bits = struct.calcsize(fmt) * 8
                    signed = type_[0] == "i"
                    top = min(bits - 1 if signed else bits, 53)  # beyond 2**53 a double is inexact
                    lo, hi = (-(2**top), 2**top - 1) if signed else (0, 2**top - 1)
                    value = rng.randint(lo, hi)
                table = rng.choice(["holding", "input"])
                regs = words(value, type_, byte_order, word_order)
                (bank.set_holding_registers if table == "holding" else bank.set_input_registers)(address, regs)
                name = f"{type_}_{byte_order}_{word_order}"
                points.append({"name": name, "table": table, "address": address, "type": type_,
                               "byte_order": byte_order, "word_order": word_order})
                expected[name] = float(value)
                address += len(regs) + rng.choice([0, 0, 3])
    bank.set_coils(7, [True, False, True])
    bank.set_discrete_inputs(3, [False, True])
    bank.set_holding_registers(20, [0b1000_0000_0000_0101])
    points += [{"name": "coil7", "table": "coil", "address": 7, "type": "bool"},
               {"name": "coil8", "table": "coil", "address": 8, "type": "bool"},
               {"name": "di4", "table": "discrete", "address": 4, "type": "bool"},
               {"name": "bit2", "address": 20, "type": "bool", "bit": 2},
               {"name": "bit15", "address": 20, "type": "bool", "bit": 15},
               {"name": "bit1", "address": 20, "type": "bool", "bit": 1}]
    expected.update(coil7=1.0, coil8=0.0, di4=1.0, bit2=1.0, bit15=1.0, bit1=0.0)

    port = free_port()
    server = ModbusServer("127.0.0.1", port, no_block=True, data_bank=bank)
    server.start()
    try:
        cfg = load_config_text(device_map("gw-indep", mariadb_url, str(tmp_path / "buf"), [
            {"id": "foreign", "host": "127.0.0.1", "port": port, "points": points}]))

        async def main() -> Agent:
            agent = Agent(cfg)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            await async_wait_until(lambda: agent.stats.rows_written >= 3 * len(points))
            stop.set()
            await task
            return agent

        agent = asyncio.run(main())
    finally:
        server.stop()
    engine = create_engine(mariadb_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT point, value, quality FROM readings")).fetchall()
    engine.dispose()
    assert len(rows) == agent.stats.readings_taken >= 3 * len(points)
    assert {(p, q) for p, _, q in rows} == {(name, "good") for name in expected}
    for point, value, _ in rows:
        assert value == expected[point], point
