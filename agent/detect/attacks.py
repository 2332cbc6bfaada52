"""Attack injectors for the robustness evaluation: seeded, pure, each with the signals it altered.

An injector reads clean rows (rows x signals, time order) and returns a :class:`Change`: the
columns it rewrites and the values reported instead over the attack's rows. :func:`inject`
places many attacks of one kind in separate stretches of a copy of the clean rows, with clean
gaps between them, and records each :class:`Attack` (its rows and altered signals).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.detect.plant import PlantRelations

#: The attack kinds, in report order.
KINDS = ("step", "drift", "noisy_replay", "concealed_level", "concealed_pump")


@dataclass(frozen=True)
class Change:
    """Reported values for ``columns`` over an attack's rows (``block``: rows x columns)."""

    columns: tuple[int, ...]
    block: np.ndarray


@dataclass(frozen=True)
class Attack:
    """One injected attack: rows ``start`` to ``end`` (exclusive) and the signals it altered."""

    kind: str
    start: int
    end: int
    signals: tuple[str, ...]


@dataclass
class AttackedSeries:
    """Rows with attacks injected, and the ground truth of each attack."""

    values: np.ndarray
    hours: np.ndarray
    signals: list[str]
    attacks: list[Attack]

    @property
    def labels(self) -> np.ndarray:
        """1 on attacked rows, else 0."""
        labels = np.zeros(len(self.values), dtype=int)
        for a in self.attacks:
            labels[a.start:a.end] = 1
        return labels


@dataclass(frozen=True)
class Profile:
    """How attacks are sized for a plant's sampling: lengths and gaps in rows, sizes as shares."""

    length: tuple[int, int]         # rows an attack lasts (min, max)
    gap: int                        # at least this many clean rows between attacks
    lags: tuple[int, ...]           # how far back a replay copies from (rows)
    noise: tuple[float, float]      # replay noise sigma, as a share of the signal's std
    drift: tuple[float, float]      # a drift's final offset, as a share of the signal's span
    offset: tuple[float, float]     # a concealed level offset, as a share of the level's span
    step: tuple[float, float]       # a step bias, as a share of the signal's span
    ramp: int                       # rows a concealed offset or a replay takes to blend in (no jump)


#: Hourly rows (BATADAL): attacks of 2-4 days, replays from a day or a week before; drifts of
#: 5-15 % of the span over the attack (about 2-5 % a day).
HOURLY = Profile(length=(48, 96), gap=48, lags=(24, 168), noise=(0.01, 0.03), drift=(0.05, 0.15),
                 offset=(0.10, 0.25), step=(0.10, 0.25), ramp=6)


@dataclass(frozen=True)
class Targets:
    """What an attacker aims at, from the plant's declared relations and its normal data."""

    levels: tuple[int, ...]                          # tank level columns
    pressures: dict[int, tuple[int, ...]]            # level column -> pressure columns following it
    slopes: dict[int, tuple[float, ...]]             # level column -> d pressure / d level, same order
    tank_pumps: dict[int, tuple[int, ...]]           # level column -> status and flow columns of its pumps
    pumps: tuple[tuple[int, int], ...]               # (status, flow) columns seen both on and off
    pump_flow_on: dict[int, float]                   # flow column -> median flow when running
    continuous: tuple[int, ...]                      # columns with more than two values
    std: np.ndarray
    span: np.ndarray

    @classmethod
    def from_relations(cls, relations: PlantRelations, values: np.ndarray, signals: list[str]) -> Targets:
        """Targets of ``relations``; slopes and typical flows as an attacker would learn them from ``values``."""
        col = signals.index
        pressures: dict[int, tuple[int, ...]] = {}
        slopes: dict[int, tuple[float, ...]] = {}
        tank_pumps: dict[int, tuple[int, ...]] = {}
        for t in relations.tanks:
            tank_pumps[col(t.level)] = tuple(col(s) for a in t.pumps for s in (a.status, a.flow) if s)
            lv = values[:, col(t.level)]
            pressures[col(t.level)] = tuple(col(p) for p in t.pressures)
            slopes[col(t.level)] = tuple(float(np.polyfit(lv, values[:, col(p)], 1)[0]) for p in t.pressures)
        pumps, flow_on = [], {}
        for a in relations.all_actuators():
            assert a.flow is not None
            on = values[:, col(a.status)] > 0.5
            if 0.05 <= on.mean() <= 0.95:  # switches often enough that a flipped status is plausible
                pumps.append((col(a.status), col(a.flow)))
                flow_on[col(a.flow)] = float(np.median(values[on, col(a.flow)]))
        continuous = tuple(i for i in range(values.shape[1]) if len(np.unique(values[:, i])) > 2)
        return cls(tuple(col(t.level) for t in relations.tanks), pressures, slopes, tank_pumps, tuple(pumps), flow_on,
                   continuous, values.std(axis=0), np.ptp(values, axis=0))


def step(x: np.ndarray, col: int, start: int, end: int, bias: float) -> Change:
    """A constant bias on one signal: the classic, easily seen attack (for reference)."""
    return Change((col,), x[start:end, [col]] + bias)


def drift(x: np.ndarray, col: int, start: int, end: int, total: float) -> Change:
    """A ramp from 0 to ``total`` added to one signal: a slowly emptying tank hidden from the operator."""
    ramp = np.linspace(0.0, total, end - start + 1)[1:]
    return Change((col,), x[start:end, [col]] + ramp[:, None])


