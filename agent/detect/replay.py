"""Replay watch: a window of one signal's quantized values that repeats an earlier window exactly.

One watch serves two paths with the same answers: :meth:`ReplayWatch.step` (one sample, a dict
of recent windows) and :meth:`ReplayWatch.scan` (a batch: every window hashed, one sort). Both
keep the last ``history + window`` samples, so the paths may be mixed in any order.
"""

from __future__ import annotations

from collections import deque

import numpy as np

#: odd 64-bit multipliers mixing a window's values into one key (fixed: results never depend on them)
_MIX = np.random.default_rng(0x5EED).integers(1, 2**63, size=257, dtype=np.uint64) | np.uint64(1)
#: low bits of a sort key hold the window's position, the rest its hash
_POSITION_BITS = 20
#: batches at least this long are scanned (every window hashed, one sort); shorter ones go sample by sample
SCAN_FROM = 64
#: quantized values beyond this are kept as Python ints, sample by sample
_INT64_SAFE = 2.0**62


class ReplayWatch:
    """Reports how many samples back the current window appeared before, if it did.

    A repeat counts when its latest earlier copy lies within ``history`` samples, does not
    overlap the current window, and the window holds at least 3 distinct values (flat or
    two-valued windows repeat naturally: that is the frozen check's job).
    """

    def __init__(self, window: int, history: int) -> None:
        self.window, self.history = window, history
        self.t = 0                                          # samples seen
        self.recent: deque[int] = deque(maxlen=window)
        self.tail: deque[int] = deque(maxlen=history + window)
        self._seen: dict[tuple[int, ...], int] = {}         # window -> latest time it ended
        self._order: deque[tuple[tuple[int, ...], int]] = deque()
        self._stale = False                                 # a batch ran: rebuild the dict from tail

    def step(self, q: int) -> int | None:
        """Samples back to the earlier copy of the window ending with ``q``, or None."""
        if self._stale:
            self._rebuild()
        self.t += 1
        self.recent.append(q)
        self.tail.append(q)
        if self.t < self.window:
            return None
        key = tuple(self.recent)
        while self._order and self._order[0][1] < self.t - self.history:
            old, at = self._order.popleft()
            if self._seen.get(old) == at:
                del self._seen[old]
        earlier = self._seen.get(key)
        self._seen[key] = self.t
        self._order.append((key, self.t))
        return self._verdict(self.t - earlier if earlier is not None else None, key)

    def _verdict(self, back: int | None, key: tuple[int, ...] | np.ndarray) -> int | None:
        if back is None or back < self.window or back > self.history or len(set(key)) < 3:
            return None
        return back

    def _rebuild(self) -> None:
        """The dict state :meth:`step` keeps, from the tail a batch left."""
        values = list(self.tail)
        first = self.t - len(values) + 1                    # time of values[0]
        self._seen.clear()
        self._order.clear()
        for end in range(max(self.window, first + self.window - 1, self.t - self.history), self.t + 1):
            k = end - first
            key = tuple(values[k - self.window + 1:k + 1])
            self._seen[key] = end
            self._order.append((key, end))
        self._stale = False



def feed(watches: list[ReplayWatch], scaled: np.ndarray) -> list[list[tuple[int, int]]]:
    """Feed rows of samples (rows x watches, value / resolution, not yet rounded) to watches that
    have seen the same number of samples (their windows may differ); per watch, ``(row, samples
    back)`` of each repeat.

    Long batches are scanned together, watches of one window length at a time (every window
    hashed, one sort); short ones, and values too large for int64, go sample by sample.
    """
    if len(scaled) < SCAN_FROM or not watches or float(np.abs(scaled).max()) >= _INT64_SAFE:
        return _steps(watches, scaled)
    q = np.rint(scaled).astype(np.int64)
    groups: dict[int, list[int]] = {}
    for k, watch in enumerate(watches):
        groups.setdefault(watch.window, []).append(k)
    out: list[list[tuple[int, int]]] = [[] for _ in watches]
    for group in groups.values():
        members = [watches[k] for k in group]
        try:
            found = _scan(members, q[:, group])
        except OverflowError:  # a tail holds a value beyond int64 (raised before any state changes)
            found = _steps(members, scaled[:, group])
        for k, repeats in zip(group, found, strict=True):
            out[k] = repeats
    return out


