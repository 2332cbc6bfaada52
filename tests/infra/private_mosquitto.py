"""A private Mosquitto broker (own port, config, optional password file and TLS) a test can stop or kill."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from pathlib import Path

from simulators.server import free_port

MOSQUITTO = "/usr/sbin/mosquitto"


class PrivateMosquitto:
    """``mosquitto -c`` on a free loopback port; ``users`` adds a password file (anonymous refused)."""

    def __init__(self, root: Path, users: dict[str, str] | None = None, tls: dict[str, Path] | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        # started as root, mosquitto drops to its own user unless told to stay: its files here are ours
        lines = [f"user {pwd.getpwuid(os.geteuid()).pw_name}",
                 f"listener {self.port} 127.0.0.1", "persistence false", f"log_dest file {root / 'broker.log'}",
                 "log_type error", "log_type warning", "log_type notice"]
        if users:
            passwd = root / "passwd"
            passwd.touch(mode=0o600)
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True,
                               capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        for key, path in (tls or {}).items():  # cafile, certfile, keyfile
            lines.append(f"{key} {path}")
        self.config = root / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:<port>``."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> None:
        """Start the broker and wait until it accepts connections."""
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = self.root / "broker.log"
                    raise RuntimeError(f"mosquitto did not start: {log.read_text() if log.exists() else ''}") from None
                time.sleep(0.05)

    def kill9(self) -> None:
        """SIGKILL the broker."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
