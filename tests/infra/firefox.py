"""Headless Firefox (Debian's ``firefox-esr``) driven over WebDriver BiDi, the W3C protocol Firefox
serves itself (``--remote-debugging-port``): no geckodriver, which no registry this project uses
ships for Linux. Enough for the dashboard's tests: open a page, evaluate script, collect the
console's errors, take a screenshot."""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import websocket

from simulators.server import free_port

FIREFOX = "/usr/bin/firefox-esr"
#: a quiet profile: nothing fetched from the internet, no first-run pages
PREFS = {
    "app.update.disabledForTesting": True, "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False, "toolkit.telemetry.reportingpolicy.firstRun": False,
    "browser.startup.homepage_override.mstone": "ignore", "network.connectivity-service.enabled": False,
    "services.settings.server": "http://127.0.0.1:9/", "extensions.update.enabled": False,
    "browser.safebrowsing.update.enabled": False, "network.captive-portal-service.enabled": False,
}


class Firefox:
    """One BiDi session with one tab."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        self.ws, self._ids, self.errors = ws, itertools.count(1), []
        self.call("session.new", capabilities={})
        self.context = self.call("browsingContext.getTree")["contexts"][0]["context"]
        self.call("session.subscribe", events=["log.entryAdded"])

    def call(self, method: str, **params: Any) -> Any:
        """A command's result; events that arrive meanwhile are kept (console errors)."""
        sent = next(self._ids)
        self.ws.send(json.dumps({"id": sent, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == sent:
                if message.get("type") == "error":
                    raise RuntimeError(f"{method}: {message.get('error')}: {message.get('message')}")
                return message["result"]
            if message.get("method") == "log.entryAdded" and message["params"].get("level") == "error":
                self.errors.append(message["params"].get("text", ""))

    def get(self, url: str, width: int = 1280, height: int = 800) -> None:
        self.call("browsingContext.setViewport", context=self.context, viewport={"width": width, "height": height})
        self.call("browsingContext.navigate", context=self.context, url=url, wait="complete")

    def js(self, expression: str) -> Any:
        """``expression``'s value (awaited), through JSON."""
        result = self.call("script.evaluate", expression=f"(async () => JSON.stringify(await ({expression})))()",
                           target={"context": self.context}, awaitPromise=True)
        if result.get("type") == "exception":
            raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('text')}")
        value = result["result"].get("value")
        return None if value is None else json.loads(value)

    def wait(self, expression: str, timeout: float = 10) -> Any:
        """``expression``'s value once it is truthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"{expression} not true in {timeout:g} s; console errors: {self.errors}")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("browsingContext.captureScreenshot", context=self.context)["data"])


@contextmanager
def firefox(timeout: float = 30) -> Iterator[Firefox]:
    """Headless Firefox on a private profile and a free loopback port, for the block."""
    port = free_port()
    with tempfile.TemporaryDirectory() as profile:
        Path(profile, "user.js").write_text("".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n"
                                                    for k, v in PREFS.items()))
        process = subprocess.Popen([FIREFOX, "--headless", "--no-remote", "--profile", profile,
                                    f"--remote-debugging-port={port}", "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/session", timeout=timeout,
                                                     suppress_origin=True)  # the Remote Agent refuses an Origin
                    break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise
                    time.sleep(0.1)
            try:
                yield Firefox(ws)
            finally:
                ws.close()
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
