"""A three-node MariaDB Galera cluster on loopback ports (``galera-4``), for availability tests.

Each node is a ``mariadbd --no-defaults`` with its own data directory, ports and log; the first
bootstraps the cluster, the others join by rsync SST. A node killed with SIGKILL restarts from
its recovered position (``--wsrep-recover``, then ``--wsrep-start-position``: IST from a donor
when the cluster still runs); after the whole cluster died, the node with the highest recovered
sequence number bootstraps it again and the others join. Recipe: ../shared/TESTING-INFRA.md.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pymysql

from simulators.server import free_port
from tests.infra.private_mariadb import execute_all, stop_process

MARIADBD = "/usr/sbin/mariadbd"
PROVIDER = "/usr/lib/galera/libgalera_smm.so"
#: evict a dead node after ~2 s instead of ~5.6 s (shorter values cause endless view changes)
EVS = ("evs.suspect_timeout=PT2S;evs.inactive_timeout=PT4S;evs.install_timeout=PT3S;"
       "evs.keepalive_period=PT0.5S;evs.inactive_check_period=PT0.5S")
_POSITION = re.compile(r"WSREP: Recovered position:\s*([0-9a-f-]{36}:-?\d+)")


def available() -> bool:
    """Galera's provider and rsync (its SST) are installed."""
    return Path(PROVIDER).exists() and shutil.which("rsync") is not None and Path(MARIADBD).exists()


class Node:
    """One cluster member: ports, directories, process."""

    def __init__(self, root: Path, index: int) -> None:
        self.index = index
        self.root = root / f"node{index}"
        self.datadir = self.root / "data"
        self.port, self.gcomm, self.ist, self.sst = free_port(), free_port(), free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        for d in (self.root, self.datadir):
            subprocess.run(["install", "-d", "-o", "mysql", "-g", "mysql", "-m", "700", str(d)], check=True)

    @property
    def log(self) -> Path:
        return self.root / "error.log"

    def args(self, members: str) -> list[str]:
        return [MARIADBD, "--no-defaults", f"--datadir={self.datadir}", "--user=mysql", f"--port={self.port}",
                "--bind-address=127.0.0.1", f"--socket={self.root / 'sock'}", f"--pid-file={self.root / 'pid'}",
                f"--log-error={self.log}", "--skip-name-resolve", "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=16M", "--binlog-format=ROW", "--innodb-autoinc-lock-mode=2",
                "--wsrep-on=ON", f"--wsrep-provider={PROVIDER}", "--wsrep-cluster-name=hacksky_test",
                f"--wsrep-cluster-address=gcomm://{members}",
                f"--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:{self.gcomm};"
                f"ist.recv_addr=127.0.0.1:{self.ist};gcache.size=64M;{EVS}",
                f"--wsrep-node-address=127.0.0.1:{self.gcomm}", f"--wsrep-node-name=node{self.index}",
                f"--wsrep-sst-receive-address=127.0.0.1:{self.sst}", "--wsrep-sst-method=rsync"]

    def connect(self, database: str | None = None) -> pymysql.connections.Connection:
        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", password="", database=database,
                               autocommit=True, connect_timeout=2, read_timeout=10)

    def state(self) -> str:
        """``Synced``, ``Joining`` ... or ``down``."""
        try:
            conn = self.connect()
        except pymysql.MySQLError:
            return "down"
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW STATUS LIKE 'wsrep_local_state_comment'")
                row = cur.fetchone()
            return str(row[1]) if row else "unknown"
        except pymysql.MySQLError:
            return "down"
        finally:
            conn.close()

    def url(self, database: str = "hacksky") -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}"


class GaleraCluster:
    """Three nodes on loopback; :meth:`start` bootstraps it, :meth:`kill9` / :meth:`restart` /
    :meth:`kill_all` / :meth:`recover_all` inject and clear faults."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.root = root
        self.nodes = [Node(root, i) for i in range(size)]
        self.members = ",".join(f"127.0.0.1:{n.gcomm}" for n in self.nodes)
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.nodes[0].datadir}", "--user=mysql",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, timeout=120)

    def _spawn(self, node: Node, *extra: str) -> None:
        node.proc = subprocess.Popen([*node.args(self.members), *extra], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def wait_synced(self, node: Node, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while node.state() != "Synced":
            if node.proc is None or node.proc.poll() is not None or time.monotonic() > deadline:
                tail = node.log.read_text(errors="replace")[-3000:] if node.log.exists() else ""
                raise RuntimeError(f"galera node{node.index} did not sync:\n{tail}")
            time.sleep(0.2)

    def start(self) -> None:
        """Bootstrap node 0, then join the others one by one (each by SST from a synced node)."""
        first, *others = self.nodes
        self._spawn(first, "--wsrep-new-cluster")
        self.wait_synced(first)
        for node in others:
            self._spawn(node)
            self.wait_synced(node)

    def kill9(self, index: int) -> None:
        """SIGKILL one node, as a power cut would."""
        node = self.nodes[index]
        assert node.proc is not None
        os.kill(node.proc.pid, signal.SIGKILL)
        node.proc.wait(timeout=30)
        node.proc = None

    def kill_all(self) -> None:
        for node in self.nodes:
            if node.proc is not None:
                self.kill9(node.index)

    def recovered_position(self, node: Node) -> str:
        """``uuid:seqno`` of the last transaction the node's InnoDB committed (``--wsrep-recover``)."""
        before = node.log.stat().st_size if node.log.exists() else 0
        subprocess.run([*node.args(self.members), "--wsrep-recover"], check=True, capture_output=True, timeout=120)
        found = _POSITION.findall(node.log.read_text(errors="replace")[before:])
        if not found:
            raise RuntimeError(f"node{node.index}: no recovered position in its log")
        return str(found[-1])

    def restart(self, index: int) -> None:
        """Start a killed node from its recovered position and wait until it is synced again."""
        node = self.nodes[index]
        self._spawn(node, f"--wsrep-start-position={self.recovered_position(node)}")
        self.wait_synced(node)

    def recover_all(self) -> None:
        """After the whole cluster died: bootstrap from the most advanced node, then join the others."""
        positions = {node.index: self.recovered_position(node) for node in self.nodes}
        best = max(self.nodes, key=lambda n: int(positions[n.index].rsplit(":", 1)[1]))
        state = best.datadir / "grastate.dat"
        state.write_text(re.sub(r"safe_to_bootstrap:\s*0", "safe_to_bootstrap: 1", state.read_text()))
        self._spawn(best, "--wsrep-new-cluster", f"--wsrep-start-position={positions[best.index]}")
        self.wait_synced(best)
        for node in self.nodes:
            if node is not best:
                self._spawn(node, f"--wsrep-start-position={positions[node.index]}")
                self.wait_synced(node)

    def stop(self) -> None:
        """Shut every node down (SIGTERM, then SIGKILL after 60 s)."""
        for node in reversed(self.nodes):
            if node.proc is not None:
                stop_process(node.proc)
                node.proc = None

    def execute(self, *statements: str, node: int = 0) -> None:
        """Run statements as root on one node."""
        execute_all(self.nodes[node].connect(), statements)


@contextmanager
def running_cluster() -> Iterator[GaleraCluster]:
    """A started 3-node cluster, stopped and removed afterwards. Its directories live outside
    pytest's root-only temporary directory: the servers run as ``mysql``."""
    root = Path(tempfile.mkdtemp(prefix="hacksky-galera-"))
    os.chmod(root, 0o755)
    cluster = GaleraCluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
