"""Every power meter's checks, and the feeder checks between them: polls in, attack/alert events out."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from datetime import tzinfo
from typing import Any

from agent.detect.incidents import IncidentTracker
from agent.detect.meters.check import LearnedCheck
from agent.detect.meters.energy import EnergyCheck
from agent.detect.meters.feeder import FeederCheck
from agent.detect.meters.hierarchy import feeder_groups
from agent.detect.meters.layout import MeterLayout, MeterPoll
from agent.detect.meters.physics import PhaseBalanceCheck, PhysicsCheck
from agent.detect.meters.profile import LoadProfile
from agent.detect.stream import Finding, Verdict
from agent.records import Event
from agent.settings import AnyDevice
from drivers.base import Reading

log = logging.getLogger(__name__)

#: an incident closes after this many polls without a finding
CLEAR_AFTER = 30
#: confidence (0-100) from which a detection also raises an alert (as ``detection.alert_from``)
ALERT_FROM = 50.0


#: the shape of :meth:`MeterDetection.learned`; state saved in another shape is not restored
LEARNED_VERSION = 1


def verdict(findings: list[Finding]) -> Verdict:
    """One poll's findings as the incident tracker takes them."""
    return Verdict(bool(findings), max((f.score for f in findings), default=0.0), tuple(findings))


class MeterWatch:
    """One meter's checks: physics, energy counter, phase balance (volts, amps) and load profile."""

    def __init__(self, layout: MeterLayout, zone: tzinfo | None = None) -> None:
        self.layout = layout
        self.checks: list[LearnedCheck] = []
        if PhysicsCheck.applies(layout):
            self.checks.append(PhysicsCheck(layout))
        if EnergyCheck.applies(layout):
            self.checks.append(EnergyCheck(layout))
        for quantity, points in (("voltage", layout.volts), ("current", layout.amps)):
            if len(points) > 1:
                self.checks.append(PhaseBalanceCheck(layout, quantity))
        self.profile = LoadProfile(layout.device, tuple(map(layout.signal, layout.power)), zone)
        self.load_z: float | None = None
        #: a check finished learning with the last poll
        self.finished_learning = False

    def learning(self) -> int:
        """How many checks are still learning."""
        return sum(c.is_learning for c in self.checks)

    def learned(self) -> dict[str, Any]:
        """What the checks that finished learning learned, and the load profile, by check."""
        checks = {c.key: s for c in self.checks if (s := c.learned()) is not None}
        profile = self.profile.learned()
        return {"layout": self.layout.fingerprint, **checks, **({"profile": profile} if profile else {})}

    def restore(self, learned: dict[str, Any]) -> None:
        """Take up :meth:`learned` (saved before a restart, for the same layout)."""
        for check in self.checks:
            if check.key in learned:
                check.restore(learned[check.key])
        if "profile" in learned:
            self.profile.restore(learned["profile"])

    def step(self, poll: MeterPoll) -> Verdict:
        """The verdict on this poll."""
        learning = self.learning()
        findings = [f for c in self.checks if (f := c.step(poll.ts_us, poll)) is not None]
        self.finished_learning = self.learning() < learning
        self.load_z = None
        if poll.power is not None:
            self.load_z, finding = self.profile.step(poll.ts_us, poll.power)
            if finding is not None:
                findings.append(finding)
        return verdict(findings)


def _digest(parts: list[str]) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _restorable(learned: dict[str, Any] | None) -> dict[str, Any]:
    """The saved state by meter (``meter/<id>``, ``feeder/<id>``), when saved in this version's shape."""
    if learned is None:
        return {}
    if not isinstance(learned, dict) or learned.get("version") != LEARNED_VERSION:
        log.warning("meters' learned state saved in another shape: every meter learns again")
        return {}
    meters = learned.get("meters")
    return meters if isinstance(meters, dict) else {}


def _restore(name: str, learner: MeterWatch | FeederCheck, fingerprint: str, saved: dict[str, Any]) -> bool:
    """Hand a new watch or feeder check what it learned before a restart, when its layout is unchanged;
    False when the saved state broke off half-way (build it anew: it learns again)."""
    learned = saved.get(name)
    if learned is None:
        return True
    if not isinstance(learned, dict) or learned.get("layout") != fingerprint:
        log.info("%s: its points changed since its learned state was saved; it learns again", name)
        return True
    try:
        learner.restore(learned)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("%s: learned state not readable (%r); it learns again", name, exc)
        return False
    log.info("%s: learned state restored", name)
    return True


