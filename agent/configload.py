"""Load a YAML device map: environment substitution, validation, precise error locations.

Every problem is reported as ``file:line:column: field.path: message`` and the whole list
is raised at once as :class:`ConfigError`, never as a traceback.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from agent.central.engine import redact_url, secret_params
from agent.mapdoc import ConfigError, ConfigIssue, MapDocument
from agent.settings import (
    ENV_NAME_PATTERN,
    HOST_PATTERN,
    MQTT_URL_PATTERN,
    NAME_PATTERN,
    OPCUA_ENDPOINT_PATTERN,
    AgentConfig,
    SignalConfig,
)
from agent.sources import SOURCES, ConfigPath, source_for

log = logging.getLogger(__name__)

#: alerts.event_key (191) less ``/limit/``, ``/`` and ``/<16-digit time>``: left for gateway, device and point
EVENT_KEY_NAMES = 191 - len("/limit/") - len("/") - len("/1767225600000000")
#: password files already warned about (loose mode): once per process, not at every reload
_warned_modes: set[Path] = set()


#: what a value that does not match a field's pattern should have been
_PATTERN_MEANING = {
    NAME_PATTERN: "is not a valid name (1-64 letters, digits, _ . : -; not starting with . : -)",
    HOST_PATTERN: "is not a host name or IP address",
    ENV_NAME_PATTERN: "is not an environment variable name",
    OPCUA_ENDPOINT_PATTERN: "is not an OPC UA endpoint (opc.tcp://host:4840/path)",
}


def _pydantic_message(error: ErrorDetails, field: FieldInfo | None) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "literal_error":
        return f"{error['input']!r} is not one of {ctx['expected']}"
    if kind == "union_tag_invalid":  # the device's protocol names no device model
        return f"{ctx['tag']!r} is not one of: {', '.join(SOURCES)}"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_pattern_mismatch" and ctx["pattern"] == MQTT_URL_PATTERN:  # the input may hold a password
        return ("is not a broker URL (mqtt://host:1883 or mqtts://host:8883; the user goes in username, "
                "the password in password_file)")
    if kind == "string_pattern_mismatch":
        meaning = _PATTERN_MEANING.get(ctx["pattern"], f"does not match {ctx['pattern']}")
        return f"{error['input']!r} {meaning}"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "string_too_long":
        extra = field.json_schema_extra if field is not None else None
        column = extra.get("column") if isinstance(extra, dict) else None
        where = f" (stored centrally in {column})" if column else ""
        return f"is {len(str(error['input']))} characters long; at most {ctx['max_length']} fit{where}"
    return str(error["msg"])


def _suggestion(model_fields: Iterable[str], key: str) -> str:
    close = difflib.get_close_matches(key, list(model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_fields_at(loc: ConfigPath, root: Any = AgentConfig) -> Iterable[str]:
    """Field names valid at the parent of ``loc`` (as pydantic tags it), for 'did you mean' hints."""
    model = _model_at(loc[:-1], root)
    return model.model_fields.keys() if model is not None else []


def _field_at(loc: ConfigPath, root: Any = AgentConfig) -> FieldInfo | None:
    """The model field at ``loc`` (as pydantic tags it), if there is one."""
    model = _model_at(loc[:-1], root)
    return model.model_fields.get(str(loc[-1])) if model is not None and loc else None


def _model_at(loc: ConfigPath, root: Any = AgentConfig) -> Any:
    """The model class validating the value at ``loc`` (as pydantic tags it, from ``root``), or None."""
    model: Any = root
    parts = list(loc)
    i = 0
    while i < len(parts):
        part = parts[i]
        if model is AgentConfig and part == "devices":  # devices.<index>.<protocol>: its source's model
            tag = parts[i + 2] if i + 2 < len(parts) else None
            if not isinstance(tag, str) or tag not in SOURCES:
                return None
            model, i = SOURCES[tag].model, i + 3
            continue
        i += 1
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        model = next((c for c in candidates if isinstance(c, type) and hasattr(c, "model_fields")), None)
        if model is None:
            return None
    return model


def _duplicate_names(points: Sequence[SignalConfig], base: ConfigPath) -> list[tuple[ConfigPath, str]]:
    """A point name used twice on one device (whatever the protocol)."""
    issues: list[tuple[ConfigPath, str]] = []
    names: dict[str, int] = {}
    for index, point in enumerate(points):
        if point.name in names:
            issues.append(((*base, "points", index, "name"),
                           f"duplicate point name {point.name!r} (also points[{names[point.name]}])"))
        names.setdefault(point.name, index)
    return issues


def _event_key_issues(gateway: str, device: str, points: Sequence[SignalConfig],
                      base: ConfigPath) -> list[tuple[ConfigPath, str]]:
    """An alert's key ``gateway/check/device/point/time`` must fit alerts.event_key."""
    issues: list[tuple[ConfigPath, str]] = []
    for index, point in enumerate(points):
        checked = point.limits is not None or point.stuck_after is not None or point.max_rate is not None
        length = len(gateway) + len(device) + len(point.name)
        if checked and length > EVENT_KEY_NAMES:
            issues.append(((*base, "points", index, "name"),
                           f"gateway id, device id and point name are {length} characters together; alerts on "
                           f"this point need at most {EVENT_KEY_NAMES} (stored centrally in alerts.event_key)"))
    return issues


