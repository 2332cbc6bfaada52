"""The physical wiring a plant engineer declares: which pumps feed which tank, what follows it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Unknown keys are errors (a typo must not silently disable a relation)."""

    model_config = ConfigDict(extra="forbid")


class Actuator(Strict):
    """A pump or valve: its on/off status signal and the flow through it."""

    status: str
    flow: str | None = None


class Tank(Strict):
    """A tank: its level, what fills and drains it, and pressures that follow its level."""

    level: str
    pumps: list[Actuator] = Field(default_factory=list, description="pumps/valves that fill it (control loop)")
    inflows: list[str] = Field(default_factory=list, description="flow signals into the tank")
    outflows: list[str] = Field(default_factory=list, description="flow signals out of the tank")
    pressures: list[str] = Field(default_factory=list, description="junction pressures downstream")


class PlantRelations(Strict):
    """Relations checked across signals; every name is a model signal."""

    tanks: list[Tank] = Field(default_factory=list)
    actuators: list[Actuator] = Field(default_factory=list, description="status vs flow, for pumps not on a tank")

    @model_validator(mode="after")
    def _unique_tanks(self) -> PlantRelations:
        levels = [t.level for t in self.tanks]
        dup = {x for x in levels if levels.count(x) > 1}
        if dup:
            raise ValueError(f"tank level signal(s) declared twice: {', '.join(sorted(dup))}")
        return self

    def signals(self) -> set[str]:
        """Every signal the relations name."""
        names: set[str] = set()
        for t in self.tanks:
            names |= {t.level, *t.inflows, *t.outflows, *t.pressures}
            for a in t.pumps:
                names |= {a.status} | ({a.flow} if a.flow else set())
        for a in self.actuators:
            names |= {a.status} | ({a.flow} if a.flow else set())
        return names

    def all_actuators(self) -> list[Actuator]:
        """Pumps and valves with a flow signal, declared on tanks or alone (each once)."""
        seen: dict[str, Actuator] = {}
        for a in [p for t in self.tanks for p in t.pumps] + self.actuators:
            if a.flow:
                seen.setdefault(a.status, a)
        return list(seen.values())
