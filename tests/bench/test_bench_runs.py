"""The benchmarks keep running (figures are not asserted: machines are noisy)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_detect_benchmark_prints_a_table_and_writes_json_with_ratios(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "bench", "detect", "--seconds", "0.05", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert "| bare matrix product (baseline) |" in result.stdout
    doc = json.loads((tmp_path / "detect.json").read_text())
    ratios = {r["path"]: r["vs baseline"] for r in doc["results"]}
    assert ratios["bare matrix product (baseline)"] == 1.0
    assert all(r["readings/s"] > 0 for r in doc["results"]) and doc["signals"] == 43
