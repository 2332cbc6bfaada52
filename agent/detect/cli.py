"""Sub-commands ``train`` and ``evaluate``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agent.detect.dataset import DatasetError


def cmd_train(args: argparse.Namespace) -> int:
    """Fit a detector model on normal operation and save it."""
    from agent.detect.evaluate import train_from_csv

    try:
        model = train_from_csv(args.csv, args.relations)
    except (DatasetError, ValueError, OSError) as exc:
        sys.stderr.write(f"cannot train: {exc}\n")
        return 1
    model.save(args.out)
    res = model.residuals
    sys.stdout.write(
        f"{args.out}: {len(model.signals)} signals, {len(res.names)} residuals "
        f"({sum(k != 'signal' for k in res.kinds)} from declared relations), {len(model.bands.kinds)} bands, "
        f"{len(model.replay_signals)} signals watched for replay; trained on {model.meta['rows']} rows\n")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Train on NORMAL, stream LABELLED through the detector, print the BATADAL scores."""
    from agent.detect.evaluate import evaluate, report
    from agent.detect.model import DetectorModel

    try:
        model = DetectorModel.load(args.model) if args.model else None
        ev = evaluate(args.train, args.test, args.relations, model)
    except (DatasetError, ValueError, OSError) as exc:
        sys.stderr.write(f"cannot evaluate: {exc}\n")
        return 1
    if args.predictions:
        ev.write_predictions(args.predictions)
    if args.json:
        sys.stdout.write(json.dumps(ev.as_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(report(ev))
    return 0


def add_commands(sub: Any) -> None:
    """Register the detection sub-commands on the main parser."""
    p = sub.add_parser("train", help="learn a detector model from normal operation")
    p.add_argument("--csv", required=True, help="rows of normal operation (BATADAL layout: DATETIME, signals...)")
    p.add_argument("--relations", help="YAML with a plant: section (default: C-Town's for BATADAL columns)")
    p.add_argument("-o", "--out", required=True, help="model file to write (.npz)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score the detectors on a labelled CSV (ATT_FLAG)")
    p.add_argument("--train", required=True, help="CSV of normal operation to fit on")
    p.add_argument("--test", required=True, help="CSV with an ATT_FLAG column (1 attack, 0 normal, -999 skip)")
    p.add_argument("--relations", help="YAML with a plant: section (default: C-Town's for BATADAL columns)")
    p.add_argument("--model", help="use this trained model instead of fitting on --train")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--predictions", metavar="OUT.csv", help="write DATETIME, ATT_FLAG, alarm, score per row")
    p.set_defaults(func=cmd_evaluate)
