"""The ``outputs:`` section: what a plant engineer may get wrong is named with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.configload import ConfigError, load_config_text
from agent.pipeline.service import device_info

MAP = """\
gateway: {id: gw1}
devices:
  - id: meter-01
    host: 127.0.0.1
    points:
      - {name: voltage, address: 0, type: float32, unit: V}
      - {name: breaker, table: coil, address: 0, type: bool}
      - {name: model, address: 10, type: string, length: 4}
outputs:
"""


def errors_of(outputs: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(MAP + outputs, "plant.yaml")
    return [str(i) for i in info.value.issues]


def test_a_valid_output_and_the_points_it_announces(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt.pw"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    ca = tmp_path / "plant-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    cfg = load_config_text(MAP + f"""\
  - {{type: mqtt, url: "mqtts://broker.plant:8883", username: edge, password_file: {secret}, tls: {{ca: {ca}}}}}
  - {{type: mqtt, name: uns, url: "mqtts://broker.plant:8883", format: json}}
""")
    first, second = cfg.outputs
    assert (first.name, first.host_port, first.qos, first.format) == ("mqtt", ("broker.plant", 8883), 1, "sparkplug_b")
    assert (second.name, second.host_port) == ("uns", ("broker.plant", 8883))
    assert (first.client_id_for("gw1"), second.client_id_for("gw1")) == ("hacksky-edge-gw1", "hacksky-edge-gw1-uns")
    points = device_info(cfg.enabled_devices()[0]).points
    assert [(p.name, p.kind, p.unit) for p in points] == [("voltage", "number", "V"), ("breaker", "boolean", None),
                                                         ("model", "text", None)]


def test_mistakes_in_a_field_are_named_where_they_are_and_never_echo_a_password() -> None:
    errors = errors_of("""\
  - {type: mqtt, url: "mqtt://edge:pw@broker:1883"}
  - {type: mqtt, name: uns, url: "mqtt://broker", qos: 2}
""")
    assert errors == [
        "plant.yaml:10:23: outputs[0].url: is not a broker URL (mqtt://host:1883 or mqtts://host:8883; "
        "the user goes in username, the password in password_file)",
        "plant.yaml:11:56: outputs[1].qos: 2 is not one of 0 or 1"]


def test_rules_across_fields_and_outputs(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("pw\n")
    secret.chmod(0o600)
    errors = errors_of(f"""\
  - {{type: mqtt, name: central, url: "mqtt://broker", tls: {{ca: /x.pem}}}}
  - {{type: mqtt, name: uns, url: "mqtt://broker", username: edge}}
  - {{type: mqtt, name: uns, url: "mqtt://other"}}
  - {{type: mqtt, name: plain, url: "mqtt://other", username: edge, password_file: {secret}}}
  - {{type: mqtt, name: tls, url: "mqtts://other", tls: {{ca: {tmp_path / "missing.pem"}}}}}
  - {{type: mqtt, name: again, url: "mqtt://other", client_id: hacksky-edge-gw1-uns}}
""")
    assert any(e.startswith("plant.yaml:10:") and "outputs[0].name" in e and "taken" in e for e in errors), errors
    assert any("outputs[0].tls" in e and "mqtts://" in e for e in errors), errors
    assert any("outputs[1].password_file" in e and "go together" in e for e in errors), errors
    assert any(e.startswith("plant.yaml:12:") and "outputs[2].name" in e and "outputs[1]" in e for e in errors), errors
    assert any("outputs[3].url" in e and "clear text" in e for e in errors), errors
    assert any("outputs[4].tls.ca" in e and "cannot read" in e for e in errors), errors
    assert any("outputs[5].client_id" in e and "outputs[2]" in e for e in errors), errors


def test_an_unreadable_password_file_is_refused_at_load(tmp_path: Path) -> None:
    errors = errors_of(f'  - {{type: mqtt, url: "mqtt://broker", username: edge, password_file: {tmp_path / "no"}}}\n')
    assert any("outputs[0].password_file" in e for e in errors), errors