def _steps(watches: list[ReplayWatch], scaled: np.ndarray) -> list[list[tuple[int, int]]]:
    """:func:`feed` sample by sample."""
    found: list[list[tuple[int, int]]] = [[] for _ in watches]
    for t, row in enumerate(scaled.tolist()):
        for k, (watch, v) in enumerate(zip(watches, row, strict=True)):
            back = watch.step(round(v))
            if back is not None:
                found[k].append((t, back))
    return found


def _scan(watches: list[ReplayWatch], q: np.ndarray) -> list[list[tuple[int, int]]]:
    """:func:`feed` for a long batch: the windows of all watches hashed and sorted at once."""
    one = watches[0]
    w, history = one.window, one.history
    assert all((x.window, x.history, x.t) == (w, history, one.t) for x in watches), "watches out of step"
    before = np.array([np.fromiter(x.tail, dtype=np.int64, count=len(x.tail)) for x in watches]).reshape(
        len(watches), len(one.tail))
    seq = np.hstack((before, q.T))                          # (watches, samples)
    first = one.t - before.shape[1] + 1                     # time of seq[:, 0]
    for k, x in enumerate(watches):
        x.t += len(q)
        x.recent.extend(q[-w:, k].tolist())
        x.tail.extend(q[-(history + w):, k].tolist())
        x._stale = True
    found: list[list[tuple[int, int]]] = [[] for _ in watches]
    if seq.shape[1] < w:
        return found
    windows = np.lib.stride_tricks.sliding_window_view(seq, w, axis=1)   # [k, j] ends at time first + j + w - 1
    n = windows.shape[1]
    ends = first + w - 1 + np.arange(n)
    valid = ends >= w                                       # a window needs w samples since the start
    previous = _previous_equal(windows).reshape(len(watches), n)  # flat index of the earlier copy, or -1
    has = previous >= 0
    earlier = np.where(has, previous % n, 0)
    back = ends[None, :] - ends[earlier]
    lo = before.shape[1] - w + 1                            # windows [:, lo:] end in the batch
    repeat = has & valid[None, :] & valid[earlier] & (back >= w) & (back <= history)
    repeat[:, :max(lo, 0)] = False
    for k, j in np.argwhere(repeat).tolist():
        if len(set(windows[k, j].tolist())) >= 3:
            found[k].append((j - lo, int(back[k, j])))
    return found


def _previous_equal(windows: np.ndarray) -> np.ndarray:
    """For every window (watches x positions x values), the flat index of the latest earlier
    identical window of the same watch, or -1."""
    rows, n, w = windows.shape
    if rows * n >= 1 << _POSITION_BITS or w >= len(_MIX):
        return _previous_equal_exact(windows)
    h = np.zeros((rows, n), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(w):                                  # column by column: w long vector ops, not n short sums
            h += windows[:, :, j].astype(np.uint64) * _MIX[j]
        h += np.arange(rows, dtype=np.uint64)[:, None] * _MIX[w]
    keys = np.sort((h.reshape(-1) << np.uint64(_POSITION_BITS)) | np.arange(rows * n, dtype=np.uint64))
    position = (keys & np.uint64((1 << _POSITION_BITS) - 1)).astype(np.int64)
    same = (keys[1:] >> np.uint64(_POSITION_BITS)) == (keys[:-1] >> np.uint64(_POSITION_BITS))
    later, earlier = position[1:][same], position[:-1][same]
    if ((later // n != earlier // n).any()
            or not (windows[later // n, later % n] == windows[earlier // n, earlier % n]).all()):
        return _previous_equal_exact(windows)               # a hash collision: sort the values themselves
    previous = np.full(rows * n, -1, dtype=np.int64)
    previous[later] = earlier
    return previous


def _previous_equal_exact(windows: np.ndarray) -> np.ndarray:
    """:func:`_previous_equal` by a lexicographic sort of the values themselves (no hashing)."""
    rows, n, w = windows.shape
    tagged = np.concatenate((np.repeat(np.arange(rows), n)[:, None], windows.reshape(-1, w)), axis=1)
    order = np.lexsort((np.arange(rows * n), *tagged.T[::-1]))
    ordered = tagged[order]
    same = (ordered[1:] == ordered[:-1]).all(axis=1)
    previous = np.full(rows * n, -1, dtype=np.int64)
    previous[order[1:][same]] = order[:-1][same]
    return previous
