"""Device-map loading: precise errors with file:line:column and field path, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.central.engine import nodes_of
from agent.configload import ConfigError, load_config, load_config_text
from agent.settings import DetectionConfig, ModbusDevice, OpcUaDevice, OpcUaPoint, PointConfig

ROOT = Path(__file__).resolve().parents[2]

VALID = """\
gateway: {id: gw1}
defaults: {interval: 1s, timeout: 500ms}
devices:
  - id: meter-01
    host: 127.0.0.1
    port: 5020
    points:
      - {name: voltage_l1, table: holding, address: 0, type: float32, unit: V, role: voltage}
      - {name: breaker_closed, table: coil, address: 0, type: bool}
      - {name: energy_wh, table: input, address: 10, type: uint64, scale: 0.001, unit: kWh}
      - {name: status_bit3, table: holding, address: 20, type: bool, bit: 3}
"""


def errors_of(text: str, file: str = "plant.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, file)
    return [str(i) for i in info.value.issues]


def test_example_and_demo_maps_load() -> None:
    cfg = load_config_text(VALID)
    device = cfg.resolved(cfg.devices[0])
    assert (device.interval, device.timeout, device.byte_order) == (1.0, 0.5, "big")
    assert cfg.devices[0].points[2].register_count == 4
    for path in sorted((ROOT / "config").glob("*.yaml")):  # password files exist only where deployed
        assert load_config(path, check_secrets=False).devices, path


def test_misspelled_type_names_file_line_column_and_path() -> None:
    text = VALID.replace("type: float32", "type: flaot32")
    assert errors_of(text) == [
        "plant.yaml:8:62: devices[0].points[0].type: 'flaot32' is not one of 'int16', 'uint16', 'int32', "
        "'uint32', 'int64', 'uint64', 'float32', 'float64', 'bool' or 'string'"]


def test_unknown_key_is_refused_with_a_suggestion() -> None:
    text = VALID.replace("port: 5020", "prot: 5020")
    assert errors_of(text) == ["plant.yaml:6:5: devices[0].prot: unknown key (did you mean 'port'?)"]


def test_cross_field_rules_each_point_at_the_offending_field() -> None:
    text = VALID + """\
      - {name: voltage_l1, table: holding, address: 1, type: int32}
      - {name: label, table: holding, address: 40, type: string}
      - {name: flag, table: holding, address: 50, type: bool}
      - {name: trip, table: coil, address: 1, type: uint16}
      - {name: tail, table: holding, address: 65534, type: float64}
  - id: meter-01
    host: 127.0.0.1
    timeout: 3s
    points: [{name: a, address: 1}]