def semantic_issues(cfg: AgentConfig) -> list[tuple[ConfigPath, str]]:
    """Cross-field rules pydantic cannot express field by field."""
    issues: list[tuple[ConfigPath, str]] = []
    d = cfg.defaults
    if "timeout" in d.model_fields_set and d.timeout > d.interval:
        issues.append((("defaults", "timeout"), f"timeout {d.timeout:g}s exceeds the poll interval {d.interval:g}s"))
    seen: dict[str, int] = {}
    for index, device in enumerate(cfg.devices):
        here: ConfigPath = ("devices", index)
        if device.id in seen:
            issues.append(((*here, "id"), f"duplicate device id {device.id!r} (also devices[{seen[device.id]}])"))
        seen.setdefault(device.id, index)
        resolved = cfg.resolved(device)
        if device.timeout is not None and device.timeout > resolved.interval:
            issues.append(((*here, "timeout"),
                           f"timeout {resolved.timeout:g}s exceeds the poll interval {resolved.interval:g}s"))
        issues.extend(_duplicate_names(device.points, here))
        issues.extend(_event_key_issues(cfg.gateway.id, device.id, device.points, here))
        issues.extend(source_for(device.protocol).map_issues(device, here))
    by_protocol: dict[str, list[tuple[ConfigPath, Any]]] = {}
    for index, device in enumerate(cfg.devices):
        by_protocol.setdefault(device.protocol, []).append((("devices", index), device))
    for protocol, devices in by_protocol.items():
        issues.extend(source_for(protocol).across(devices))
    return issues + _feeder_issues(cfg) + _output_issues(cfg)


def _feeder_issues(cfg: AgentConfig) -> list[tuple[ConfigPath, str]]:
    """``feeder:`` names a power meter of the map, and feeders form no loop."""
    from agent.detect.meters.hierarchy import feeder_issues

    return list(feeder_issues(cfg.devices))


#: the buffer cursors the central sink may use (agent.sinks.build: ``central``, or ``null`` for null://)
CENTRAL_CURSORS = ("central", "null")


def _output_issues(cfg: AgentConfig) -> list[tuple[ConfigPath, str]]:
    """Each output has a name of its own (its buffer cursor) and TLS only where the URL asks for it."""
    issues: list[tuple[ConfigPath, str]] = []
    names = dict.fromkeys(CENTRAL_CURSORS, "central")
    clients: dict[tuple[str, str], int] = {}
    for index, output in enumerate(cfg.outputs):
        here: ConfigPath = ("outputs", index)
        if output.name in names:
            issues.append(((*here, "name"), f"output name {output.name!r} is taken (also {names[output.name]}): "
                                            "give each output a name of its own"))
        names.setdefault(output.name, f"outputs[{index}]")
        if output.tls is not None and not output.url.startswith("mqtts://"):
            issues.append(((*here, "tls"), "tls is set but the url is mqtt://: use mqtts://"))
        if (output.password_file is None) != (output.username is None):
            field = "password_file" if output.password_file is None else "username"
            issues.append(((*here, field), "username and password_file go together"))
        if output.password_file is not None and output.url.startswith("mqtt://") \
                and not output.allow_plaintext_password:
            issues.append(((*here, "url"), "a password over mqtt:// travels in clear text: use mqtts:// (and tls:), "
                                           "or set allow_plaintext_password: true"))
        for key in ("ca", "cert", "key"):
            path = getattr(output.tls, key, None) if output.tls is not None else None
            if path is not None and not os.access(path, os.R_OK):
                issues.append(((*here, "tls", key), f"cannot read {path}"))
        client = output.client_id_for(cfg.gateway.id)
        other = clients.get((output.url, client))
        if other is not None:
            issues.append(((*here, "client_id"), f"client id {client!r} is also outputs[{other}]'s on this broker: "
                                                 "each would take the other's session"))
        clients.setdefault((output.url, client), index)
    return issues


