"""Stands in for the ThingsBoard server on a local MQTT broker, for the peer benchmark.

Answers the gateway's ``getSessionLimits`` RPC (no limits) so that it starts publishing, and
counts the data points it publishes on ``v1/gateway/telemetry``; the totals are written to
``--out`` as JSON every half second. Runs in the peer's virtualenv (it needs only paho-mqtt).
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt  # type: ignore[import-not-found,unused-ignore]

LIMITS = {"maxPayloadSize": 10_000_000, "maxInflightMessages": 10_000,
          "rateLimits": {"messages": "0:0,", "telemetryMessages": "0:0,", "telemetryDataPoints": "0:0,"},
          "gatewayRateLimits": {"messages": "0:0,", "telemetryMessages": "0:0,", "telemetryDataPoints": "0:0,"}}


class Counter:
    """Points and messages seen, and when the first and last point came."""

    def __init__(self) -> None:
        self.points = self.messages = self.limit_requests = 0
        self.lock = threading.Lock()

    def on_message(self, client: Any, _userdata: Any, msg: Any) -> None:
        if msg.topic.startswith("v1/devices/me/rpc/request/"):
            request = json.loads(msg.payload)
            if request.get("method") == "getSessionLimits":
                self.limit_requests += 1
                client.publish("v1/devices/me/rpc/response/" + msg.topic.rsplit("/", 1)[1], json.dumps(LIMITS), qos=1)
            return
        doc = json.loads(msg.payload)
        points = 0
        for entries in doc.values():  # {"device": [{"ts": .., "values": {..}}] or {"values": ..} or {k: v}}
            for entry in entries if isinstance(entries, list) else [entries]:
                values = entry.get("values", entry) if isinstance(entry, dict) else {}
                points += len(values)
        with self.lock:
            self.points += points
            self.messages += 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mqtt_stub", description=__doc__)
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    counter = Counter()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hacksky-bench-tb-stub")
    client.on_message = counter.on_message
    client.connect("127.0.0.1", args.port)
    client.subscribe([("v1/devices/me/rpc/request/+", 1), ("v1/gateway/telemetry", 1)])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client.loop_start()
    while not stop.wait(0.5):
        with counter.lock:
            doc = {"at": time.monotonic(), "points": counter.points, "messages": counter.messages,
                   "limit_requests": counter.limit_requests}
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(args.out)
    client.loop_stop()
    client.disconnect()


if __name__ == "__main__":
    main()
