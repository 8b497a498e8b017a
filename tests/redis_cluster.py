"""A real Redis Cluster on loopback ports, started and stopped by the caller.

Standard library only, so that ``.ci/run`` can use it before the virtualenv
exists::

    python3 tests/redis_cluster.py start DIR [--primaries 3] [--replicas 0]
    python3 tests/redis_cluster.py stop DIR

``start`` prints the cluster's URL (``redis://127.0.0.1:p1,127.0.0.1:p2,...``)
and leaves the servers running; their pids and ports are kept in DIR, which
``stop`` reads. Tests use :func:`start_cluster` the same way. Every server
binds 127.0.0.1 only and keeps nothing on disk.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BUS_OFFSET = 10000  # Redis Cluster's bus listens on port + 10000


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_ports(count: int, start: int = 20000) -> list[int]:
    """``count`` ports p whose bus port p + 10000 is free too."""
    ports: list[int] = []
    port = start + (os.getpid() * 7) % 10000
    while len(ports) < count:
        port += 1
        if port + BUS_OFFSET > 65000:
            port = start
        if _port_free(port) and _port_free(port + BUS_OFFSET):
            ports.append(port)
    return ports


def _command(port: int, *args: str, timeout: float = 5.0) -> str:
    cli = shutil.which("redis-cli")
    if cli is None:
        raise RuntimeError("redis-cli is not on PATH")
    done = subprocess.run(
        [cli, "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.stdout


@dataclass
class Cluster:
    """Servers of one cluster; :meth:`stop` kills them all."""

    directory: Path
    ports: list[int]
    pids: list[int] = field(default_factory=list)
    primaries: int = 3
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    @property
    def url(self) -> str:
        return "redis://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def save(self) -> None:
        state = {"ports": self.ports, "pids": self.pids, "primaries": self.primaries}
        (self.directory / "cluster.json").write_text(json.dumps(state))

    @classmethod
    def load(cls, directory: Path) -> Cluster:
        state = json.loads((directory / "cluster.json").read_text())
        return cls(directory, state["ports"], state["pids"], state["primaries"])

    def stop(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for process in self.processes:
            process.wait(timeout=10)
        deadline = time.monotonic() + 10
        for pid in self.pids:
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                try:  # our own child: reap it
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        break
                except ChildProcessError:
                    pass
                time.sleep(0.02)


def _start_node(directory: Path, port: int) -> subprocess.Popen[bytes]:
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server is not on PATH")
    node_dir = directory / str(port)
    node_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(node_dir / "nodes.conf"),
            "--cluster-node-timeout",
            "2000",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(node_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait(predicate: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster: timed out waiting for {what}")
        time.sleep(0.05)


def start_cluster(directory: Path, primaries: int = 3, replicas: int = 0) -> Cluster:
    """Start ``primaries`` x (1 + ``replicas``) nodes and join them."""
    directory.mkdir(parents=True, exist_ok=True)
    ports = free_cluster_ports(primaries * (1 + replicas))
    cluster = Cluster(directory, ports, primaries=primaries)
    try:
        for port in ports:
            process = _start_node(directory, port)
            cluster.processes.append(process)
            cluster.pids.append(process.pid)
        cluster.save()
        for port in ports:
            _wait(lambda p=port: _command(p, "PING").strip() == "PONG", "PONG", 10)
        cli = shutil.which("redis-cli")
        assert cli is not None
        create = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {create.stdout}")
        for port in ports:
            _wait(
                lambda p=port: "cluster_state:ok" in _command(p, "CLUSTER", "INFO"),
                "cluster_state:ok",
                30,
            )
        if replicas:
            _wait(lambda: _replicas_synced(ports, primaries * replicas), "replicas", 30)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _replicas_synced(ports: list[int], expected: int) -> bool:
    synced = 0
    for port in ports:
        info = _command(port, "INFO", "replication")
        if "role:slave" in info and "master_link_status:up" in info:
            synced += 1
    return synced >= expected


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    start = sub.add_parser("start")
    start.add_argument("directory", type=Path)
    start.add_argument("--primaries", type=int, default=3)
    start.add_argument("--replicas", type=int, default=0)
    stop = sub.add_parser("stop")
    stop.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    if args.action == "start":
        cluster = start_cluster(args.directory, args.primaries, args.replicas)
        print(cluster.url)
    else:
        Cluster.load(args.directory).stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