"""
    assert errors_of(text) == [
        "plant.yaml:12:16: devices[0].points[4].name: duplicate point name 'voltage_l1' (also points[0])",
        "plant.yaml:12:53: devices[0].points[4].address: overlaps voltage_l1 (holding 0..1)",
        "plant.yaml:13:9: devices[0].points[5].length: string points need length (registers)",
        "plant.yaml:14:9: devices[0].points[6].bit: a bool point of a register table needs bit (0-15)",
        "plant.yaml:15:53: devices[0].points[7].type: coil points must be type bool",
        "plant.yaml:16:47: devices[0].points[8].address: point ends at address 65537, past 65535",
        "plant.yaml:17:9: devices[1].id: duplicate device id 'meter-01' (also devices[0])",
        "plant.yaml:19:14: devices[1].timeout: timeout 3s exceeds the poll interval 1s",
    ]


def test_status_word_and_its_bits_may_share_a_register() -> None:
    text = VALID + "      - {name: status, table: holding, address: 20, type: uint16}\n"
    assert len(load_config_text(text).devices[0].points) == 5


def test_environment_substitution_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANT_HOST", "10.1.2.3")
    monkeypatch.delenv("MISSING_URL", raising=False)
    text = VALID.replace("host: 127.0.0.1", "host: ${PLANT_HOST}") + \
        "central: {url: '${MISSING_URL:-sqlite:///x.db}'}\n"
    cfg = load_config_text(text)
    assert cfg.devices[0].host == "10.1.2.3"
    assert cfg.central.url == "sqlite:///x.db"


def test_unset_environment_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HACKSKY_DATABASE_URL", raising=False)
    text = VALID + "central: {url: '${HACKSKY_DATABASE_URL}'}\n"
    assert errors_of(text) == [
        "plant.yaml:12:16: central.url: environment variable HACKSKY_DATABASE_URL is not set "
        "(use ${HACKSKY_DATABASE_URL:-default} for a default)"]


def test_password_inline_in_yaml_is_refused_but_allowed_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    text = VALID + "central: {url: 'mysql+pymysql://edge:s3cret@db:3306/hacksky'}\n"
    (error,) = errors_of(text)
    assert "central.url: contains a password" in error and "s3cret" not in error
    monkeypatch.setenv("DB_URL", "mysql+pymysql://edge:s3cret@db:3306/hacksky")
    assert load_config_text(VALID + "central: {url: '${DB_URL}'}\n").central.url.endswith("/hacksky")


def test_yaml_syntax_error_and_duplicate_keys() -> None:
    (syntax,) = errors_of("gateway: {id: gw1\ndevices: []\n")
    assert syntax.startswith("plant.yaml:2:") and "YAML syntax" in syntax
    assert errors_of("gateway: {id: a}\ngateway: {id: b}\n") == ["plant.yaml:2:1: gateway: duplicate key 'gateway'"]


def test_durations_and_sizes() -> None:
    extra = "buffer: {max_size: 512MiB, commit_interval: 250ms}\ncentral: {flush_interval: 2m}\n"
    cfg = load_config_text(VALID + extra)
    assert cfg.buffer.max_size == 512 * 2**20
    assert cfg.buffer.commit_interval == 0.25
    assert cfg.central.flush_interval == 120.0
    (error,) = errors_of(VALID + "buffer: {max_size: lots}\n")
    assert error.startswith("plant.yaml:12:20: buffer.max_size:") and "not a size" in error


def test_unreadable_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml:1:1: cannot read"):
        load_config(tmp_path / "missing.yaml")


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 70000), st.floats(allow_nan=False),
                     st.text(max_size=8), st.sampled_from(["1s", "float32", "coil", "big", "-1", "0ms"]))
_keys = st.sampled_from(["gateway", "id", "devices", "points", "host", "port", "type", "address", "table",
                         "name", "bit", "length", "interval", "timeout", "central", "url", "buffer",
                         "max_size", "defaults", "word_order", "bogus"])
_trees = st.recursive(_scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(_keys, children, max_size=5)), max_leaves=25)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=st.dictionaries(_keys, _trees, max_size=5))
def test_generated_maps_load_or_fail_with_located_errors(tree: dict) -> None:
    text = yaml.safe_dump(tree)
    try:
        load_config_text(text, "gen.yaml")
    except ConfigError as exc:
        assert exc.issues
        for issue in exc.issues:
            assert str(issue).startswith("gen.yaml:") and issue.line >= 1 and issue.message


def test_detection_wiring_errors_name_line_and_field(tmp_path: Path) -> None:
    plant = VALID + ("detection:\n  model: builtin:water-plant\n"
                     "  signals: {tank1_level: meter-01/nope, pump1_flow: voltage_l1}\n  clock: meter-01/missing\n")
    errors = errors_of(plant)
    assert "plant.yaml:14:26: detection.signals.tank1_level: no point 'nope' on an enabled device 'meter-01'" in errors
    assert "plant.yaml:14:53: detection.signals.pump1_flow: 'voltage_l1' is not device/point" in errors
    assert "plant.yaml:15:10: detection.clock: no point 'missing' on an enabled device 'meter-01'" in errors
    assert any("detection.signals: model signal 'outflow' has no point of that name" in e for e in errors)
    missing = VALID + f"detection: {{model: {tmp_path / 'none.npz'}}}\n"
    (error,) = errors_of(missing)
    assert error.startswith("plant.yaml:12:20: detection.model: cannot use the model:") and "none.npz" in error


OPCUA = """\
gateway: {id: gw1}
devices:
  - id: ua
    protocol: opcua
    endpoint: opc.tcp://10.0.0.5:4840
    security: {policy: Basic256Sha256}
    username: edge
    password: hunter2
    points:
      - {name: level, node: "ns=2;s=Plant.Tank1.Level", path: /Objects/2:Plant}
      - {name: flow, path: Plant/Flow}
      - {name: level, node: "i=2258", sampling_interval: 100ms, deadbnd: {value: 1}}
