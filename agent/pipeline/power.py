"""Rows for the dashboard's ``power_readings`` table, built from points' ``role``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agent.detect.load import LoadWatch
from agent.detect.meters.profile import PROFILE_THRESHOLD
from agent.records import Event, power_event
from agent.settings import AnyDevice
from drivers.base import Reading

#: point role -> power_readings column
ROLE_COLUMNS = {
    "power": "power_consumption", "voltage": "voltage", "current": "current",
    "frequency": "frequency", "temperature": "temperature", "humidity": "humidity",
}


class PowerSampler:
    """One ``power`` event per poll of each power meter with at least one role-mapped point.

    When several points share a role (three phase voltages), the column gets their mean
    (currents: their sum is not meaningful per phase, so the mean too; power: the sum).
    """

    def __init__(self, devices: Sequence[AnyDevice], previous: PowerSampler | None = None) -> None:
        self._roles: dict[str, Mapping[str, str]] = {}
        # a reload keeps each remaining meter's learned load baseline
        kept = previous._load if previous else {}
        self._load: dict[str, LoadWatch] = {d.id: kept[d.id] for d in devices if d.id in kept}
        for d in devices:
            roles = {p.name: p.role for p in d.points if p.role in ROLE_COLUMNS}
            if d.type == "power_meter" and roles:
                self._roles[d.id] = roles

    def sample(self, device: str, readings: Sequence[Reading], profile_z: float | None = None) -> Event | None:
        """The power event of this poll, or None for other devices or an all-bad poll.

        ``profile_z``: the reading's z-score against the meter's learned load profile (once it has
        learned this hour of the day); the row's score is the larger of it and the EWMA baseline's.
        """
        roles = self._roles.get(device)
        if roles is None:
            return None
        groups: dict[str, list[float]] = {}
        ts = 0
        for r in readings:
            role = roles.get(r.point)
            if role is not None and r.value is not None:
                groups.setdefault(role, []).append(r.value)
                ts = max(ts, r.ts_us)
        if not groups:
            return None
        fields: dict[str, float | bool] = {ROLE_COLUMNS[role]: (sum(v) if role == "power" else sum(v) / len(v))
                                           for role, v in groups.items()}
        if "power" in groups:
            score, anomalous = self._load.setdefault(device, LoadWatch()).score(float(fields["power_consumption"]))
            if profile_z is not None:
                score, anomalous = max(score, round(profile_z, 3)), anomalous or profile_z >= PROFILE_THRESHOLD
            fields.update(anomaly_score=score, is_anomaly=anomalous)
        return power_event({"device": device, "ts_us": ts, "fields": fields})
