"""A batch of rows gives exactly the verdicts and state of the same rows one by one.

The reference is the detector's row-by-row code as it was before batching
(tests/detect/reference_stream.py); ``step_many`` must match it bit for bit, in one batch, in
chunks of any size and mixed with ``step``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.detect.dataset import load_csv
from agent.detect.evaluate import train_from_csv
from agent.detect.model import DetectorModel, Tuning
from agent.detect.replay import ReplayWatch, _previous_equal, _previous_equal_exact, feed
from agent.detect.stream import StreamingDetector, Verdict, feature_rows, feature_vector, run_lengths
from agent.detect.train import fit
from tests.detect.reference_stream import StreamingDetector as RowByRow

DATA = Path(__file__).resolve().parents[2] / "data" / "batadal"


@pytest.fixture(scope="module")
def ctown() -> DetectorModel:
    return train_from_csv(DATA / "BATADAL_dataset03.csv")


@pytest.fixture(scope="module")
def attacked(ctown: DetectorModel) -> tuple[np.ndarray, np.ndarray]:
    """dataset04 with what exercises every detector: holes, an exact replay, a frozen signal."""
    data = load_csv(DATA / "BATADAL_dataset04_relabelled.csv")
    x = data.select(ctown.signals).copy()
    rng = np.random.default_rng(4)
    x[rng.random(x.shape) < 0.01] = np.nan                    # scattered missing values
    x[:3, 5] = np.nan                                         # missing from the very first row
    replayed = ctown.replay_signals[:4]
    x[2000:2060, replayed] = x[1900:1960, replayed]           # 100 samples back, within the history
    x[3000:3080, ctown.replay_signals[5]] = x[3000, ctown.replay_signals[5]]  # frozen for 80 rows
    return x, data.hours


def _row_by_row(model: DetectorModel, x: np.ndarray, hours: np.ndarray) -> list[Verdict]:
    det = RowByRow(model)
    return [det.step(x[i], float(hours[i])) for i in range(len(x))]


def _state(det: StreamingDetector) -> tuple[object, ...]:
    watches = tuple((w.t, tuple(w.recent), tuple(w.tail)) for w in det._replay.values())
    return (None if det._prev is None else det._prev.tolist(), det._ewma.tolist(), det._rows,
            det._frozen_run.tolist(), det._band_run.tolist(), watches)


def test_one_batch_matches_the_row_by_row_detector_on_batadal(
        ctown: DetectorModel, attacked: tuple[np.ndarray, np.ndarray]) -> None:
    x, hours = attacked
    expected = _row_by_row(ctown, x, hours)
    kinds = {f.kind for v in expected for f in v.findings}
    assert {"replay", "frozen", "residual", "rate", "baseline"} <= kinds  # every detector had its say
    assert StreamingDetector(ctown).step_many(x, hours) == expected


def test_chunks_of_any_size_mixed_with_single_steps_match_and_leave_the_same_state(
        ctown: DetectorModel, attacked: tuple[np.ndarray, np.ndarray]) -> None:
    x, hours = attacked
    expected = _row_by_row(ctown, x, hours)
    whole = StreamingDetector(ctown)
    whole.step_many(x, hours)
    rng = np.random.default_rng(11)
    det = StreamingDetector(ctown)
    got: list[Verdict] = []
    at = 0
    while at < len(x):
        size = int(rng.integers(1, 700)) if rng.random() < 0.7 else int(rng.integers(1, 4))
        chunk = slice(at, min(at + size, len(x)))
        if size <= 3 and rng.random() < 0.5:
            got += [det.step(x[i], float(hours[i])) for i in range(chunk.start, chunk.stop)]
        else:
            got += det.step_many(x[chunk], hours[chunk])
        assert got == expected[:chunk.stop], f"rows {chunk.start}..{chunk.stop - 1}"
        at = chunk.stop
    assert _state(det) == _state(whole)


def test_random_walks_with_many_repeats_match(tmp_path: Path) -> None:
    """Coarse random walks repeat windows often: the batch's hashed scan meets every case."""
    rng = np.random.default_rng(2)
    train = np.cumsum(rng.normal(0, 1, (600, 5)), axis=0)
    hours = np.arange(600) % 24.0
    model = fit(train, hours, [f"s{i}" for i in range(5)], tuning=Tuning(resolution=0.5, replay_window=4,
                                                                         replay_history=50))
    assert model.replay_signals
    steps = rng.choice([-1.0, 0.0, 1.0], size=(3000, 5))
    x = np.round(np.cumsum(steps, axis=0) % 7)               # few values: windows repeat all the time
    hours = (np.arange(3000) * 0.5) % 24.0
    expected = _row_by_row(model, x, hours)
    assert sum(f.kind == "replay" for v in expected for f in v.findings) > 100
    det = StreamingDetector(model)
    got = det.step_many(x[:1500], hours[:1500]) + [det.step(x[i], float(hours[i])) for i in range(1500, 1600)]
    got += det.step_many(x[1600:], hours[1600:])
    assert got == expected


