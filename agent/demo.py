"""``hacksky-edge demo``: simulators + agent + embedded SQLite, with a live one-line summary."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from contextlib import ExitStack
from urllib.parse import urlparse

from agent.pipeline.service import Agent
from agent.pipeline.status import Snapshot
from agent.settings import AgentConfig, ModbusDevice, OpcUaDevice
from simulators import run as simrun

log = logging.getLogger(__name__)

SUMMARY_EVERY = 2.0
#: how long the demo's attack lasts before the plant goes back to normal
ATTACK_SECONDS = 90.0


def _opcua_port(cfg: AgentConfig) -> int | None:
    """Port of the map's first OPC UA device on this host (the demo serves the plant there)."""
    for d in cfg.devices:
        if isinstance(d, OpcUaDevice):
            return urlparse(d.endpoint).port
    return None


def _ports(cfg: AgentConfig) -> tuple[int, int, int]:
    modbus = [d for d in cfg.devices if isinstance(d, ModbusDevice)]
    meters = [d for d in modbus if d.type == "power_meter"]
    plants = [d for d in modbus if d.type == "plc"]
    meter_port = meters[0].tcp_port if meters else 15020
    plant_port = plants[0].tcp_port if plants else 15021
    return len({d.unit_id for d in meters}) or 1, meter_port, plant_port


def _line(agent: Agent, sims: simrun.SimulatorSet, started: float) -> str:
    snap = agent.snapshot()
    up = sum(1 for d in snap["devices"].values() if d["state"] == "up")
    return (f"[{time.time() - started:5.0f}s] devices up {up}/{len(snap['devices'])} | "
            f"{snap['readings_per_s']:7.1f} readings/s | taken {snap['readings_taken']} | "
            f"written {snap['central']['rows_written']} | buffer {snap['buffer']['readings']} | "
            f"open alerts {snap['open_alerts']} | central {snap['central']['state']} | "
            f"plant scenario {sims.water_plant.scenario}{_detection(snap)}")


def _detection(snap: Snapshot) -> str:
    det = snap.get("detection")
    if not det:
        return ""
    inc = det["open_detection"]
    if inc is None:
        return f" | detection quiet (score {det['score'] or 0:.2f})"
    return f" | DETECTED {inc['attack_type']} {inc['confidence']:.0f}% on {', '.join(inc['signals'][:3])}"


def _dashboard(cfg: AgentConfig, port: int, stack: ExitStack) -> str | None:
    """The API and its dashboard over the demo's database on 127.0.0.1:``port`` (0: none), for the
    demo's life; its URL, or None when it cannot listen (the demo runs on without it)."""
    if not port:
        return None
    from agent.api.app import create_app
    from agent.api.background import serving
    from agent.api.guard import load_tokens
    from agent.central.engine import make_engine

    engine = make_engine(cfg.central)
    stack.callback(engine.dispose)
    if cfg.central.auto_migrate:  # before the agent starts: the first page finds the schema (the agent's
        # own migration then finds nothing to do)
        from agent.central import migrate

        migrate.upgrade(engine)
    tokens = load_tokens(None, None, os.environ)  # HACKSKY_API_TOKEN enables acknowledging alerts
    try:
        stack.enter_context(serving(create_app(engine, tokens.write, read_token=tokens.read), "127.0.0.1", port))
    except OSError as exc:
        log.warning("no dashboard: %s (--dashboard-port 0 runs the demo without one)", exc)
        return None
    return f"http://127.0.0.1:{port}/dashboard/"


async def _demo(cfg: AgentConfig, duration: float | None, attack_after: float, dashboard: str | None = None) -> Agent:
    meters, meter_port, plant_port = _ports(cfg)
    schedule = [(attack_after, "pump_forced_frozen_level"), (attack_after + ATTACK_SECONDS, "normal")]
    sims = simrun.build(meters, meter_port, plant_port, schedule=schedule)
    opcua_port = _opcua_port(cfg)
    if opcua_port:
        simrun.add_opcua(sims, opcua_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if duration:
        loop.call_later(duration, stop.set)
    sim_stop = asyncio.Event()
    sim_task = asyncio.create_task(simrun.serve(sims, sim_stop))
    await asyncio.sleep(0.3)
    agent = Agent(cfg)
    agent_task = asyncio.create_task(agent.run(stop))
    started = time.time()
    out = sys.stdout
    out.write(f"HackSky Edge demo: {len(cfg.devices)} simulated devices -> {agent.central_url}\n"
              f"attack scenario 'pump_forced_frozen_level' starts after {attack_after:g}s; Ctrl-C to stop\n")
    if dashboard:
        out.write(f"dashboard: {dashboard}  (Attacks: the detection; Signals: plc-01 tank1_level flattens)\n")
    out.flush()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), SUMMARY_EVERY)
        except TimeoutError:
            out.write(_line(agent, sims, started) + "\n")
            out.flush()
    await agent_task
    sim_stop.set()
    await sim_task
    out.write(_line(agent, sims, started) + "\n")
    return agent


def _detections(agent: Agent) -> str:
    d = agent.detection
    if d is None:
        return ""
    return f"detection: {d.rows_scored} rows scored, {d.alarms} in alarm, {d.incidents.opened} incident(s) opened\n"


def run_demo(cfg: AgentConfig, duration: float | None, attack_after: float, dashboard_port: int = 0) -> int:
    """Run the demo; prints where the data went and how to look at it."""
    try:
        with ExitStack() as stack:  # the dashboard first: its start and the schema are ready when the agent is
            dashboard = _dashboard(cfg, dashboard_port, stack)
            agent = asyncio.run(_demo(cfg, duration, attack_after, dashboard))
    except OSError as exc:
        sys.stderr.write(f"demo could not start: {exc} (is another demo or simulator running?)\n")
        return 1
    st = agent.stats
    sys.stdout.write(
        f"done: {st.readings_taken} readings taken, {st.rows_written} written, "
        f"{agent.delivery.buffer.reading_rows if agent.delivery.buffer else 0} left buffered, "
        f"{st.readings_dropped} dropped\n"
        f"{_detections(agent)}"
        f"look at the data: {agent.central_url}  (tables readings, power_readings, alerts, attack_detections)\n"
        "the dashboard after the demo: hacksky-edge api -c config/demo.yaml, then http://127.0.0.1:8080/\n")
    return 0
