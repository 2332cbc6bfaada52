"""``python -m bench [NAME ...]``: run benchmarks, print tables, write bench/results/NAME.json."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from bench.report import save, table

BENCHMARKS = ["modbus", "ingest", "detect", "opcua", "scale", "backfill", "peer"]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", default=BENCHMARKS, choices=BENCHMARKS)
    parser.add_argument("--seconds", type=float,
                        help="time per measurement (default: each benchmark's own, 3 s; 60 s for load runs)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("agent.detect.incidents").setLevel(logging.ERROR)  # detections are the workload here
    for name in args.names:
        module = importlib.import_module(f"bench.{name}")
        results = module.run(args.seconds) if args.seconds else module.run()
        sys.stdout.write(table(module.TITLE, results["results"], module.COLUMNS))
        sys.stdout.write(f"(written to {save(name, results, args.out)})\n\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