def _detection_issues(cfg: AgentConfig) -> list[tuple[ConfigPath, str]]:
    """The model must be readable and every one of its signals wired to a point."""
    from agent.detect.builtin import builtin_signals
    from agent.detect.model import DetectorModel
    from agent.detect.wiring import wire

    det = cfg.detection
    if det is None:
        return []
    signals = builtin_signals(det.model)
    if signals is None:
        if det.model.startswith("builtin:"):
            return [(("detection", "model"),
                     f"unknown built-in model {det.model!r} (builtin:water-plant, builtin:ctown)")]
        try:
            signals = DetectorModel.load(det.model).signals
        except (OSError, ValueError) as exc:
            return [(("detection", "model"), f"cannot use the model: {exc}")]
    return wire(det, cfg.devices, signals)[2]


def _url_issues(doc: MapDocument, cfg: AgentConfig) -> list[tuple[ConfigPath, str]]:
    """The central URL parses and, when written in the YAML, holds no password."""
    here: ConfigPath = ("central", "url")
    try:
        url = make_url(cfg.central.url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return [(here, f"{redact_url(cfg.central.url)!r} is not a database URL "
                       "(dialect+driver://user@host:port/database, e.g. mysql+pymysql://edge@db:3306/hacksky)")]
    if cfg.central.failover and url.get_backend_name() not in ("mysql", "mariadb"):
        return [(("central", "failover"), f"lists further nodes of a MySQL/MariaDB database; "
                                          f"{url.get_backend_name()} has none")]
    if here in doc.from_env:
        return []
    if url.password:
        return [(here, "contains a password; secrets never go in YAML: use password_file or ${ENV_VAR}")]
    params = secret_params(url)
    if params:
        return [(here, f"query parameter {params[0]}= holds a secret; secrets never go in YAML: "
                       "use password_file or ${ENV_VAR}")]
    return []


def _password_sources(cfg: AgentConfig) -> list[tuple[ConfigPath, Path | None, str | None]]:
    """Every place the map takes a password from: (field, file, environment variable)."""
    sources: list[tuple[ConfigPath, Path | None, str | None]] = []
    if cfg.central.password_file is not None:
        sources.append((("central", "password_file"), cfg.central.password_file, None))
    sources.extend((("outputs", index, "password_file"), output.password_file, None)
                   for index, output in enumerate(cfg.outputs) if output.password_file is not None)
    for index, device in enumerate(cfg.devices):
        if device.enabled:
            sources.extend((("devices", index, field), file, env)
                           for field, file, env in source_for(device.protocol).passwords(device))
    return sources


def _password_file_problem(path: Path) -> tuple[str | None, str | None]:
    """(error, warning) about the password file at ``path``; the warning is for loose permissions."""
    try:
        mode = path.stat().st_mode
        with path.open(encoding="utf-8") as f:
            empty = not f.read().strip()
    except FileNotFoundError:
        return (f"{path} does not exist: create it with `install -m 0600 /dev/null {path}` "
                "(owned by the user the agent runs as) and write the password in it"), None
    except IsADirectoryError:
        return f"{path} is a directory, not a file holding the password", None
    except PermissionError:
        return f"{path} cannot be read by this user: the agent's user must be able to read it", None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a NUL in the path
        return f"{path} cannot be read: {exc}", None
    if empty:
        return f"{path} is empty: write the password in it", None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return None, (f"{path} is readable by group or others (mode {stat.S_IMODE(mode):04o}): "
                      f"`chmod 0600 {path}`")
    return None, None


def _password_issues(doc: MapDocument, cfg: AgentConfig) -> list[tuple[ConfigPath, str]]:
    """Every password the map refers to can be read now; loose file modes are warned about once."""
    issues: list[tuple[ConfigPath, str]] = []
    for here, file, env in _password_sources(cfg):
        if file is not None:
            error, warning = _password_file_problem(file)
            if error:
                issues.append((here, error))
            if warning and file.resolve() not in _warned_modes:
                _warned_modes.add(file.resolve())
                log.warning("%s", doc.located(here, warning))
        elif env is not None and not os.environ.get(env, "").strip():
            state = "is not set" if os.environ.get(env) is None else "is empty"
            issues.append((here, f"environment variable {env} {state}: set it to the password in the agent's "
                                 "environment (e.g. the EnvironmentFile of its systemd unit)"))
    return issues


def parse_document(text: str, file: str) -> MapDocument:
    """``text`` read as YAML with the place of every value; a syntax error raises :class:`ConfigError` at its place."""
    try:
        return MapDocument(file, text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ConfigError([ConfigIssue(file, line, col, "", f"YAML syntax: {exc.problem or exc}")]) from None


def validation_issues(doc: MapDocument, exc: ValidationError, root: type[BaseModel],
                      at: ConfigPath = ()) -> list[ConfigIssue]:
    """``root``'s validation errors (its data read from ``at`` in ``doc``), each placed in the file."""
    issues = []
    for error in exc.errors():
        tagged = tuple(error["loc"])
        message = _pydantic_message(error, _field_at(tagged, root))
        if error["type"] == "extra_forbidden":
            message += _suggestion(_model_fields_at(tagged, root), str(tagged[-1]))
        issues.append(doc.located((*at, *tagged), message, key=error["type"] == "extra_forbidden"))
    return issues


def load_config_text(text: str, file: str = "<string>", check_model: bool = True,
                     check_secrets: bool = True) -> AgentConfig:
    """Parse and validate a device map given as text; raise :class:`ConfigError`.

    ``check_secrets`` also requires every password file and variable the map names to be
    readable now (``status`` does without: it connects to nothing).
    """
    doc = parse_document(text, file)
    if not isinstance(doc.data, dict):
        raise ConfigError([ConfigIssue(file, 1, 1, "", "the device map must be a mapping with gateway, devices, ...")])
    if doc.issues:
        raise ConfigError(doc.issues)
    try:
        cfg = AgentConfig.model_validate(doc.data)
    except ValidationError as exc:
        for error in exc.errors():
            tagged = tuple(error["loc"])
            # drop the device model's tag: devices.0.opcua.points -> devices.0.points
            loc = tuple(p for i, p in enumerate(tagged)
                        if not (i == 2 and tagged[0] == "devices" and p in SOURCES))
            if error["type"] == "union_tag_invalid":
                loc = (*loc, "protocol")
            message = _pydantic_message(error, _field_at(tagged))
            if error["type"] == "extra_forbidden" and loc[-1] == "password":
                message = "secrets never go in the YAML: use password_file or password_env"
            elif error["type"] == "extra_forbidden":
                message += _suggestion(_model_fields_at(tagged), str(loc[-1]))
            doc.issue(loc, message, key=error["type"] == "extra_forbidden")
        raise ConfigError(doc.issues) from None
    model_issues = _detection_issues(cfg) if check_model else []
    secret_issues = _password_issues(doc, cfg) if check_secrets else []
    for path, message in semantic_issues(cfg) + _url_issues(doc, cfg) + secret_issues + model_issues:
        doc.issue(path, message)
    if doc.issues:
        raise ConfigError(doc.issues)
    digest = hashlib.sha256(text.encode())
    for name, included in doc.included:  # an included file's change is a change of the map
        digest.update(f"\n# include {name}\n{included}".encode())
    cfg._source_sha256 = digest.hexdigest()
    return cfg


def load_config(path: str | Path, check_model: bool = True, check_secrets: bool = True) -> AgentConfig:
    """Load the device map at ``path``; relative buffer paths stay relative to the cwd.

    ``check_model=False`` skips loading the detection model (``train`` is about to write it);
    ``check_secrets=False`` skips reading the password files and variables.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue(str(file), 1, 1, "", f"cannot read: {exc.strerror}")]) from None
    return load_config_text(text, str(file), check_model, check_secrets)
