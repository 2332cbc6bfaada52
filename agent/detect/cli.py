"""Sub-commands ``train`` and ``evaluate``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from agent.configload import ConfigError
from agent.detect.dataset import DatasetError
from agent.detect.model import DetectorModel, Tuning
from agent.units import parse_time


def _train_from_db(args: argparse.Namespace) -> DetectorModel:
    """Fit on the readings the central DB holds for the device map's gateway."""
    from agent.central.engine import make_engine
    from agent.configload import load_config
    from agent.detect.evaluate import load_relations
    from agent.detect.history import load_history
    from agent.detect.train import fit
    from agent.detect.wiring import wire
    from agent.settings import DetectionConfig

    cfg = load_config(args.from_db, check_model=False)
    det = cfg.detection or DetectionConfig(model=args.out)
    relations = load_relations(args.relations, []) if args.relations else None
    names = sorted(set(det.signals) | (relations.signals() if relations else set())
                   | set(filter(None, (args.signals or "").split(","))))
    if not names:
        raise ValueError("name the signals to learn: --signals, --relations or detection.signals in the map")
    wired, _, problems = wire(det, cfg.devices, names)
    if problems:
        raise ValueError("; ".join(f"{'.'.join(map(str, p))}: {m}" for p, m in problems))
    engine = make_engine(cfg.central)
    try:
        data = load_history(engine, cfg.gateway.id, {n: wired[n] for n in names}, det.interval,
                            parse_time(args.since), parse_time(args.until))
    finally:
        engine.dispose()
    return fit(data.values, data.hours, data.signals, relations, _tuning(args),
               meta={"trained_on": f"{cfg.gateway.id} readings {args.since} .. {args.until}",
                     "relations": str(args.relations or "")})


def _tuning(args: argparse.Namespace) -> Tuning:
    return Tuning(resolution=args.resolution, calibration_folds=args.folds, false_alarm_budget=args.budget)


#: the detectors that only exist for declared plant relations (residual and band kinds)
RELATION_KINDS = ("mass_balance", "pressure", "control", "actuator")


def _relations_note(model: DetectorModel) -> str | None:
    """A note for a model without any relation detector: which ones are left out and how to declare relations."""
    if set(model.residuals.kinds + model.bands.kinds) & set(RELATION_KINDS):
        return None
    from agent.detect.evaluate import RELATIONS_FORMAT

    detectors = "the mass-balance, pressure, control and actuator detectors"
    declared = model.meta.get("relations")
    if declared:
        return (f"note: the relations in {declared} gave none of {detectors}: they need tanks with flows or "
                "pressures, or pumps with a flow or that switch on and off in the training rows\n")
    return (f"note: no plant relations in effect, so {detectors} are left out: declare them in a YAML file's "
            f"plant: section ({RELATIONS_FORMAT}) and train with --relations FILE; see docs/train-your-plant.md\n")


