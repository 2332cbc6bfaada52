"""Models for the built-in simulators, trained at start from their own normal operation."""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

import numpy as np

from agent.detect.dataset import open_csv
from agent.detect.model import DetectorModel, Tuning
from agent.detect.plant import Actuator, PlantRelations, Tank
from agent.detect.train import fit

WATER_PLANT = "builtin:water-plant"
WATER_PLANT_SIGNALS = ["tank1_level", "pump1_flow", "outflow", "valve1_open", "pressure_out", "pump1_running"]
#: The tank is filled by pump 1 and drained through the outflow; the outlet pressure follows it.
WATER_PLANT_RELATIONS = PlantRelations(tanks=[Tank(
    level="tank1_level", pumps=[Actuator(status="pump1_running", flow="pump1_flow")],
    outflows=["outflow"], pressures=["pressure_out"])])


#: Epoch second the built-in plant model's training day starts at: 01:00 UTC, demand's daily low
TRAINING_START = 3600.0

CTOWN = "builtin:ctown"
#: Shipped inside the package (licence and source in its README.md): BATADAL's year of normal
#: operation in C-Town, gzip-compressed (1.2 MB instead of 2.9), and the network's plant relations.
CTOWN_DATA = files("agent.detect") / "data"
CTOWN_TRAINING_FILE = "BATADAL_dataset03.csv.gz"
CTOWN_RELATIONS_FILE = "ctown.yaml"
#: The repository's uncompressed copy, beside the labelled test files, for tools run from a clone
CTOWN_TRAINING = Path(__file__).resolve().parents[2] / "data" / "batadal" / "BATADAL_dataset03.csv"


def builtin_signals(name: str) -> list[str] | None:
    """Signal names of a built-in model, or None if ``name`` is not one."""
    if name == WATER_PLANT:
        return WATER_PLANT_SIGNALS
    if name == CTOWN:
        with as_file(CTOWN_DATA / CTOWN_TRAINING_FILE) as training, open_csv(training) as f:
            header = [h.strip() for h in f.readline().split(",")]
        return [h for h in header if h not in ("DATETIME", "ATT_FLAG")]
    return None


def builtin_model(name: str, interval: float) -> DetectorModel:
    """Train the named built-in model now (about a second)."""
    if name == WATER_PLANT:
        return water_plant_model(interval)
    from agent.detect.evaluate import train_from_csv

    # relations given explicitly: the default (the repository's data/batadal/ctown.yaml) is absent
    # from an installed package, and without relations the plant detectors would be left out
    with as_file(CTOWN_DATA / CTOWN_TRAINING_FILE) as training, as_file(CTOWN_DATA / CTOWN_RELATIONS_FILE) as relations:
        return train_from_csv(training, relations)


def water_plant_model(interval: float, hours: float = 12.0, seed: int = 7) -> DetectorModel:
    """Fit on ``hours`` of the simulated plant in normal operation, sampled every ``interval`` s.

    The simulated day is pinned (01:00 to 13:00 UTC: demand from its daily low to its high), so
    the model is the same whenever and wherever it is trained.
    """
    from simulators.water_plant import WaterPlant

    plant = WaterPlant(seed=seed, start=TRAINING_START)
    n = int(hours * 3600 / interval)
    rows = []
    for k in range(n):
        plant.refresh(k * interval)
        rows.append([plant.reported[s] for s in WATER_PLANT_SIGNALS])
    # hour of day drawn at random, so no relation to it is learned: the plant's demand cycle is
    # covered by the signals themselves, and the agent's hour (local time) may be any
    hour_of_day = np.random.default_rng(seed).uniform(0.0, 24.0, n)
    values = np.array(rows, dtype=np.float32).astype(float)  # as the PLC reports them: float32 registers
    return fit(values, hour_of_day, WATER_PLANT_SIGNALS, WATER_PLANT_RELATIONS,
               Tuning(resolution=0.0, replay_window=30, replay_history=600, quantile=1.0, headroom=1.5,
                      daily_baseline=False),
               meta={"trained_on": f"{hours:g} h of the simulated water plant, every {interval:g} s"})
