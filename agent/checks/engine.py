"""Runs the configured checks over each poll."""

from __future__ import annotations

from collections.abc import Sequence

from agent.checks.base import Check, Condition
from agent.checks.point_checks import CommunicationCheck, LimitCheck, RateCheck, StuckCheck
from agent.settings import AgentConfig
from drivers.base import Reading


def build_checks(cfg: AgentConfig) -> list[Check]:
    """The built-in checks, wired to the points that ask for them."""
    points = {d.id: {p.name: p for p in d.points} for d in cfg.devices}
    return [CommunicationCheck(), LimitCheck(points), StuckCheck(points), RateCheck(points)]


class CheckEngine:
    """Feeds every check; collects their conditions."""

    def __init__(self, checks: Sequence[Check]) -> None:
        self.checks = list(checks)

    def reconfigured(self, cfg: AgentConfig) -> CheckEngine:
        """Checks for a reloaded map; each takes over its predecessor's memory (stuck counts, last
        values) of the points still read the same way; a point read differently starts afresh."""
        fresh = build_checks(cfg)
        before = {type(c): c for c in self.checks}
        for new in fresh:
            old = before.get(type(new))
            if old is not None:
                new.restore(old.state())
        return CheckEngine(fresh)

    def evaluate(self, device: str, readings: Sequence[Reading]) -> list[Condition]:
        """All conditions reported for one poll of ``device``."""
        out: list[Condition] = []
        for check in self.checks:
            out.extend(check.evaluate(device, readings))
        return out