def cmd_train(args: argparse.Namespace) -> int:
    """Fit a detector model on normal operation and save it."""
    from agent.detect.evaluate import train_from_csv

    if bool(args.csv) == bool(args.from_db):
        sys.stderr.write("train from either --csv FILE or --from-db MAP (readings in its central database)\n")
        return 2
    if args.resolution < 0:
        sys.stderr.write("--resolution is the signals' reporting step: 0 (none) or a positive number\n")
        return 2
    if args.folds == 1 or args.folds < 0 or not 0 < args.budget < 1:
        sys.stderr.write("--folds is 0 (off) or at least 2, --budget a share between 0 and 1 (0.005: 5 alarms "
                         "per 1,000 rows)\n")
        return 2
    try:
        model = (train_from_csv(args.csv, args.relations, _tuning(args)) if args.csv else _train_from_db(args))
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    except (DatasetError, ValueError, OSError, SQLAlchemyError) as exc:
        sys.stderr.write(f"cannot train: {exc}\n")
        return 1
    try:
        model.save(args.out)
    except OSError as exc:
        sys.stderr.write(f"cannot write the model: {exc}\n")
        return 1
    res = model.residuals
    sys.stdout.write(
        f"{args.out}: {len(model.signals)} signals, {len(res.names)} residuals "
        f"({sum(k != 'signal' for k in res.kinds)} from declared relations), {len(model.bands.kinds)} bands, "
        f"{len(model.replay_signals)} signals watched for replay; trained on {model.meta['rows']} rows\n")
    cal = model.meta.get("calibration")
    if cal:
        wider = ", ".join(f"{k} x{v:.2f}" for k, v in cal["multipliers"].items() if v > 1) or "none"
        sys.stdout.write(
            f"limits from {cal['folds']}-fold cross-validation: out-of-fold false alarms per 1,000 rows "
            f"{1000 * cal['unwidened_false_alarm_rate']:.1f} with the training rows' limits, "
            f"{1000 * cal['false_alarm_rate']:.1f} widened (budget {1000 * cal['false_alarm_budget']:.1f}; per block "
            f"{', '.join(f'{1000 * r:.1f}' for r in cal['fold_false_alarm_rates'])}); widened: {wider}\n")
    elif args.budget != Tuning.false_alarm_budget:
        sys.stderr.write("note: --budget applies only with --folds N (cross-validation); it was not used\n")
    sys.stderr.write(_relations_note(model) or "")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Train on NORMAL, stream LABELLED through the detector, print the BATADAL scores."""
    from dataclasses import asdict

    from agent.detect.evaluate import cross, cross_report, evaluate, report
    from agent.detect.model import DetectorModel

    if bool(args.train) == bool(args.model):
        sys.stderr.write("evaluate a model trained now on --train NORMAL.csv, or a saved one: --model MODEL.npz\n")
        return 2
    if args.train and any(Path(t).resolve() == Path(args.test).resolve() for t in args.train):
        sys.stderr.write("note: the test file is also a training file: its normal rows are scored by a model "
                         "that learned them\n")
    try:
        model = DetectorModel.load(args.model) if args.model else None
        ev = evaluate(args.train or args.model, args.test, args.relations, model)
        spread = [] if args.single or args.model else cross(args.train, args.test, args.relations)
    except ConfigError as exc:  # the relations file: its own file:line: field: message
        sys.stderr.write(f"{exc}\n")
        return 1
    except (DatasetError, ValueError, OSError) as exc:
        sys.stderr.write(f"cannot evaluate: {exc}\n")
        return 1
    if args.predictions:
        ev.write_predictions(args.predictions)
    if args.json:
        doc = ev.as_dict()
        if spread:
            doc["cross"] = [{**asdict(r), "tnr": r.tnr} for r in spread]
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(report(ev))
        if spread:
            sys.stdout.write("\nLimits chosen on one file, scored on the other:\n\n" + cross_report(spread))
    return 0


def add_commands(sub: Any) -> None:
    """Register the detection sub-commands on the main parser."""
    p = sub.add_parser("train", help="learn a detector model from normal operation")
    p.add_argument("--csv", action="append",
                   help="rows of normal operation (BATADAL layout: DATETIME, signals...); repeat it to learn "
                        "from several files (their normal rows, joined in order)")
    p.add_argument("--from-db", metavar="MAP.yaml",
                   help="or: learn from the readings this device map's central database holds")
    p.add_argument("--since", default="1970-01-01 00:00:00", help="with --from-db: first reading (UTC)")
    p.add_argument("--until", default="2100-01-01 00:00:00", help="with --from-db: end of the period (UTC)")
    p.add_argument("--signals", help="with --from-db: comma-separated point names to learn (besides relations)")
    p.add_argument("--relations", help="YAML with a plant: section (default: C-Town's for BATADAL columns)")
    p.add_argument("--resolution", type=float, default=Tuning.resolution,
                   help="reporting resolution of the signals (training rows are rounded to it)")
    p.add_argument("--folds", type=int, default=Tuning.calibration_folds,
                   help="widen the limits by time-ordered cross-validation over this many blocks (0: off)")
    p.add_argument("--budget", type=float, default=Tuning.false_alarm_budget,
                   help="with --folds: share of out-of-fold normal rows the limits may alarm on")
    p.add_argument("-o", "--out", required=True, help="model file to write (.npz)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score the detectors on a labelled CSV (ATT_FLAG)")
    p.add_argument("--train", action="append",
                   help="CSV of normal operation to fit on (or --model); repeat it to learn from several files")
    p.add_argument("--test", required=True, help="CSV with an ATT_FLAG column (1 attack, 0 normal, -999 skip)")
    p.add_argument("--relations", help="YAML with a plant: section (default: C-Town's for BATADAL columns)")
    p.add_argument("--model", help="use this trained model instead of fitting on --train")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--predictions", metavar="OUT.csv", help="write DATETIME, ATT_FLAG, alarm, score per row")
    p.add_argument("--single", action="store_true",
                   help="only train -> test (skip the cross-file table: each procedure trained on either file, "
                        "scored on the other; skipped with --model too)")
    p.set_defaults(func=cmd_evaluate)
