"""The agent's live state as a JSON file beside the buffer, read by ``hacksky-edge status``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.buffer.private_files import write_private
from agent.central.engine import redact_url
from agent.configload import ConfigError, ConfigIssue

FILE_NAME = "state.json"


def _redacted(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` with the central URL safe to show (a copy; never the password)."""
    central = state.get("central")
    if not isinstance(central, dict) or not isinstance(central.get("url"), str):
        return dict(state)
    return {**state, "central": {**central, "url": redact_url(central["url"])}}


def write_state(directory: Path, state: Mapping[str, Any]) -> None:
    """Replace the state file atomically."""
    target = directory / FILE_NAME
    tmp = target.with_suffix(".tmp")
    write_private(tmp, json.dumps(_redacted(state), indent=2, sort_keys=True).encode("utf-8"))
    os.replace(tmp, target)  # replaces a link at ``target`` itself, never what it points to


def read_state(directory: Path) -> dict[str, Any] | None:
    """The last state written, or None when the agent never ran here.

    A damaged file raises :class:`ConfigError` naming its line and column.
    """
    path = directory / FILE_NAME
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        why = f"not valid JSON ({exc.msg}); delete it: the running agent writes a new one"
        raise ConfigError([ConfigIssue(str(path), exc.lineno, exc.colno, "", why)]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(str(path), 1, 1, "", f"cannot read: {exc}")]) from None
    if not isinstance(state, dict):
        raise ConfigError([ConfigIssue(str(path), 1, 1, "", "not a state file: a JSON object was expected")])
    return _redacted(state)
