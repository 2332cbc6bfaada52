"""Models for the built-in simulators, trained at start from their own normal operation."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from agent.detect.model import DetectorModel, Tuning
from agent.detect.plant import Actuator, PlantRelations, Tank
from agent.detect.train import fit

WATER_PLANT = "builtin:water-plant"
WATER_PLANT_SIGNALS = ["tank1_level", "pump1_flow", "outflow", "valve1_open", "pressure_out", "pump1_running"]
#: The tank is filled by pump 1 and drained through the outflow; the outlet pressure follows it.
WATER_PLANT_RELATIONS = PlantRelations(tanks=[Tank(
    level="tank1_level", pumps=[Actuator(status="pump1_running", flow="pump1_flow")],
    outflows=["outflow"], pressures=["pressure_out"])])


CTOWN = "builtin:ctown"
#: BATADAL's year of normal operation in C-Town, vendored with the repository
CTOWN_TRAINING = Path(__file__).resolve().parents[2] / "data" / "batadal" / "BATADAL_dataset03.csv"


def builtin_signals(name: str) -> list[str] | None:
    """Signal names of a built-in model, or None if ``name`` is not one."""
    if name == WATER_PLANT:
        return WATER_PLANT_SIGNALS
    if name == CTOWN:
        with open(CTOWN_TRAINING) as f:
            header = [h.strip() for h in f.readline().split(",")]
        return [h for h in header if h not in ("DATETIME", "ATT_FLAG")]
    return None


def builtin_model(name: str, interval: float) -> DetectorModel:
    """Train the named built-in model now (about a second)."""
    if name == WATER_PLANT:
        return water_plant_model(interval)
    from agent.detect.evaluate import train_from_csv

    return train_from_csv(CTOWN_TRAINING)


def water_plant_model(interval: float, hours: float = 3.0, seed: int = 7) -> DetectorModel:
    """Fit on ``hours`` of the simulated plant in normal operation, sampled every ``interval`` s."""
    from simulators.water_plant import WaterPlant

    plant = WaterPlant(seed=seed)
    t0 = time.monotonic()
    n = int(hours * 3600 / interval)
    rows = []
    for k in range(n):
        plant.refresh(t0 + k * interval)
        rows.append([plant.reported[s] for s in WATER_PLANT_SIGNALS])
    # the plant has no daily cycle of its own: spread the rows over the day so none is learned
    hour_of_day = np.arange(n) * 24.0 / n
    values = np.array(rows, dtype=np.float32).astype(float)  # as the PLC reports them: float32 registers
    return fit(values, hour_of_day, WATER_PLANT_SIGNALS, WATER_PLANT_RELATIONS,
               Tuning(resolution=0.0, replay_window=30, replay_history=600, quantile=1.0, headroom=1.5,
                      daily_baseline=False),
               meta={"trained_on": f"{hours:g} h of the simulated water plant, every {interval:g} s"})