def noisy_replay(x: np.ndarray, cols: tuple[int, ...], start: int, end: int, lag: int, sigma: np.ndarray,
                 ramp: int, rng: np.random.Generator) -> Change:
    """``cols`` replaced by their values ``lag`` rows earlier plus Gaussian noise (``sigma`` per column).

    The attacker splices the replay in over ``ramp`` rows (a blend from the live values), so the
    switch is no jump; the noise defeats exact-window replay matching. A column with ``sigma`` 0
    (a status) is copied as is once the blend is half way.
    """
    if start < lag:
        raise ValueError(f"a replay from {lag} rows back cannot start at row {start}")
    n = end - start
    replayed = x[start - lag:end - lag][:, cols] + rng.normal(0.0, 1.0, (n, len(cols))) * sigma
    w = np.minimum(np.arange(1, n + 1) / max(ramp, 1), 1.0)[:, None]
    blend = np.where(sigma > 0, w, (w >= 0.5).astype(float))
    return Change(cols, (1 - blend) * x[start:end][:, cols] + blend * replayed)


def concealed_level(x: np.ndarray, level: int, pressures: tuple[int, ...], slopes: tuple[float, ...],
                    start: int, end: int, offset: float, ramp: int) -> Change:
    """A tank level shifted by ``offset`` (built up over ``ramp`` rows) and the pressures that follow it
    shifted by ``slope * offset``, so the level-pressure relations stay consistent."""
    n = end - start
    shift = offset * np.minimum(np.arange(1, n + 1) / max(ramp, 1), 1.0)
    cols = (level, *pressures)
    block = x[start:end][:, cols] + shift[:, None] * np.array((1.0, *slopes))
    return Change(cols, block)


def concealed_pump(x: np.ndarray, status: int, flow: int, flow_on: float, start: int, end: int,
                   rng: np.random.Generator) -> Change:
    """A pump reported in the opposite state with a matching flow (0 off, its usual flow +-2 % on),
    so the status-flow relation stays consistent while the tank's mass balance does not."""
    shown_on = x[start:end, status] <= 0.5
    shown_flow = np.where(shown_on, flow_on * (1 + rng.normal(0.0, 0.02, end - start)), 0.0)
    return Change((status, flow), np.column_stack((shown_on.astype(float), shown_flow)))


def _change(kind: str, x: np.ndarray, t: Targets, start: int, end: int, p: Profile,
            rng: np.random.Generator) -> Change:
    """One attack of ``kind`` on a randomly chosen target, sized by the profile."""
    sign = rng.choice((-1.0, 1.0))
    if kind == "step":
        col = int(rng.choice(t.continuous))
        return step(x, col, start, end, sign * rng.uniform(*p.step) * t.span[col])
    if kind == "drift":
        col = int(rng.choice(t.levels))
        return drift(x, col, start, end, sign * rng.uniform(*p.drift) * t.span[col])
    if kind == "noisy_replay":
        level = int(rng.choice(t.levels))
        group = (level, *t.pressures[level], *t.tank_pumps[level])
        cols = (level,) if rng.random() < 0.5 else group
        sigma = np.array([rng.uniform(*p.noise) * t.std[c] if c in t.continuous else 0.0 for c in cols])
        return noisy_replay(x, cols, start, end, int(rng.choice(p.lags)), sigma, p.ramp, rng)
    if kind == "concealed_level":
        level = int(rng.choice(t.levels))
        return concealed_level(x, level, t.pressures[level], t.slopes[level], start, end,
                               sign * rng.uniform(*p.offset) * t.span[level], p.ramp)
    if kind == "concealed_pump":
        s, f = t.pumps[int(rng.integers(len(t.pumps)))]
        return concealed_pump(x, s, f, t.pump_flow_on[f], start, end, rng)
    raise ValueError(f"unknown attack kind {kind!r}; choose from {', '.join(KINDS)}")


def windows(rows: int, count: int, p: Profile, rng: np.random.Generator, first: int) -> list[tuple[int, int]]:
    """Up to ``count`` attack windows in ``first..rows``, each followed by at least ``p.gap`` clean rows."""
    out: list[tuple[int, int]] = []
    start = first + p.gap
    while len(out) < count:
        end = start + int(rng.integers(p.length[0], p.length[1] + 1))
        if end + p.gap > rows:
            break
        out.append((start, end))
        start = end + p.gap + int(rng.integers(0, p.gap + 1))
    return out


def inject(clean: np.ndarray, hours: np.ndarray, signals: list[str], targets: Targets, kind: str, count: int,
           profile: Profile, seed: int) -> list[AttackedSeries]:
    """``count`` attacks of ``kind`` on copies of ``clean`` (as many copies as they need), seeded."""
    rng = np.random.default_rng(seed)
    first = max(profile.lags)  # every kind starts as late as a replay must, so kinds share their normal rows
    out: list[AttackedSeries] = []
    placed = 0
    while placed < count:
        spans = windows(len(clean), count - placed, profile, rng, first)
        if not spans:
            raise ValueError(f"{len(clean)} rows cannot hold an attack of {profile.length[0]} rows with gaps")
        x = clean.copy()
        attacks = []
        for start, end in spans:
            c = _change(kind, clean, targets, start, end, profile, rng)
            x[start:end, list(c.columns)] = c.block
            attacks.append(Attack(kind, start, end, tuple(signals[i] for i in c.columns)))
        out.append(AttackedSeries(x, hours, signals, attacks))
        placed += len(spans)
    return out
