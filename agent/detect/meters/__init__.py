"""Power meter detectors: physics within a meter, energy counter, phase balance, load profile, feeders.

:class:`MeterDetection` is what the agent runs: a meter's poll in, attack/alert events out
(docs/detection-power.md explains each check and how its threshold is chosen).
"""

from agent.detect.meters.watch import MeterDetection, MeterWatch

__all__ = ["MeterDetection", "MeterWatch"]
