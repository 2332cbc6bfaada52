"""Simulated days through the agent's meter detectors: false alarms on normal days, each attack's detection.

Three sub-meters and their feeder (:class:`simulators.power_meter.FeederMeter`) on a pinned clock
are learned for ``learn_days``; from that learned state, ``normal_days`` more days count false
alarms, and each attack kind (:mod:`simulators.meter_attacks`) runs on sub-meter 1 for
``attack_hours``. Readings go through :class:`MeterDetection` as the agent feeds it, as float32.
"""

from __future__ import annotations

import copy
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from agent.detect.meters.watch import MeterDetection
from agent.records import AttackChange, AttackPayload
from agent.settings import AnyDevice, ModbusDevice
from drivers.base import Reading
from simulators.meter_attacks import ATTACK_KINDS, MeterAttack
from simulators.power_meter import ENERGY_ADDRESS, HOLDING_MAP, FeederMeter, PowerMeter

#: a Thursday: four learning days cover two weekdays and a weekend for every hour's bucket
START = datetime(2026, 11, 26, tzinfo=UTC).timestamp()
SUBS = ("sub-1", "sub-2", "sub-3")
FEEDER = "feeder"
ATTACKED = "sub-1"
#: attacks start at this hour of the first day after learning, in the morning's rising load
ATTACK_HOUR = 10
#: register -> role of the simulated meter's points
ROLES = {"voltage_l1": "voltage", "voltage_l2": "voltage", "voltage_l3": "voltage", "current_l1": "current",
         "current_l2": "current", "current_l3": "current", "active_power": "power", "power_factor": "power_factor",
         "frequency": "frequency"}
#: each kind's strength in the evaluation
ATTACKS: dict[str, MeterAttack] = {
    "phase_current": MeterAttack("phase_current", factor=1.15),
    "phase_voltage": MeterAttack("phase_voltage", offset=10.0),
    "frozen_counter": MeterAttack("frozen_counter"),
    "scaled_power": MeterAttack("scaled_power", factor=0.8),
    "consistent_scaling": MeterAttack("consistent_scaling", factor=0.7),
}
assert set(ATTACKS) == set(ATTACK_KINDS)


def meter_device(device_id: str, feeder: str | None = None) -> AnyDevice:
    """The simulated meter as a device map declares it (energy: the Wh counter scaled to kWh)."""
    points = [{"name": name, "address": HOLDING_MAP[name], "type": "float32", "role": role}
              for name, role in ROLES.items()]
    points.append({"name": "energy", "table": "input", "address": ENERGY_ADDRESS, "type": "uint64",
                   "scale": 0.001, "unit": "kWh", "role": "energy"})
    return ModbusDevice.model_validate({"id": device_id, "type": "power_meter", "host": "127.0.0.1",
                                        "points": points, "feeder": feeder})


def devices() -> list[AnyDevice]:
    """The evaluated map: three sub-meters under one feeder."""
    return [*(meter_device(s, FEEDER) for s in SUBS), meter_device(FEEDER)]


def readings(device: str, meter: PowerMeter, ts_us: int) -> list[Reading]:
    """What the agent reads of ``meter``: its registers as float32, the counter in kWh."""
    names = list(ROLES)
    values = array("f", [meter.reported[n] for n in names]).tolist()
    out = [Reading(device, n, ts_us, v) for n, v in zip(names, values, strict=True)]
    out.append(Reading(device, "energy", ts_us, meter.reported["energy_wh"] * 0.001))
    return out


class Plant:
    """The simulated meters and the detection the agent would run on them."""

    def __init__(self, seed: int, interval: float) -> None:
        self.interval = interval
        subs = [PowerMeter(seed=seed + k, start=START, serve=False) for k in range(len(SUBS))]
        self.meters: dict[str, PowerMeter] = {**dict(zip(SUBS, subs, strict=True)),
                                              FEEDER: FeederMeter(subs, seed=seed + 100, start=START, serve=False)}
        self.detection = MeterDetection(devices(), zone=UTC)
        self.t = 0.0

    def run(self, seconds: float) -> Iterator[AttackChange]:
        """Advance ``seconds``; yield the payload of every attack detection opened."""
        for _ in range(round(seconds / self.interval)):
            ts_us = int((START + self.t) * 1e6)
            for device, meter in self.meters.items():  # the feeder last: it measures its sub-meters' load
                meter.refresh(self.t)
                for event in self.detection.observe(device, readings(device, meter, ts_us)):
                    change = cast(AttackPayload, event.payload)
                    if event.kind == "attack" and change["op"] == "open":
                        yield cast(AttackChange, change)
            self.t += self.interval


@dataclass(frozen=True)
class AttackResult:
    """One attack kind: detected or not, how long after it started, by which checks."""

    kind: str
    detected: bool
    delay_s: float | None
    checks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Evaluation:
    """The figures of one evaluation run."""

    interval: float
    learn_days: int
    normal_days: int
    meters: int
    false_alarms: int
    attacks: list[AttackResult] = field(default_factory=list)

    @property
    def false_alarms_per_meter_day(self) -> float:
        """Detections opened on normal days, per meter and day."""
        return self.false_alarms / (self.meters * self.normal_days)

    def table(self) -> str:
        """A Markdown table of the figures."""
        lines = ["| attack | detected | time to detection | checks that fired |", "|---|---|---|---|"]
        for r in self.attacks:
            delay = f"{r.delay_s / 60:.1f} min" if r.delay_s is not None else "-"
            lines.append(f"| {r.kind} | {'yes' if r.detected else 'no'} | {delay} | {', '.join(r.checks) or '-'} |")
        lines.append(f"\nFalse alarms: {self.false_alarms} in {self.normal_days} normal days x {self.meters} meters "
                     f"= {self.false_alarms_per_meter_day:.3f} per meter-day (polled every {self.interval:g} s, "
                     f"after {self.learn_days} days of learning).")
        return "\n".join(lines)


def evaluate(seed: int = 1, interval: float = 10.0, learn_days: int = 4, normal_days: int = 7,
             attack_hours: float = 2.0) -> Evaluation:
    """Learn, then count false alarms on normal days and detect each attack from the same learned state."""
    plant = Plant(seed, interval)
    learned = list(plant.run(learn_days * 86400))
    if learned:  # a detection while learning: the learning itself is not clean
        raise RuntimeError(f"detections opened while learning: {learned[:3]}")
    false_alarms = len(list(plant.run(ATTACK_HOUR * 3600)))
    snapshot = copy.deepcopy(plant)
    false_alarms += len(list(plant.run(normal_days * 86400 - ATTACK_HOUR * 3600)))
    results = []
    for kind, attack in ATTACKS.items():
        run = copy.deepcopy(snapshot)
        run.meters[ATTACKED].attack = copy.deepcopy(attack)
        started_us = int((START + run.t) * 1e6)
        opened = [p for p in run.run(attack_hours * 3600)
                  if p["target_system"] in (f"meter {ATTACKED}", f"feeder {FEEDER}")]
        checks = sorted({str(f["check"]) for p in opened for f in p["indicators"]["findings"]})
        delay = (int(opened[0]["ts_us"]) - started_us) / 1e6 if opened else None
        results.append(AttackResult(kind, bool(opened), delay, tuple(checks)))
    return Evaluation(interval, learn_days, normal_days, len(SUBS) + 1, false_alarms, results)
