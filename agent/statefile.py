"""The agent's live state as a JSON file beside the buffer, read by ``hacksky-edge status``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FILE_NAME = "state.json"


def write_state(directory: Path, state: dict[str, Any]) -> None:
    """Replace the state file atomically."""
    target = directory / FILE_NAME
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, target)


def read_state(directory: Path) -> dict[str, Any] | None:
    """The last state written, or None when the agent never ran here."""
    try:
        return json.loads((directory / FILE_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
