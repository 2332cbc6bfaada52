"""A private MariaDB server (own data directory and port) that a test can stop, kill or misconfigure.

The benchmarks (bench/backfill) run from a checkout and import it from here: tests never import bench.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pymysql

from simulators.server import free_port

MARIADBD = "/usr/sbin/mariadbd"


def execute_all(conn: pymysql.connections.Connection, statements: tuple[str, ...]) -> None:
    """Run ``statements`` on ``conn``, then close it."""
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
    finally:
        conn.close()


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """SIGTERM, wait up to ``timeout`` seconds (a server flushes and shuts down), then SIGKILL."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class PrivateMariaDB:
    """``mariadb-install-db`` into a temp dir, then ``mariadbd`` on a free loopback port."""

    def __init__(self, root: Path, ssl: dict[str, Path] | None = None, options: list[str] | None = None) -> None:
        self.root = root
        self.options = options or ["--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M"]
        self.datadir = root / "data"
        self.port = free_port()
        self.ssl = ssl or {}
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, timeout=120)

    def start(self, timeout: float = 60) -> None:
        """Start the server and wait until it accepts connections."""
        args = [MARIADBD, "--no-defaults", f"--datadir={self.datadir}", "--user=root",
                f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.root / 'sock'}",
                f"--pid-file={self.root / 'pid'}", "--skip-log-bin", *self.options,
                "--skip-name-resolve", f"--log-error={self.root / 'error.log'}"]
        args += [f"--ssl-{key}={path}" for key, path in self.ssl.items()]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.admin().close()
                return
            except pymysql.MySQLError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.root / "error.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"private mariadbd did not start:\n{log}") from None
                time.sleep(0.1)

    def kill9(self) -> None:
        """SIGKILL the server, as a power cut or OOM kill would."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        """Shut down cleanly."""
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def admin(self, database: str | None = None) -> pymysql.connections.Connection:
        """A root connection."""
        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", password="", database=database,
                               autocommit=True, connect_timeout=2)

    def execute(self, *statements: str) -> None:
        """Run statements as root."""
        execute_all(self.admin(), statements)

    def url(self, database: str = "hacksky", user: str = "root", password: str = "") -> str:
        """SQLAlchemy URL for ``user`` on this server."""
        auth = f"{user}:{password}" if password else user
        return f"mysql+pymysql://{auth}@127.0.0.1:{self.port}/{database}"