"""


def test_opcua_device_errors_name_line_and_field() -> None:
    errors = errors_of(OPCUA)
    assert "plant.yaml:8:5: devices[0].password: secrets never go in the YAML: use password_file or " \
           "password_env" in errors
    assert "plant.yaml:12:65: devices[0].points[2].deadbnd: unknown key (did you mean 'deadband'?)" in errors
    fixed = OPCUA.replace("password: hunter2", "password_file: /etc/hacksky-edge/ua.pass").replace(
        "deadbnd", "deadband")
    errors = errors_of(fixed)
    assert "plant.yaml:10:9: devices[0].points[0]: give exactly one of node (a NodeId) or path " \
           "(a browse path from /Objects)" in errors
    assert any("devices[0].points[1].path: a browse path starts at /Objects/" in e for e in errors)
    assert any("devices[0].points[2].name: duplicate point name 'level'" in e for e in errors)
    assert any("devices[0].security.mode: policy Basic256Sha256 needs mode Sign or SignAndEncrypt" in e
               for e in errors)
    assert any("devices[0].security.certificate: a client certificate and private_key are needed" in e
               for e in errors)


def test_strings_longer_than_their_database_column_are_refused_with_the_limit() -> None:
    text = VALID.replace("  - id: meter-01\n", f"  - id: meter-01\n    name: {'N' * 129}\n    location: Hall 1\n")
    assert errors_of(text) == [
        "plant.yaml:5:11: devices[0].name: is 129 characters long; at most 128 fit "
        "(stored centrally in devices.name)"]
    long_point = VALID.replace("name: voltage_l1", f"name: {'v' * 65}")
    (error,) = errors_of(long_point)
    assert error.startswith("plant.yaml:8:16: devices[0].points[0].name: is 65 characters long; at most 64 fit")
    assert len(load_config_text(text.replace("N" * 129, "N" * 128)).devices[0].name or "") == 128


def test_every_stored_config_string_is_limited_to_its_column_length() -> None:
    from agent.central import schema
    from agent.settings import AgentConfig, DeviceBase, DeviceType, GatewayConfig

    def stored_fields(model: type) -> list[tuple[str, int, int]]:
        out = []
        for name, field in model.model_fields.items():
            extra = field.json_schema_extra
            if isinstance(extra, dict) and "column" in extra:
                table, column = str(extra["column"]).split(".")
                limit = next(m.max_length for m in field.metadata if hasattr(m, "max_length"))
                out.append((f"{model.__name__}.{name}", limit, schema.metadata.tables[table].c[column].type.length))
        return out

    fields = [f for model in (GatewayConfig, DeviceBase, ModbusDevice, OpcUaDevice, PointConfig, OpcUaPoint,
                              DetectionConfig) for f in stored_fields(model)]
    names = {name for name, _, _ in fields}
    assert {"GatewayConfig.id", "DeviceBase.id", "DeviceBase.name", "DeviceBase.location", "ModbusDevice.host",
            "OpcUaDevice.endpoint", "PointConfig.name", "OpcUaPoint.name", "DetectionConfig.target_system"} <= names
    for name, limit, column in fields:
        # the Modbus address is stored as [rtu://]host:port/unit: room for "rtu://" and ":65535/255"
        expected = column - len("rtu://:65535/255") if name == "ModbusDevice.host" else column
        assert limit == expected, name
    assert max(map(len, DeviceType.__args__)) <= schema.devices.c.type.type.length
    assert AgentConfig.model_fields["gateway"].annotation is GatewayConfig


def test_alert_keys_too_long_for_the_database_are_refused() -> None:
    text = VALID.replace("gw1", "g" * 60).replace("meter-01", "m" * 60).replace(
        "name: voltage_l1", f"name: {'v' * 60}, limits: {{max: 250}}")
    (error,) = errors_of(text)
    assert error.startswith("plant.yaml:8:16: devices[0].points[0].name: gateway id, device id and point name are "
                            "180 characters together; alerts on this point need at most 166")
    assert load_config_text(text.replace(", limits: {max: 250}", "")).devices  # no check, no alert key


@pytest.mark.parametrize("host", ['""', "''", '"plc 1"'])
def test_empty_or_malformed_modbus_host_is_refused(host: str) -> None:
    (error,) = errors_of(VALID.replace("host: 127.0.0.1", f"host: {host}"))
    assert error.startswith("plant.yaml:5:11: devices[0].host: ")
    assert "must not be empty" in error or "is not a host name or IP address" in error


@pytest.mark.parametrize(("endpoint", "why"), [
    ("opc.tcp://", "names no host"), ("opc.tcp://:4840/plc", "names no host"),
    ("opc.tcp:///plc", "names no host"), ("opc.tcp://plc:port/x", "is not a valid URL"),
    ("opc.tcp://[::1", "Invalid IPv6 URL"),
    ("http://plc:4840", "is not an OPC UA endpoint")])
def test_opcua_endpoint_without_a_host_is_refused(endpoint: str, why: str) -> None:
    text = f"""\
gateway: {{id: gw1}}
devices:
  - {{id: ua, protocol: opcua, endpoint: "{endpoint}", points: [{{name: a, node: "i=1"}}]}}
