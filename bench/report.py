"""Printing and saving benchmark results."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any


def table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A markdown table of ``rows``."""
    out = [f"## {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append("| " + " | ".join(_cell(r.get(c)) for c in columns) + " |")
    return "\n".join(out) + "\n"


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.0f}"
    return "" if v is None else str(v)


def save(name: str, results: dict[str, Any], out_dir: Path) -> Path:
    """Write ``results`` with the machine's description to ``out_dir/name.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    doc = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "python": sys.version.split()[0], "machine": platform.machine(), **results}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path
