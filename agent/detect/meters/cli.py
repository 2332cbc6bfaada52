"""``hacksky-edge evaluate-meters``: the power meter detectors on simulated days, normal and attacked."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any


def cmd_evaluate_meters(args: argparse.Namespace) -> int:
    """Run the simulated evaluation and print its figures."""
    from agent.detect.meters.evaluate import evaluate

    if args.interval <= 0 or args.learn_days < 2 or args.normal_days < 1 or args.attack_hours <= 0:
        sys.stderr.write("--interval and --attack-hours must be positive, --learn-days at least 2 (the load "
                         "profile needs two days of each hour), --normal-days at least 1\n")
        return 2
    ev = evaluate(args.seed, args.interval, args.learn_days, args.normal_days, args.attack_hours)
    if args.json:
        sys.stdout.write(json.dumps({**asdict(ev), "false_alarms_per_meter_day": ev.false_alarms_per_meter_day},
                                    indent=2) + "\n")
    else:
        sys.stdout.write(ev.table() + "\n")
    return 0 if all(r.detected for r in ev.attacks) and not ev.false_alarms else 1


def add_meter_commands(sub: Any) -> None:
    """Register ``evaluate-meters`` on the main parser."""
    p = sub.add_parser("evaluate-meters", help="the power meter detectors on simulated normal and attacked days",
                       description="Three sub-meters and their feeder, simulated on a pinned clock: learned for "
                                   "--learn-days, then false alarms counted over --normal-days and each attack "
                                   "kind run on one sub-meter (docs/detection-power.md). Exit status 1 when an "
                                   "attack goes undetected or a normal day raises a detection.")
    p.add_argument("--seed", type=int, default=1, help="simulation seed (default: %(default)s)")
    p.add_argument("--interval", type=float, default=30.0, help="poll interval, seconds (default: %(default)s)")
    p.add_argument("--learn-days", type=int, default=4, help="days learned first (default: %(default)s)")
    p.add_argument("--normal-days", type=int, default=7, help="normal days scored (default: %(default)s)")
    p.add_argument("--attack-hours", type=float, default=2.0, help="length of each attack (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate_meters)