"""
    (error,) = errors_of(text)
    assert error.startswith("plant.yaml:3:41: devices[0].endpoint: ") and why in error


def test_failover_nodes_are_host_and_port_of_a_mysql_database() -> None:
    mysql = "gateway: {id: gw1}\ncentral: {url: 'mysql+pymysql://edge@db1:3306/hacksky', failover: [db2, 'db3:3307']}\n"
    cfg = load_config_text(VALID.replace("gateway: {id: gw1}\n", mysql))
    assert nodes_of(cfg.central) == [("db1", 3306), ("db2", 3306), ("db3", 3307)]
    (error,) = errors_of(VALID.replace("gateway: {id: gw1}\n", "gateway: {id: gw1}\ncentral: {failover: [db2]}\n"))
    assert error == ("plant.yaml:2:21: central.failover: lists further nodes of a MySQL/MariaDB database; "
                     "sqlite has none")
    (error,) = errors_of(VALID.replace("gateway: {id: gw1}\n", mysql.replace("'db3:3307'", "'db3/x'")))
    assert error.startswith("plant.yaml:2:") and "central.failover[1]" in error


def test_wrong_protocol_names_the_choices_not_pydantic_internals() -> None:
    text = VALID.replace("port: 5020", "port: 5020\n    protocol: modbsu")
    assert errors_of(text) == ["plant.yaml:7:15: devices[0].protocol: 'modbsu' is not one of: modbus, opcua"]


def test_inherited_timeout_is_capped_at_a_shorter_interval() -> None:
    fast = VALID.replace("    port: 5020\n", "    port: 5020\n    interval: 100ms\n")
    for defaults in ("defaults: {interval: 1s}", "defaults: {interval: 1s, timeout: 800ms}"):
        cfg = load_config_text(fast.replace("defaults: {interval: 1s, timeout: 500ms}", defaults))
        assert cfg.enabled_devices()[0].timeout == 0.1, defaults
    cfg = load_config_text(VALID.replace("defaults: {interval: 1s, timeout: 500ms}", "defaults: {interval: 200ms}"))
    assert cfg.enabled_devices()[0].timeout == 0.2
    assert load_config_text(VALID).enabled_devices()[0].timeout == 0.5, "a shorter default is kept"
    # a timeout written above its interval is still refused, on the device or in defaults
    (device,) = errors_of(fast.replace("interval: 100ms", "interval: 100ms\n    timeout: 200ms"))
    assert device == "plant.yaml:8:14: devices[0].timeout: timeout 0.2s exceeds the poll interval 0.1s"
    (defaults,) = errors_of(VALID.replace("timeout: 500ms", "timeout: 2s"))
    assert defaults == "plant.yaml:2:35: defaults.timeout: timeout 2s exceeds the poll interval 1s"


def test_a_modbus_devices_own_register_layout_overrides_the_defaults_and_opcua_inherits_them() -> None:
    text = VALID.replace("timeout: 500ms}", "timeout: 500ms, word_order: little, max_gap: 3}").replace(
        "    port: 5020\n", "    port: 5020\n    byte_order: little\n    max_gap: 0\n") + """\
  - {id: ua, protocol: opcua, endpoint: "opc.tcp://plc:4840", points: [{name: a, node: "i=1"}]}
"""
    modbus, opcua = load_config_text(text).enabled_devices()
    assert (modbus.byte_order, modbus.word_order, modbus.max_gap) == ("little", "little", 0)
    assert (opcua.byte_order, opcua.word_order, opcua.max_gap) == ("big", "little", 3)


UA_LOGIN = """\
gateway: {id: gw1}
devices:
  - id: ua
    protocol: opcua
    endpoint: opc.tcp://10.0.0.5:4840
    security: {policy: Basic256Sha256, mode: MODE, certificate: /pki/cert.der, private_key: /pki/key.pem}
    username: edge
    password_env: UA_PASSWORD
    points: [{name: level, node: "i=2258"}]
"""


@pytest.mark.parametrize("mode", ["None", "Sign"])
def test_username_login_without_encryption_is_refused(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UA_PASSWORD", "s3cret")
    text = UA_LOGIN.replace("mode: MODE", f"mode: {mode}")
    if mode == "None":
        text = text.replace("policy: Basic256Sha256", "policy: None")
    assert errors_of(text) == [
        f"plant.yaml:7:15: devices[0].username: a username login over security mode {mode} sends the password "
        "readable on the wire: use security mode SignAndEncrypt (or set allow_plaintext_password: true)"]
    allowed = load_config_text(text.replace("username: edge", "username: edge\n    allow_plaintext_password: true"))
    assert allowed.devices[0].allow_plaintext_password is True  # type: ignore[union-attr]
    assert load_config_text(UA_LOGIN.replace("mode: MODE", "mode: SignAndEncrypt")).devices


def test_malformed_json_device_map_names_line_and_column(tmp_path: Path) -> None:
    plant = tmp_path / "plant.json"
    plant.write_text('{"gateway": {"id": "gw1"},\n "devices": [\n  {"id": "m" "host": "h"}\n ]}\n')
    with pytest.raises(ConfigError) as info:
        load_config(plant)
    (issue,) = info.value.issues
    assert (issue.file, issue.line) == (str(plant), 3) and issue.column > 1 and "YAML syntax" in issue.message
