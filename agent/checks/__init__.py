"""Local checks: each sees every poll's readings of a device and reports conditions.

A :class:`Condition` says whether something is wrong *now*; the :class:`AlertTracker` turns
conditions into alert open/update/close events, one open alert per condition key.
"""

from agent.checks.base import Check, CheckState, Condition
from agent.checks.engine import CheckEngine, build_checks
from agent.checks.tracker import AlertTracker

__all__ = ["AlertTracker", "Check", "CheckEngine", "CheckState", "Condition", "build_checks"]
