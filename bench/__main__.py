"""``python -m bench [NAME ...]``: run benchmarks, print tables, write bench/results/NAME.json."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from bench.report import save, table

BENCHMARKS = ["modbus", "ingest", "detect", "sched", "opcua", "scale", "backfill", "peer", "mqtt", "central",
              "dashboard", "bus", "rbe"]


def parse_step(text: str) -> tuple[int, int]:
    """``DEVICESxPOINTS`` (as ``500x20``) -> (devices, points per device)."""
    devices, sep, points = text.partition("x")
    if not sep or not devices.isdigit() or not points.isdigit() or int(devices) < 1 or int(points) < 1:
        raise argparse.ArgumentTypeError(f"expected DEVICESxPOINTS such as 500x20, got {text!r}")
    return int(devices), int(points)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")
    parser.add_argument("--seconds", type=float,
                        help="time per measurement (default: each benchmark's own, 3 s; 60 s for load runs)")
    parser.add_argument("--step", dest="steps", type=parse_step, action="append", metavar="DEVICESxPOINTS",
                        help="scale, peer, mqtt; repeatable: a load to step through (default: each benchmark's own)")
    parser.add_argument("--outage", type=float, metavar="SECONDS",
                        help="backfill and mqtt: how long the database or broker stays down (default 600)")
    parser.add_argument("--mode", dest="modes", action="append", metavar="MODE",
                        help="scale; repeatable: a way of running the agent (default: all of them)")
    parser.add_argument("--rows", type=int, metavar="N",
                        help="central: readings of the month loaded (default 50,000,000)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    # checked here: argparse's choices check refuses nargs="*" given nothing (Python 3.11)
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})")
    args.names = args.names or BENCHMARKS
    if args.steps and (len(args.names) != 1 or args.names[0] not in ("scale", "peer", "mqtt")):
        parser.error("--step is an option of the scale and peer benchmarks: run one alone (bench scale --step 5x4)")
    if args.modes and args.names != ["scale"]:
        parser.error("--mode is an option of the scale benchmark: run it alone (bench scale --mode auto)")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("agent.detect.incidents").setLevel(logging.ERROR)  # detections are the workload here
    for name in args.names:
        module = importlib.import_module(f"bench.{name}")
        options: dict[str, object] = {"steps": args.steps} if args.steps else {}
        if args.outage is not None and name in ("backfill", "mqtt"):
            options["outage"] = args.outage
        if args.modes:
            options["modes"] = args.modes
        if args.rows and name == "central":
            options["rows"] = args.rows
        results = module.run(args.seconds, **options) if args.seconds else module.run(**options)
        sys.stdout.write(table(module.TITLE, results["results"], module.COLUMNS))
        sys.stdout.write(f"(written to {save(name, results, args.out)})\n\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
