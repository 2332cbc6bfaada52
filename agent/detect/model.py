"""What ``train`` learns and the streaming detector uses, saved as one ``.npz`` file."""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 3
#: format 2 files (before score_cap and per-signal replay windows) load with the new fields' defaults
READABLE_FORMATS = (2, 3)


@dataclass
class Residuals:
    """Linear predictions of targets from the feature vector; ``r = matrix @ f`` is the residual.

    The feature vector ``f`` is ``[x(t), x(t-1), sin/cos of the hour (2 harmonics), 1]``.
    Row ``k`` of ``matrix`` already subtracts its prediction from its target.
    """

    names: list[str]
    kinds: list[str]                  # 'signal' (cross-signal model), 'mass_balance', 'pressure'
    signals: list[list[str]]          # the signals each residual involves (for indicators)
    matrix: np.ndarray                # (residuals, features)
    scale: np.ndarray                 # residual standard deviation on normal data (with sensor resolution)


@dataclass
class Bands:
    """Allowed range of a signal, per state of a status signal (``status = -1``: unconditional)."""

    kinds: list[str]                  # 'range', 'control' (pump vs tank level), 'actuator' (status vs flow)
    signal: np.ndarray                # index of the checked signal
    status: np.ndarray                # index of the status signal, -1 for none
    low: np.ndarray                   # (n, 2): low limit when status off / on (both equal for ranges)
    high: np.ndarray                  # (n, 2)
    margin: np.ndarray                # tolerance added outside the learned range


@dataclass
class PerSignal:
    """Per-signal limits learned from normal data (index = model signal; 0/inf = not checked)."""

    rate_limit: np.ndarray            # largest normal change between two samples, with margin
    frozen_limit: np.ndarray          # samples a signal may stay exactly constant (0: not checked)
    tod_median: np.ndarray            # (24, n) median per hour of day
    tod_scale: np.ndarray             # (24, n) robust spread per hour of day
    tod_limit: np.ndarray             # (n,) largest normal |z| against that baseline, with margin


@dataclass
class Tuning:
    """Streaming parameters; thresholds are calibrated on the training rows themselves."""

    alpha: float = 0.5                # EWMA weight of the newest residual score
    score_cap: float = 8.0            # a row's residual score enters the EWMA at most this x its limit (0: no cap)
    quantile: float = 0.999           # training-score quantile that sets the cross-signal threshold
    relation_quantile: float = 1.0    # the same for each declared relation (many of them: stricter)
    headroom: float = 1.0             # thresholds multiplied by this after calibration
    threshold: float = 1.0            # residual threshold (mean z^2, smoothed)
    band_persist: int = 2             # band violations in a row before they count
    replay_window: int = 12           # longest window compared when looking for a replay (each signal's is learned)
    replay_history: int = 336         # samples searched back (two weeks of hourly data)
    clear_after: int = 3              # quiet samples before an incident closes
    resolution: float = 0.01          # sensor reporting resolution the model assumes
    daily_baseline: bool = True       # learn an hour-of-day baseline (only for data with real daily cycles)
    calibration_folds: int = 0        # >1: widen limits by time-ordered cross-validation (agent.detect.calibrate)
    false_alarm_budget: float = 0.005  # out-of-fold share of normal rows the calibrated limits may alarm on


@dataclass
class DetectorModel:
    """Everything the streaming detector needs; no reference to the training data."""

    signals: list[str]
    residuals: Residuals
    bands: Bands
    per_signal: PerSignal
    replay_signals: list[int]
    tuning: Tuning
    meta: dict[str, Any] = field(default_factory=dict)
    #: per replay signal, the window a repeat of which is a replay (empty: tuning.replay_window for all)
    replay_windows: list[int] = field(default_factory=list)

    def replay_window(self, k: int) -> int:
        """The replay window of the ``k``-th replay signal."""
        return self.replay_windows[k] if self.replay_windows else self.tuning.replay_window

    def save(self, path: str | Path) -> None:
        """Write the model (numpy arrays + JSON metadata, no pickle)."""
        header = {
            "format": FORMAT_VERSION, "signals": self.signals, "tuning": asdict(self.tuning), "meta": self.meta,
            "residuals": {"names": self.residuals.names, "kinds": self.residuals.kinds,
                          "signals": self.residuals.signals},
            "bands": {"kinds": self.bands.kinds}, "replay_signals": self.replay_signals,
            "replay_windows": self.replay_windows,
        }
        with open(path, "wb") as f:
            np.savez_compressed(
                f, header=np.array(json.dumps(header)), matrix=self.residuals.matrix, scale=self.residuals.scale,
                band_signal=self.bands.signal, band_status=self.bands.status, band_low=self.bands.low,
                band_high=self.bands.high, band_margin=self.bands.margin, rate_limit=self.per_signal.rate_limit,
                frozen_limit=self.per_signal.frozen_limit, tod_median=self.per_signal.tod_median,
                tod_scale=self.per_signal.tod_scale, tod_limit=self.per_signal.tod_limit)

    @classmethod
    def load(cls, path: str | Path) -> DetectorModel:
        """Read a model written by :meth:`save`; a wrong or damaged file raises ValueError."""
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(str(z["header"]))
                if header.get("format") not in READABLE_FORMATS:
                    raise ValueError(f"{path}: model format {header.get('format')}, expected one of "
                                     f"{', '.join(map(str, READABLE_FORMATS))}")
                r = header["residuals"]
                return cls(
                    signals=header["signals"],
                    residuals=Residuals(r["names"], r["kinds"], r["signals"], z["matrix"], z["scale"]),
                    bands=Bands(header["bands"]["kinds"], z["band_signal"], z["band_status"], z["band_low"],
                                z["band_high"], z["band_margin"]),
                    per_signal=PerSignal(z["rate_limit"], z["frozen_limit"], z["tod_median"], z["tod_scale"],
                                         z["tod_limit"]),
                    replay_signals=header["replay_signals"], tuning=Tuning(**header["tuning"]),
                    meta=header["meta"], replay_windows=header.get("replay_windows", []))
        except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a HackSky detector model ({exc})") from None
