"""The energy check follows the counter's direction; stale findings end; the agent keeps what meters learned."""

from __future__ import annotations

import asyncio
import json
import math
import socket
from pathlib import Path
from typing import Any

import pytest

from agent.detect.meters.energy import EnergyCheck, positive_energy
from agent.detect.meters.evaluate import START
from agent.detect.meters.layout import MeterLayout, MeterPoll
from agent.detect.meters.physics import PhysicsCheck
from agent.pipeline.service import Agent
from drivers.base import Reading
from tests.helpers import device_map, run_agent

START_US = int(START * 1e6)


# -- the energy counter against imported (or, with reversed current transformers, exported) power

LAYOUT = MeterLayout("pv", power=("p",), energy="e")
STEP_S = 10
RESOLUTION = 0.01  # kWh


def site_power(hour: float) -> float:
    """A site importing 20 kW, exporting 15 kW from 11:00 to 14:00 (PV), with 2-minute ramps."""
    into = min(max(hour - 11, 0.0), max(14 - hour, 0.0)) * 30  # 0 outside, 1 after two minutes in
    return 20.0 - 35.0 * min(into, 1.0)


def energy_findings(*, reversed_ct: bool = False, frozen_from_h: float | None = None) -> list[float]:
    """Hours of the day at which the energy check found something, over a day of 10 s polls of an
    import-only counter (whole 10 Wh steps)."""
    check = EnergyCheck(LAYOUT)
    counter, found, prev = 5000.0, [], site_power(0.0)
    for k in range(86400 // STEP_S):
        hour = k * STEP_S / 3600
        power = site_power(hour)
        if frozen_from_h is None or hour < frozen_from_h:
            counter += positive_energy(prev, power, STEP_S / 3600)
        prev = power
        read = -power if reversed_ct else power
        poll = MeterPoll(START_US + k * STEP_S * 1_000_000, power=read,
                         energy=math.floor(counter / RESOLUTION) * RESOLUTION)
        if check.step(poll.ts_us, poll) is not None:
            found.append(hour)
    assert check.reversed is reversed_ct
    return found


@pytest.mark.parametrize("reversed_ct", [False, True], ids=["import", "reversed-ct"])
def test_exporting_through_an_import_only_counter_is_not_a_frozen_counter(reversed_ct: bool) -> None:
    assert energy_findings(reversed_ct=reversed_ct) == []


@pytest.mark.parametrize("reversed_ct", [False, True], ids=["import", "reversed-ct"])
def test_a_frozen_counter_is_still_found(reversed_ct: bool) -> None:
    found = energy_findings(reversed_ct=reversed_ct, frozen_from_h=16.0)
    assert found and 16.0 < found[0] < 16.5


# -- a finding ends with its evidence

def test_a_physics_finding_is_not_repeated_once_the_load_is_gone() -> None:
    check = PhysicsCheck(MeterLayout("m", power=("p",), volts=("v",), amps=("i",), power_factor="pf"))

    def step(k: int, amps: float, scale: float = 1.0) -> bool:
        poll = MeterPoll(START_US + k * 60_000_000, power=scale * 0.9 * 230 * amps / 1000, volts=(230.0,),
                         amps=(amps,), power_factor=0.9)
        return check.step(poll.ts_us, poll) is not None

    assert not any(step(k, 100.0 + k % 7) for k in range(120))  # learns an hour and more
    assert [step(k, 100.0, scale=0.7) for k in range(120, 124)] == [False, False, True, True]
    assert not any(step(k, 0.0) for k in range(124, 200)), "no load: the row says nothing, nothing is repeated"


# -- the agent saves what meters learned with its buffer and takes it up again after a restart

def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def physics_map(tmp_path: Path) -> str:
    points = [{"name": name, "address": 2 * k, "type": "float32", "role": role}
              for k, (name, role) in enumerate([("p", "power"), ("pf", "power_factor"), ("v", "voltage"),
                                                ("i", "current")])]
    meter = {"id": "m1", "type": "power_meter", "host": "127.0.0.1", "port": closed_port(), "points": points}
    return device_map("gw-learn", f"sqlite:///{tmp_path / 'c.db'}", str(tmp_path / "buf"), [meter])


def physics_poll(k: int) -> list[Reading]:
    """Poll ``k`` of meter m1 on the pinned clock, a minute apart (the device itself is never reached)."""
    ts, amps = START_US + k * 60_000_000, 100.0 + k % 7
    return [Reading("m1", "p", ts, 0.9 * 230 * amps / 1000), Reading("m1", "pf", ts, 0.9),
            Reading("m1", "v", ts, 230.0), Reading("m1", "i", ts, amps)]


async def saved_learning(agent: Agent) -> Any:
    assert agent.delivery.buffer is not None
    return await agent.delivery.in_buffer(agent.delivery.buffer.load_state, "meter_learning")


def test_the_agent_saves_what_meters_learned_and_takes_it_up_after_a_restart(tmp_path: Path) -> None:
    text = physics_map(tmp_path)
    seen: dict[str, Any] = {}

    async def learn(agent: Agent) -> None:
        puts: list[dict[str, Any] | None] = []
        put = agent.delivery.put

        async def recorded(rows: Any, events: Any, state: dict[str, Any] | None = None) -> Any:
            puts.append(state)
            return await put(rows, events, state)

        agent.delivery.put = recorded  # type: ignore[method-assign, assignment]
        for k in range(120):  # physics learns an hour and 100 polls
            agent.meters.observe("m1", physics_poll(k))
        while not (await saved_learning(agent) or {}).get("meters", {}).get("meter/m1", {}).get("physics"):
            await asyncio.sleep(0.02)
        for k in range(120, 200):  # the profile keeps learning: not saved with every commit
            agent.meters.observe("m1", physics_poll(k))
            await asyncio.sleep(0.005)
        seen["saves"] = sum(1 for s in puts if s and "meter_learning" in s)
        seen["learned"] = agent.meters.learned()

    run_agent(text, learn)
    assert seen["saves"] == 1, "saved once when physics finished learning, then at most every 15 minutes"

    async def restart(agent: Agent) -> None:
        seen["saved"] = await saved_learning(agent)
        seen["restored"] = agent.meters.learned()
        seen["learning"] = [c.kind for c in agent.meters.watches["m1"].checks if c.is_learning]

    run_agent(text, restart)
    assert seen["saved"] == json.loads(json.dumps(seen["learned"])), "the stop saved the latest profile"
    assert seen["restored"] == seen["saved"]
    assert seen["learning"] == []
