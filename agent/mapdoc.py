"""A device map as read: its YAML data after ``${VAR}`` substitution, ``include:`` files spliced in and
``profile:`` devices expanded, with the file, line and column of every key and value, so that
every problem found later is reported where it is written.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from agent import profiles
from agent.settings import PointConfig

ConfigPath = tuple[str | int, ...]
V = TypeVar("V")
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
    """A device map that cannot be used; ``issues`` lists every problem found (each once: a profile's
    error is found once per device using it)."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = sorted(dict.fromkeys(issues), key=lambda i: (i.file, i.line, i.column))
        super().__init__("\n".join(str(i) for i in self.issues))


def format_path(path: Iterable[str | int]) -> str:
    """``('devices', 1, 'points', 0, 'type')`` -> ``devices[1].points[0].type``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


#: the keys a Modbus point may have (agent.settings.PointConfig's fields)
POINT_KEYS = frozenset(PointConfig.model_fields)
#: what an included file may hold
INCLUDED_KEYS = ("devices", "profiles", "include")
#: includes within includes, at most
MAX_INCLUDE_DEPTH = 8


class MapDocument:
    """The constructed YAML data plus the file, line and column of every key and value.

    ``include:`` files (paths relative to the including file) are spliced in: their ``devices``
    after the including file's, their ``profiles`` beside its own. A place in an included file is
    reported in that file, a device as its index there (``hall-b.yaml:4:5: devices[1].port``).
    """

    def __init__(self, file: str, text: str, *, chain: tuple[Path, ...] = ()) -> None:
        self.file = file
        self.marks: dict[ConfigPath, tuple[int, int]] = {}
        self.key_marks: dict[ConfigPath, tuple[int, int]] = {}
        #: the file of a place that is not in ``file`` (it came from an included file)
        self.files: dict[ConfigPath, str] = {}
        self.from_env: set[ConfigPath] = set()
        self.issues: list[ConfigIssue] = []
        #: how a place the map does not spell out is shown (a profile's point): path prefix -> its name
        self.aliases: dict[ConfigPath, str] = {}
        #: every included file's text, in the order read (the map's hash covers them)
        self.included: list[tuple[str, str]] = []
        self._chain = (*chain, Path(file).resolve())
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
        self._splice_includes()
        if not chain:
            self._expand_profiles()

    def _nearest(self, path: ConfigPath) -> ConfigPath:
        """``path``, or its nearest parent with a mark."""
        while path and path not in self.marks:
            path = path[:-1]
        return path

    def located(self, path: ConfigPath, message: str, *, key: bool = False) -> ConfigIssue:
        """``message`` placed at ``path`` (at its key when ``key``), or the nearest known place."""
        marks = self.key_marks if key else self.marks
        probe = path
        while probe and probe not in marks and probe not in self.marks:
            probe = probe[:-1]
        line, col = marks.get(probe) or self.marks.get(probe, (1, 1))
        return ConfigIssue(self.files.get(probe, self.file), line, col, self._shown(path), message)

    def _splice_includes(self) -> None:
        """Read each ``include:`` file and graft its devices and profiles onto this document."""
        listed = self.data.get("include") if isinstance(self.data, dict) else None
        if listed is None:
            return
        if not isinstance(listed, list):
            self.issue(("include",), "a list of files, paths relative to this file: include: [hall-b.yaml]")
            return
        for index, entry in enumerate(listed):
            where: ConfigPath = ("include", index)
            if not isinstance(entry, str) or not entry.strip() or "\0" in entry:
                self.issue(where, "a file name (relative to this file)")
                continue
            path = Path(self.file).parent / entry
            if path.resolve() in self._chain or len(self._chain) > MAX_INCLUDE_DEPTH:
                chain = " -> ".join(p.name for p in (*self._chain, path))
                self.issue(where, f"includes go round in a circle or too deep: {chain}")
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                self.issue(where, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
                continue
            try:
                part = MapDocument(str(path), text, chain=self._chain)
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark or exc.context_mark
                line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
                self.issues.append(ConfigIssue(str(path), line, col, "", f"YAML syntax: {exc.problem or exc}"))
                continue
            self.included += [(str(path), text), *part.included]
            self._graft(part)

    def _graft(self, part: MapDocument) -> None:
        """``part``'s devices after this document's, its profiles beside this one's (a name defined twice
        is an error), every place with its file."""
        self.issues.extend(part.issues)
        if not isinstance(part.data, dict):
            self.issues.append(part.located((), f"an included file holds a mapping of {', '.join(INCLUDED_KEYS)}"))
            return
        for key in part.data:
            if key not in INCLUDED_KEYS:
                self.issues.append(part.located((str(key),), f"unknown key in an included file "
                                                             f"(it may hold {', '.join(INCLUDED_KEYS)})", key=True))
        for key, kind in (("devices", list), ("profiles", dict)):
            if key in part.data and not isinstance(part.data[key], kind):
                self.issues.append(part.located((key,), "a list of devices" if kind is list else
                                                "a mapping of profiles by name"))
        devices = part.data.get("devices")
        mine = self.data.setdefault("devices", [])
        if isinstance(devices, list) and devices and isinstance(mine, list):
            base = len(mine)
            mine.extend(devices)
            self._take_places(part, "devices", lambda rest: ("devices", base + int(rest[0]), *rest[1:]))
            for k in range(len(devices)):
                self.aliases.setdefault(("devices", base + k), part._shown(("devices", k)))
        defined = part.data.get("profiles")
        mine_profiles = self.data.setdefault("profiles", {})
        if isinstance(defined, dict) and defined and isinstance(mine_profiles, dict):
            for name, profile in defined.items():
                if name in mine_profiles:
                    self.issues.append(part.located(("profiles", str(name)), f"profile {name!r} is defined "
                                                                             "twice (also in another file)", key=True))
                    continue
                mine_profiles[name] = profile
            taken = {name for name in defined if mine_profiles.get(name) is defined[name]}
            self._take_places(part, "profiles", lambda rest: ("profiles", *rest),
                              only=lambda rest: rest[0] in taken)

    def _take_places(self, part: MapDocument, top: str, moved: Callable[[ConfigPath], ConfigPath],
                     only: Callable[[ConfigPath], bool] = lambda rest: True) -> None:
        """Copy ``part``'s marks under ``top`` (those ``only`` keeps) to where its data went in this document."""
        for source, target in ((part.marks, self.marks), (part.key_marks, self.key_marks)):
            for path, mark in source.items():
                if len(path) > 1 and path[0] == top and only(path[1:]):
                    new = moved(path[1:])
                    target[new] = mark
                    self.files[new] = part.files.get(path, part.file)
        self.from_env |= {moved(p[1:]) for p in part.from_env if len(p) > 1 and p[0] == top}
        self.aliases.update({moved(p[1:]): alias for p, alias in part.aliases.items() if len(p) > 1 and p[0] == top})

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
            defined = self.data.get("profiles")
            mine = defined.get(name) if isinstance(defined, dict) else None
            profile = mine if isinstance(mine, dict) else profiles.raw(name)
            if mine is not None and not isinstance(mine, dict):
                continue  # the model says what profiles.<name> should be
            if profile is None:
                known = sorted({*profiles.names(), *(defined if isinstance(defined, dict) else ())})
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
                self.issue((*here, "profile"), f"no profile {name!r}{hint}")
                continue
            layout = profile.get("device")
            layout = layout if isinstance(layout, dict) else {}
            for key, value in {"type": "power_meter", **layout}.items():  # as ProfileDevice's defaults
                device.setdefault(key, value)
            own = device.get("points", [])
            listed = profile.get("points")
            if not isinstance(own, list) or not isinstance(listed, list) or not all(
                    isinstance(p, dict) for p in listed):
                if not isinstance(own, list):
                    self.issue((*here, "points"), "a list of points (each overriding a profile's point of "
                                                  "its name, or a point of the device's own)")
                continue  # a profile's own mistakes: the model reports them at profiles.<name>
            self._unknown_overrides(here, name, listed, own)
            merged = profiles.merge_points(listed, own)
            device["points"] = [point for point, _, _ in merged]
            self._remap_points(here, name, isinstance(mine, dict), [(p, o) for _, p, o in merged])

    def _unknown_overrides(self, device: ConfigPath, profile: str, listed: list[dict[str, Any]],
                           own: list[Any]) -> None:
        """A device point without an address must name a point of the profile (it overrides it)."""
        names = [str(p.get("name")) for p in listed]
        for index, point in enumerate(own):
            # a misspelt key (adress) is the model's to name, with its own "did you mean"
            known = isinstance(point, dict) and set(point) <= POINT_KEYS
            if known and "address" not in point and str(point.get("name")) not in names:
                close = difflib.get_close_matches(str(point.get("name")), names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.issue((*device, "points", index, "name"),
                           f"{point.get('name')!r} is not a point of profile {profile}{hint}; a point of the "
                           "device's own needs its address")

    def _remap_points(self, device: ConfigPath, profile: str, user: bool,
                      origins: list[tuple[int | None, int | None]]) -> None:
        """Places and names of a device's merged points: the device's own where it wrote the point,
        else the map's own profile's point (``profiles.NAME.points[j]``), else, for a shipped profile,
        the device's ``profile:`` key, shown as ``devices[i].profile[NAME].points[j]``."""
        base = (*device, "points")
        shown = {at: self._shown((*base, own)) if own is not None else
                 format_path(("profiles", profile, "points", in_profile or 0)) if user else
                 f"{self._shown(device)}.profile[{profile}].points[{in_profile}]"
                 for at, (in_profile, own) in enumerate(origins)}
        saved_marks = self._cut(self.marks, base)
        saved_keys = self._cut(self.key_marks, base)
        saved_files = self._cut(self.files, base)
        for at, (in_profile, own) in enumerate(origins):
            self.aliases[(*base, at)] = shown[at]
            if own is None and not user:
                key = self._nearest((*device, "profile"))  # a merge key (<<: *anchor) has no mark of its own
                self.marks[(*base, at)] = self.marks.get(key, (1, 1))
                if key in self.files:
                    self.files[(*base, at)] = self.files[key]
                continue
            source = (*base, own) if own is not None else ("profiles", profile, "points", in_profile or 0)
            target = (*base, at)
            self._paste(self.marks, saved_marks if own is not None else self.marks, source, target)
            self._paste(self.key_marks, saved_keys if own is not None else self.key_marks, source, target)
            self._paste(self.files, saved_files if own is not None else self.files, source, target)

    @staticmethod
    def _cut(table: dict[ConfigPath, V], base: ConfigPath) -> dict[ConfigPath, V]:
        """Remove and return the entries below ``base``."""
        below = {path: value for path, value in table.items() if path[:len(base)] == base and len(path) > len(base)}
        for path in below:
            del table[path]
        return below

    @staticmethod
    def _paste(table: dict[ConfigPath, V], source_table: dict[ConfigPath, V], source: ConfigPath,
               target: ConfigPath) -> None:
        """Entries of ``source_table`` below ``source``, placed below ``target`` in ``table``."""
        for path, value in list(source_table.items()):
            if path[:len(source)] == source:
                table[(*target, *path[len(source):])] = value

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


