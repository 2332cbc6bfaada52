"""Test helpers: a cuttable TCP proxy, device-map builders, waiting with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, text

from agent.configload import load_config_text
from agent.pipeline.service import Agent
from simulators.patterns import PatternPoint

ROOT = Path(__file__).resolve().parents[1]


def run_agent(yaml_text: str, scenario: Callable[[Agent], Awaitable[None]]) -> Agent:
    """Run an agent in-process while ``scenario(agent)`` runs, then stop it cleanly."""
    cfg = load_config_text(yaml_text)

    async def main() -> Agent:
        agent = Agent(cfg)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        await agent.ready.wait()
        try:
            await scenario(agent)
        finally:
            stop.set()
            await task
        return agent

    return asyncio.run(main())


def query(url: str, sql: str) -> list[Any]:
    """Rows of one SQL query."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text(sql)).fetchall()
    engine.dispose()
    return list(rows)


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, every: float = 0.05) -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)


async def async_wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """``wait_until`` for coroutines."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.05)


def pattern_yaml_points(points: list[PatternPoint]) -> list[dict[str, Any]]:
    """Device-map points reading every pattern value with its own byte/word order."""
    out = []
    for p in points:
        entry: dict[str, Any] = {"name": p.name, "table": p.table, "address": p.address, "type": p.type}
        if p.type not in ("bool", "string"):
            entry.update(byte_order=p.byte_order, word_order=p.word_order)
        if p.type == "string":
            entry.update(length=p.length, byte_order=p.byte_order)
        if p.bit is not None:
            entry["bit"] = p.bit
        out.append(entry)
    return out


def device_map(gateway: str, url: str, buffer: str, devices: list[dict[str, Any]],
               detection: dict[str, Any] | None = None, **central: Any) -> str:
    """YAML text of a device map."""
    doc = {"gateway": {"id": gateway},
           "central": {"url": url, "flush_interval": "200ms", **central},
           "buffer": {"path": buffer, "commit_interval": "50ms"},
           "defaults": {"interval": "200ms", "timeout": "200ms"},
           "devices": devices,
           "monitoring": {"port": 0}}
    if detection is not None:
        doc["detection"] = detection
    return yaml.safe_dump(doc, sort_keys=False)


class TcpProxy:
    """A loopback TCP proxy that can be cut (refuse and reset) and restored, for outage tests."""

    def __init__(self, target_host: str, target_port: int, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = port  # 0: a free one, known once started
        self.up = True
        self._server: asyncio.base_events.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._pipes.update({writer, up_writer})

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._pipes.difference_update({writer, up_writer})

    def cut(self) -> None:
        """Reset every open connection and refuse new ones."""
        self.up = False
        for w in list(self._pipes):
            w.transport.abort()
        self._pipes.clear()

    def restore(self) -> None:
        """Accept connections again."""
        self.up = True

    async def stop(self) -> None:
        """Close everything."""
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def demo_config(tmp_path: Path) -> Path:
    """config/demo.yaml on free loopback ports, its database and buffer under ``tmp_path``."""
    from simulators.server import free_port

    demo = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    meter_port, plant_port = free_port(), free_port()
    for device in demo["devices"]:
        if device.get("protocol") == "opcua":
            device["endpoint"] = f"opc.tcp://127.0.0.1:{free_port()}/hacksky/plant"
        else:
            device["port"] = plant_port if device["type"] == "plc" else meter_port
    demo["central"]["url"] = f"sqlite:///{tmp_path / 'demo.db'}"
    demo["buffer"]["path"] = str(tmp_path / "buffer")
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump(demo))
    return config
