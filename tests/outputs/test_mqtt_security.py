"""The MQTT output over TLS with a password, against a private Mosquitto that requires both."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.buffer.disk import Pack
from agent.settings import MqttOutput
from agent.sinks.mqtt import MqttSink
from agent.sinks.mqtt.session import BrokerRefused
from drivers.base import Reading
from tests.helpers import wait_until
from tests.infra.certs import make_ca
from tests.infra.private_mosquitto import PrivateMosquitto
from tests.outputs.consumer import Host

T0 = 1_767_225_600.0


def sink(broker: PrivateMosquitto, tmp_path: Path, password: str, ca: Path) -> MqttSink:
    secret = tmp_path / f"pw-{password}"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    cfg = MqttOutput.model_validate({"type": "mqtt", "url": f"mqtts://127.0.0.1:{broker.port}", "username": "edge",
                                     "password_file": str(secret), "tls": {"ca": str(ca)}, "connect_timeout": "2s"})
    return MqttSink(cfg, "gw-tls", clock=lambda: T0)


def test_tls_with_a_password_publishes_and_wrong_settings_are_configuration_errors(tmp_path: Path) -> None:
    pki = make_ca(tmp_path / "pki", "mqtt-test-ca")
    other = make_ca(tmp_path / "other", "someone-else")
    broker = PrivateMosquitto(tmp_path / "broker", users={"edge": "right-horse", "host": "host-pw"},
                              tls={"cafile": pki["ca"], "certfile": pki["cert"], "keyfile": pki["key"]})
    broker.start()
    try:
        good = sink(broker, tmp_path, "right-horse", pki["ca"])
        try:
            good.write(Pack(readings=[Reading("m1", "v", int(T0 * 1e6), 1.0)]))
            assert good.session is not None and good.session.alive
        finally:
            good.close()
        for bad in (sink(broker, tmp_path, "wrong", pki["ca"]), sink(broker, tmp_path, "right-horse", other["ca"])):
            with pytest.raises(BrokerRefused) as refused:
                bad.write(Pack(readings=[Reading("m1", "v", int(T0 * 1e6), 1.0)]))
            assert bad.classify(refused.value) == "misconfigured"
            assert "right-horse" not in str(refused.value)
            bad.close()
    finally:
        broker.stop()
    log = (tmp_path / "broker" / "broker.log").read_text()
    assert "edge" in log  # the broker saw the gateway's user log in


def test_the_plain_listener_refuses_anonymous_clients_with_a_password_file(tmp_path: Path) -> None:
    broker = PrivateMosquitto(tmp_path / "broker", users={"edge": "pw"})
    broker.start()
    try:
        cfg = MqttOutput.model_validate({"type": "mqtt", "url": broker.url, "connect_timeout": "2s"})
        anonymous = MqttSink(cfg, "gw-anon", clock=lambda: T0)
        with pytest.raises(BrokerRefused):
            anonymous.write(Pack())
        anonymous.close()
        with Host(broker.port, username=("edge", "pw")) as host:
            wait_until(lambda: host.client.is_connected())
    finally:
        broker.stop()
