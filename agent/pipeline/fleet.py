"""What the central team sees of this gateway: its ``gateways`` row (heartbeat) and its clock's health."""

from __future__ import annotations

import socket
from collections.abc import Iterable

import agent
from agent.checks import Condition
from agent.records import Event, gateway_event
from drivers.base import Reading, now_us

#: the quality of a good reading taken while the gateway's clock is off (``central.max_clock_offset``)
CLOCK_UNCERTAIN = "uncertain:clock"


class GatewayReporter:
    """Builds the gateway's heartbeats and remembers what they report between them (the last reload)."""

    def __init__(self, map_hash: str, started: float, interval: float) -> None:
        self.map_hash = map_hash
        self.started_us = round(started * 1e6)
        self.interval = interval
        self.host = socket.gethostname()
        self.reload_us: int | None = None
        self.reload_result: str | None = None
        self.seq = 0

    def reloaded(self, map_hash: str, result: str) -> None:
        """A reload was applied (the map's new hash) or refused (the hash stays)."""
        self.map_hash = map_hash
        self.reload_us, self.reload_result = now_us(), result

    def beat(self, device_states: Iterable[str], buffer_readings: int, clock_offset: float | None,
             stopped: bool = False) -> Event:
        """The gateway's row as of now: ``device_states`` are the drivers' health states (up, degraded,
        down...); ``stopped`` for the last beat of a clean stop."""
        states = list(device_states)
        self.seq += 1
        return gateway_event({
            "ts_us": now_us(), "seq": self.seq, "version": agent.__version__, "map_hash": self.map_hash,
            "host": self.host, "started_us": self.started_us, "interval_s": self.interval,
            "devices_up": states.count("up"), "devices_degraded": states.count("degraded"),
            "devices_down": states.count("down"), "buffer_readings": buffer_readings,
            "clock_offset_s": clock_offset, "reload_us": self.reload_us, "reload_result": self.reload_result,
            "stopped": stopped})


def reload_summary(result: dict[str, list[str]]) -> str:
    """``applied: 1 added, 0 removed, 2 changed`` (+ the settings that wait for a restart)."""
    text = (f"applied: {len(result['added'])} added, {len(result['removed'])} removed, "
            f"{len(result['changed'])} changed")
    if result["restart_needed"]:
        text += f"; at the next restart: {', '.join(result['restart_needed'])}"
    return text


def clock_condition(offset: float | None, limit: float) -> Condition:
    """Active while the gateway's clock is more than ``limit`` seconds from the central database's."""
    active = offset is not None and abs(offset) > limit
    return Condition(
        key="gateway/clock", active=active, alert_type="clock_offset", severity="high",
        title="gateway clock differs from the central database's",
        message=(f"gateway clock {offset:+.3f} s from the central database's (limit {limit:g} s): readings are "
                 f"stored as {CLOCK_UNCERTAIN} until the clocks agree; check NTP on the gateway")
        if active and offset is not None else "",
        value=offset)


def clock_uncertain(readings: list[Reading]) -> list[Reading]:
    """``readings`` with the good ones marked :data:`CLOCK_UNCERTAIN` (their time stamps are in doubt)."""
    return [r._replace(quality=CLOCK_UNCERTAIN) if r.good else r for r in readings]
