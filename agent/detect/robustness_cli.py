"""Sub-command ``evaluate-robustness``: detection per attack kind on injected attacks."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_evaluate_robustness(args: argparse.Namespace) -> int:
    """Inject each attack kind into held-out normal rows, stream them, print detection per kind."""
    from agent.detect.attacks import KINDS
    from agent.detect.robustness import (
        Scenario,
        batadal_scenario,
        evaluate_robustness,
        labelled_scores,
        table,
        water_plant_scenario,
    )

    if args.count < 1:
        sys.stderr.write("--count must be at least 1\n")
        return 2
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()] if args.kinds else list(KINDS)
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        sys.stderr.write(f"unknown attack kind(s) {', '.join(unknown)}; choose from {', '.join(KINDS)}\n")
        return 2
    scenarios: list[Scenario] = []
    if args.plant in ("batadal", "all"):
        scenarios.append(batadal_scenario())
    if args.plant in ("water-plant", "all"):
        scenarios.append(water_plant_scenario())
    sys.stdout.write(table(evaluate_robustness(scenarios, args.count, args.seed, kinds)))
    if args.plant in ("batadal", "all") and not args.skip_labelled:
        own, composed = labelled_scores()
        sys.stdout.write(f"\nBATADAL dataset04 (relabelled), trained on dataset03: S {own.s:.3f} (TPR {own.tpr:.3f}, "
                         f"TNR {own.tnr:.3f}); with the drift CUSUM S {composed.s:.3f} (TPR {composed.tpr:.3f}, "
                         f"TNR {composed.tnr:.3f})\n")
    return 0


def add_command(sub: Any) -> None:
    """Register ``evaluate-robustness`` on the main parser."""
    p = sub.add_parser("evaluate-robustness",
                       help="detection per attack kind (noisy replay, drift, concealed...) on injected attacks")
    p.add_argument("--plant", choices=("batadal", "water-plant", "all"), default="all")
    p.add_argument("--count", type=int, default=30, help="attacks per kind and plant")
    p.add_argument("--seed", type=int, default=0, help="seed of the attacks' placement, targets and sizes")
    p.add_argument("--kinds", help="comma-separated attack kinds (default: all)")
    p.add_argument("--skip-labelled", action="store_true",
                   help="leave out BATADAL's labelled dataset04 scores with and without the drift check")
    p.set_defaults(func=cmd_evaluate_robustness)