def test_hashed_and_exact_repeat_search_agree() -> None:
    rng = np.random.default_rng(3)
    seq = rng.integers(0, 3, size=(4, 500))
    windows = np.lib.stride_tricks.sliding_window_view(seq, 5, axis=1)
    previous = _previous_equal(windows)
    assert (previous == _previous_equal_exact(windows)).all() and (previous >= 0).sum() > 1000
    flat = windows.reshape(-1, 5)
    k = np.flatnonzero(previous >= 0)
    assert (previous[k] // 496 == k // 496).all() and (flat[previous[k]] == flat[k]).all()


def test_values_beyond_int64_and_infinities_take_the_exact_path() -> None:
    """A replay key past int64 is kept as a Python int; inf is a missing value, held from before."""
    watches = [ReplayWatch(3, 20) for _ in range(2)]
    same = [ReplayWatch(3, 20) for _ in range(2)]
    scaled = np.tile([[1e30, 1.0], [2e30, 2.0], [3e30, 3.0], [4e30, 4.0]], (20, 1))
    batch = feed(watches, scaled)
    assert batch == [[(k, back) for k in range(80) if (back := same[j].step(round(scaled[k, j]))) is not None]
                     for j in range(2)]
    assert batch[1] and batch[0]
    model = fit(np.cumsum(np.random.default_rng(5).normal(0, 1, (200, 3)), axis=0), np.arange(200) % 24.0,
                ["a", "b", "c"])
    det = StreamingDetector(model)
    det.step(np.array([1.0, 2.0, 3.0]), 1.0)
    det.step(np.array([np.inf, 2.5, np.nan]), 2.0)
    assert det._prev is not None and det._prev.tolist() == [1.0, 2.5, 3.0]


def test_watches_of_different_windows_scan_by_window_and_match_step_by_step() -> None:
    """Watches of windows 3, 4 and 6 in one batch (each window scanned on its own); one window's
    watches hold a value past int64 in their tails, so that group alone goes sample by sample.
    Repeats and the state left behind match stepping every watch on its own."""
    rng = np.random.default_rng(11)
    windows = [3, 4, 6, 4, 3]
    batched = [ReplayWatch(w, 40) for w in windows]
    stepped = [ReplayWatch(w, 40) for w in windows]
    for watch in (batched[0], stepped[0], batched[4], stepped[4]):  # window-3 watches: a huge value seen
        watch.step(2**70)
    for watch in batched[1:4] + stepped[1:4]:
        watch.step(0)
    motif = rng.integers(0, 50, size=(30, len(windows))).astype(float)
    scaled = np.vstack([motif, rng.integers(0, 50, size=(20, len(windows))), motif, motif])  # repeats 30 and 50 back
    got = feed(batched, scaled)
    want = [[(t, back) for t in range(len(scaled)) if (back := watch.step(round(scaled[t, k]))) is not None]
            for k, watch in enumerate(stepped)]
    assert got == want and all(got)
    rest = rng.integers(0, 50, size=(80, len(windows))).astype(float)
    want = [[(t, back) for t in range(80) if (back := w.step(round(rest[t, k]))) is not None]
            for k, w in enumerate(stepped)]
    assert feed(batched, rest) == want


def test_helpers_match_their_row_by_row_definitions() -> None:
    rng = np.random.default_rng(6)
    hit = rng.random((300, 4)) < 0.7
    carry = np.array([0, 3, 7, 1])
    run, expected = carry.copy(), []
    for row in hit:
        run = np.where(row, run + 1, 0)
        expected.append(run)
    assert (run_lengths(hit, carry) == np.array(expected)).all()
    assert (run_lengths(hit[:1], carry) == expected[0]).all()
    x, prev, hours = rng.normal(size=(50, 3)), rng.normal(size=(50, 3)), rng.uniform(0, 24, 50).round(1)
    rows = feature_rows(x, prev, hours)
    assert all((rows[i] == feature_vector(x[i], prev[i], float(hours[i]))).all() for i in range(50))
