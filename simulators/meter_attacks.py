"""Attacks on a simulated power meter's registers: what it reports is changed, the load is not."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

AttackKind = Literal["phase_current", "phase_voltage", "frozen_counter", "scaled_power", "consistent_scaling"]
#: each kind, and what the attacker changes
ATTACK_KINDS: dict[str, str] = {
    "phase_current": "false data injection on one phase: its current scaled by `factor`",
    "phase_voltage": "false data injection on one phase: `offset` volts added to its voltage",
    "frozen_counter": "the energy counter stops where it was (the load keeps running)",
    "scaled_power": "the total power register scaled by `factor`, volts and amps true",
    "consistent_scaling": "power, every phase current and the counter's increase scaled by `factor` "
                          "(an attacker who knows the physics: only the feeder and the profile can tell)",
}


@dataclass
class MeterAttack:
    """One attack, applied from the first refresh after it is set on :attr:`PowerMeter.attack`."""

    kind: AttackKind
    factor: float = 1.0
    offset: float = 0.0
    phase: int = 1
    #: (true counter, reported counter) in Wh when the attack started
    _origin: tuple[float, float] | None = field(default=None, init=False, repr=False)

    def registers(self, values: dict[str, float]) -> dict[str, float]:
        """What the meter reports instead of ``values`` (volts, amps, kW ...; the counter aside)."""
        out = dict(values)
        if self.kind == "phase_current":
            out[f"current_l{self.phase}"] *= self.factor
        elif self.kind == "phase_voltage":
            out[f"voltage_l{self.phase}"] += self.offset
        elif self.kind == "scaled_power":
            out["active_power"] *= self.factor
        elif self.kind == "consistent_scaling":
            out["active_power"] *= self.factor
            for phase in (1, 2, 3):
                out[f"current_l{phase}"] *= self.factor
        return out

    def counter(self, true_wh: float, reported_wh: float) -> float:
        """The energy counter reported when the true one reads ``true_wh`` (``reported_wh``: reported before)."""
        if self.kind not in ("frozen_counter", "consistent_scaling"):
            return true_wh
        if self._origin is None:
            self._origin = (true_wh, reported_wh)
        start_true, start_reported = self._origin
        return start_reported + (0.0 if self.kind == "frozen_counter" else self.factor * (true_wh - start_true))
