"""Which shipped meter profiles a probed Modbus unit looks like: those whose points (in the probed
range and tables) all answer, ranked by how much of what answered they explain."""

from __future__ import annotations

from dataclasses import dataclass

from agent import profiles
from agent.discover.modbus import ModbusScan

#: a profile is proposed when at least this many of its points lie in the probed range...
MIN_POINTS = 4
#: ...and at least this share of them answered
MIN_ANSWERED = 0.9


@dataclass(frozen=True)
class ProfileMatch:
    """A profile the unit may be: its points in the range, those that answered, what it explains."""

    name: str
    in_range: int
    answered: int
    #: the share of the answering registers the profile's points cover
    covered: float


def matching_profiles(scan: ModbusScan) -> list[ProfileMatch]:
    """The shipped profiles whose points in the probed range answered, best explanation first."""
    plan = scan.plan
    answering = {(t.table, a) for t in scan.tables for a in t.first}
    matches = []
    for name in profiles.names():
        points = [p for p in profiles.load(name).points if p.table in plan.tables
                  and plan.first <= p.address and p.address + p.register_count - 1 <= plan.last]
        if len(points) < MIN_POINTS:
            continue
        cells = [{(p.table, p.address + k) for k in range(p.register_count)} for p in points]
        answered = sum(1 for c in cells if c <= answering)
        if answered < MIN_ANSWERED * len(points):
            continue
        covered = len(set().union(*cells) & answering) / max(1, len(answering))
        matches.append(ProfileMatch(name, len(points), answered, covered))
    return sorted(matches, key=lambda m: (-m.covered, -m.answered, m.name))