class MeterDetection:
    """All meters of a device map; ``previous`` (a reload) hands over what unchanged meters learned
    and their open incidents; after a restart, ``state`` reopens incidents saved with the buffer and
    ``learned`` (:meth:`learned` as saved) restores what meters and feeders of unchanged layout learned."""

    def __init__(self, devices: Sequence[AnyDevice], previous: MeterDetection | None = None,
                 state: dict[str, Any] | None = None, zone: tzinfo | None = None,
                 learned: dict[str, Any] | None = None) -> None:
        enabled = [d for d in devices if d.enabled]
        layouts = {d.id: layout for d in enabled if (layout := MeterLayout.of(d)) is not None}
        kept = previous.watches if previous else {}
        restorable = _restorable(learned)
        self.watches: dict[str, MeterWatch] = {}
        for i, layout in layouts.items():
            if i in kept and kept[i].layout == layout:
                self.watches[i] = kept[i]
                continue
            watch = MeterWatch(layout, zone)
            restored = _restore(f"meter/{i}", watch, layout.fingerprint, restorable)
            self.watches[i] = watch if restored else MeterWatch(layout, zone)
        self.feeders: dict[str, FeederCheck] = {}
        old_feeders = previous.feeders if previous else {}
        for feeder, subs in feeder_groups(enabled).items():
            if feeder not in layouts or any(s not in layouts for s in subs):
                log.info("feeder %s not checked: it or one of its sub-meters is disabled or has no power point",
                         feeder)
                continue
            members = [layouts[m] for m in (feeder, *subs)]
            signals = tuple(m.signal(p) for m in members for p in m.power)
            fingerprint = _digest([feeder, *subs, *(m.fingerprint for m in members)])
            old = old_feeders.get(feeder)
            if old is not None and old.fingerprint == fingerprint:
                self.feeders[feeder] = old
                continue
            check = FeederCheck(feeder, subs, signals, fingerprint)
            restored = _restore(f"feeder/{feeder}", check, fingerprint, restorable)
            self.feeders[feeder] = check if restored else FeederCheck(feeder, subs, signals, fingerprint)
        self._member_of: dict[str, list[FeederCheck]] = {}
        for check in self.feeders.values():
            for member in (check.feeder, *check.subs):
                self._member_of.setdefault(member, []).append(check)
        wanted = [f"meter/{i}" for i in self.watches] + [f"feeder/{i}" for i in self.feeders]
        old_trackers = previous.trackers if previous else {}
        saved = state or {}
        self.trackers: dict[str, IncidentTracker] = {name: old_trackers.get(name) or IncidentTracker(
            name, name.replace("/", " "), CLEAR_AFTER, ALERT_FROM, saved.get(name)) for name in wanted}
        #: trackers of meters no longer watched, with their incident still open: closed by :meth:`retired`
        self._retired = [t for name, t in old_trackers.items() if name not in self.trackers and t.open]
        self._finished = False

    def learned(self) -> dict[str, Any]:
        """What every meter and feeder learned, JSON-able and small (thresholds, fitted parameters, profile
        buckets; no learning samples), each with its layout's fingerprint: ``learned`` after a restart."""
        meters = {f"meter/{i}": w.learned() for i, w in self.watches.items()}
        for i, check in self.feeders.items():
            if (fitted := check.learned()) is not None:
                meters[f"feeder/{i}"] = {"layout": check.fingerprint, **fitted}
        return {"version": LEARNED_VERSION, "meters": meters}

    def finished_learning(self) -> bool:
        """Whether a check finished learning since the last call (time to save :meth:`learned`)."""
        finished, self._finished = self._finished, False
        return finished

    def observe(self, device: str, readings: Sequence[Reading]) -> list[Event]:
        """Events of one poll of ``device`` (often none)."""
        watch = self.watches.get(device)
        if watch is None:
            return []
        poll = watch.layout.poll(readings)
        if poll is None:
            return []
        events = self.trackers[f"meter/{device}"].process(watch.step(poll), poll.ts_us)
        self._finished |= watch.finished_learning
        if poll.power is None:
            return events
        for check in self._member_of.get(device, ()):
            check.remember(device, poll.ts_us, poll.power)
            if device == check.feeder:
                learning = check.is_learning
                finding = check.step(poll.ts_us, poll.power)
                self._finished |= learning and not check.is_learning
                events += self.trackers[f"feeder/{device}"].process(verdict([finding] if finding else []),
                                                                   poll.ts_us)
        return events

    def load_score(self, device: str) -> float | None:
        """The z-score of the device's last power reading against its load profile (None: still learning)."""
        watch = self.watches.get(device)
        return watch.load_z if watch else None

    def retired(self, ts_us: int) -> list[Event]:
        """Close the incidents of meters a reload removed (once)."""
        events: list[Event] = []
        for tracker in self._retired:
            tracker.clear_after = 0
            events += tracker.process(verdict([]), ts_us)
        self._retired = []
        return events

    def state(self) -> dict[str, Any]:
        """Open incidents, by tracker name (saved with the buffer, handed back as ``state`` at start)."""
        return {name: s for name, t in self.trackers.items() if (s := t.state()) is not None}
