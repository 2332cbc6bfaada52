"""Limits widened by time-ordered cross-validation, and training across gaps."""

from __future__ import annotations

import numpy as np
import pytest

from agent.detect.model import DetectorModel, Tuning
from agent.detect.stream import StreamingDetector
from agent.detect.train import fit

SIGNALS = ["a", "b", "c"]


def _plant(rows: int, seed: int, drift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Three coupled signals; ``drift`` makes the later rows wander where the early ones never went."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    a = np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.05, rows) + drift * t / rows
    b = 2 * a + rng.normal(0, 0.05, rows) * (1 + 3 * drift * (t > rows * 0.75))
    c = np.cumsum(rng.normal(0, 0.1, rows))
    return np.column_stack((a, b, c)), (t % 24).astype(float)


def test_cross_validation_widens_limits_to_its_false_alarm_budget_and_never_tightens() -> None:
    x, hours = _plant(2000, seed=1, drift=1.0)
    plain = fit(x, hours, SIGNALS, tuning=Tuning(resolution=0.001))
    cal_tuning = Tuning(resolution=0.001, calibration_folds=4, false_alarm_budget=0.005)
    widened = fit(x, hours, SIGNALS, tuning=cal_tuning)
    cal = widened.meta["calibration"]
    assert cal["folds"] == 4 and cal["rows"] == 2000
    assert cal["false_alarm_rate"] <= 0.005 < cal["unwidened_false_alarm_rate"]  # the drift made it widen
    factors = list(cal["multipliers"].values())
    assert min(factors) >= 1.0 and max(factors) > 1.0
    groups = len(plain.meta["thresholds"])
    expected = [t * f for t, f in zip(plain.meta["thresholds"], factors[:groups], strict=True)]
    assert widened.meta["thresholds"] == pytest.approx(expected)
    assert (widened.per_signal.rate_limit == plain.per_signal.rate_limit * factors[groups + 1]).all()
    assert fit(x, hours, SIGNALS, tuning=cal_tuning).meta["calibration"] == cal  # a procedure: same rows, same limits


def test_widened_limits_alarm_less_on_unseen_normal_rows() -> None:
    x, hours = _plant(2000, seed=1, drift=1.0)
    unseen, unseen_hours = _plant(1500, seed=9, drift=1.3)
    alarms = {}
    for folds in (0, 4):
        model = fit(x, hours, SIGNALS, tuning=Tuning(resolution=0.001, calibration_folds=folds))
        alarms[folds] = sum(v.alarm for v in StreamingDetector(model).step_many(unseen, unseen_hours))
    assert alarms[4] < alarms[0]


def test_no_change_or_freeze_is_learned_across_a_gap() -> None:
    """Rows left out (attack hours) leave a gap: the jump over it is not a normal rate of change."""
    x, hours = _plant(400, seed=2)
    joined = np.vstack((x[:200], x[200:] + np.array([0.0, 0.0, 50.0])))  # c jumps by 50 where rows were cut
    starts = np.zeros(400, dtype=bool)
    starts[200] = True
    with_gap: DetectorModel = fit(joined, hours, SIGNALS, tuning=Tuning(resolution=0.001), starts=starts)
    without: DetectorModel = fit(joined, hours, SIGNALS, tuning=Tuning(resolution=0.001))
    assert with_gap.per_signal.rate_limit[2] < 2 < 50 < without.per_signal.rate_limit[2]


@pytest.mark.parametrize("args, message", [
    (["train", "--csv", "x.csv", "--folds", "1", "-o", "m.npz"], "--folds is 0 (off) or at least 2"),
    (["train", "--csv", "x.csv", "--budget", "1.5", "--folds", "4", "-o", "m.npz"], "--budget a share"),
    (["train", "--csv", "x.csv", "--resolution", "-1", "-o", "m.npz"], "--resolution is the signals' reporting"),
    (["evaluate", "--test", "x.csv"], "--train NORMAL.csv, or a saved one: --model"),
])
def test_commands_refuse_settings_that_make_no_sense(args: list[str], message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main

    assert main(args) == 2
    assert message in capsys.readouterr().err
