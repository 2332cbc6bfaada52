"""A device map as read: its YAML data after ``${VAR}`` substitution, ``include:`` files spliced in and
``profile:`` devices expanded, with the file, line and column of every key and value, so that
every problem found later is reported where it is written.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from agent import profiles

ConfigPath = tuple[str | int, ...]
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a device map, with its place in the file."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


class ConfigError(Exception):
    """A device map that cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.line, i.column))
        super().__init__("\n".join(str(i) for i in self.issues))


def format_path(path: Iterable[str | int]) -> str:
    """``('devices', 1, 'points', 0, 'type')`` -> ``devices[1].points[0].type``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class MapDocument:
    """The constructed YAML data plus the line/column of every key and value."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.marks: dict[ConfigPath, tuple[int, int]] = {}
        self.key_marks: dict[ConfigPath, tuple[int, int]] = {}
        self.from_env: set[ConfigPath] = set()
        self.issues: list[ConfigIssue] = []
        #: how a place the map does not spell out is shown (a profile's point): path prefix -> its name
        self.aliases: dict[ConfigPath, str] = {}
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                self.data: Any = {}
                return
            self._index(node, ())
            self.data = self._substitute(loader.construct_document(node), ())
        finally:
            loader.dispose()
        self._expand_profiles()

    def located(self, path: ConfigPath, message: str, *, key: bool = False) -> ConfigIssue:
        """``message`` placed at ``path`` (at its key when ``key``), or the nearest known place."""
        marks = self.key_marks if key else self.marks
        probe = path
        while probe and probe not in marks and probe not in self.marks:
            probe = probe[:-1]
        line, col = marks.get(probe) or self.marks.get(probe, (1, 1))
        return ConfigIssue(self.file, line, col, self._shown(path), message)

    def _shown(self, path: ConfigPath) -> str:
        for cut in range(len(path), 0, -1):
            alias = self.aliases.get(path[:cut])
            if alias is not None:
                return alias + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[cut:])
        return format_path(path)

    def _expand_profiles(self) -> None:
        """Each Modbus device with ``profile:`` gets the profile's points (its own override or add to
        them, by name) and its register layout, unless set on the device; errors in a point the device
        does not name are placed at its ``profile:`` and shown as ``devices[i].profile[NAME].points[j]``."""
        devices = self.data.get("devices") if isinstance(self.data, dict) else None
        for index, device in enumerate(devices if isinstance(devices, list) else []):
            name = device.get("profile") if isinstance(device, dict) else None
            if not isinstance(name, str) or device.get("protocol", "modbus") != "modbus":
                continue
            here: ConfigPath = ("devices", index)
            profile = profiles.raw(name)
            if profile is None:
                close = difflib.get_close_matches(name, profiles.names(), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(profiles.names())})"
                self.issue((*here, "profile"), f"no profile {name!r}{hint}")
                continue
            for key, value in profile.get("device", {}).items():
                device.setdefault(key, value)
            own = device.get("points", [])
            merged = profiles.merge_points(profile["points"], own if isinstance(own, list) else [])
            device["points"] = [point for point, _, _ in merged]
            self._remap_points(here, name, [(p, o) for _, p, o in merged])

    def _remap_points(self, device: ConfigPath, profile: str, origins: list[tuple[int | None, int | None]]) -> None:
        """Marks and names of a device's merged points: the device's own where it wrote the point,
        else its ``profile:`` key's place and the profile's point index."""
        base = (*device, "points")
        subtree = {path[len(base):]: mark for path, mark in self.marks.items() if path[:len(base)] == base}
        keys = {path[len(base):]: mark for path, mark in self.key_marks.items() if path[:len(base)] == base}
        for path in [p for p in self.marks if p[:len(base)] == base and len(p) > len(base)]:
            del self.marks[path]
        for at, (in_profile, in_own) in enumerate(origins):
            if in_own is None:
                self.marks[(*base, at)] = self.marks[(*device, "profile")]
                self.aliases[(*base, at)] = f"{format_path(device)}.profile[{profile}].points[{in_profile}]"
                continue
            self.aliases[(*base, at)] = format_path((*base, in_own))
            for rest, mark in subtree.items():
                if rest and rest[0] == in_own:
                    self.marks[(*base, at, *rest[1:])] = mark
            for rest, mark in keys.items():
                if rest and rest[0] == in_own:
                    self.key_marks[(*base, at, *rest[1:])] = mark


    def issue(self, path: ConfigPath, message: str, *, key: bool = False) -> None:
        """Record a problem at ``path`` (at its key when ``key``), nearest known place."""
        self.issues.append(self.located(path, message, key=key))

    def _index(self, node: yaml.Node, path: ConfigPath) -> None:
        self.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                child = (*path, key)
                self.key_marks[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if key in seen:
                    self.issue(child, f"duplicate key {key!r}", key=True)
                seen.add(key)
                self._index(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._index(item, (*path, index))

    def _substitute(self, value: Any, path: ConfigPath) -> Any:
        if isinstance(value, dict):
            return {k: self._substitute(v, (*path, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [self._substitute(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            self.from_env.add(path)
            return _ENV_REF.sub(lambda m: self._env_value(m, path), value)
        return value

    def _env_value(self, match: re.Match[str], path: ConfigPath) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is not None:
                return default
            self.issue(path, f"environment variable {name} is not set (use ${{{name}:-default}} for a default)")
            return ""
        return value


