"""Fixtures for fault injection: Redis servers the tests own, a TCP proxy that
fails on demand, and ``rapidfire worker`` subprocesses.

Everything here listens on 127.0.0.1, on ports the kernel hands out, and every
process, socket and thread it starts is stopped by its fixture, even when the
test fails. The shared Redis of the suite is only ever used through
``real_config``: nothing here kills, flushes or reconfigures it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ..conftest import IN_CI

REDIS_SERVER = shutil.which("redis-server")
RAPIDFIRE = [sys.executable, "-m", "rapidfire.cli"]
BOUND = 15.0  # liveness bound of every wait in these helpers, seconds

_ports_given: set[int] = set()


def need_redis_server() -> str:
    """The redis-server binary, or skip (fail under CI) when there is none."""
    if REDIS_SERVER is None:
        if IN_CI:
            pytest.fail("redis-server must be on PATH under CI=true")
        pytest.skip("redis-server is not on PATH: these tests start their own")
    return REDIS_SERVER


def free_port() -> int:
    """A loopback port nothing listens on, never handed out before here.

    Never reusing a port keeps each server a new one to rapidfire, which warns
    about a server's settings once per process.
    """
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise RuntimeError("no free loopback port")


def wait_until(
    condition: Callable[[], Any], timeout: float = BOUND, what: str = "condition"
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not reached within {timeout:g}s")
        time.sleep(0.02)


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# -- redis-server ----------------------------------------------------------------


class RedisServer:
    """A redis-server process of one test, on its own port and directory."""

    def __init__(self, binary: str, directory: Path, args: Sequence[str]) -> None:
        self.binary = binary
        self.dir = directory
        self.args = list(args)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def where(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (or restart) the server on the same port and directory."""
        assert self.process is None, "server already running"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(self.dir),
            *self.args,
        ]
        with open(self.dir / f"server-{self.starts}.log", "wb") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        deadline = time.monotonic() + BOUND
        while not _ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start: {self.log()}")
            time.sleep(0.02)

    def kill(self) -> None:
        """kill -9: no shutdown, no final save."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=BOUND)
            self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=BOUND)
        self.process = None

    def log(self) -> str:
        path = self.dir / f"server-{self.starts}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start redis-server processes: ``redis_server("--appendonly", "yes")``."""
    binary = need_redis_server()
    started: list[RedisServer] = []

    def new(args: Sequence[str]) -> RedisServer:
        started.append(RedisServer(binary, tmp_path / f"redis-{len(started)}", args))
        return started[-1]

    def start(*args: str) -> RedisServer:
        for _ in range(2):  # another process may take the free port meanwhile
            server = new(args)
            with contextlib.suppress(RuntimeError):
                server.start()
                return server
        server = new(args)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


# -- TCP proxy ---------------------------------------------------------------------


class TcpProxy:
    """A loopback TCP proxy in front of one port, that fails on demand.

    Modes: forwarding (the start), ``cut()`` (every connection is closed and new
    ones are closed as soon as they are accepted), ``stall()`` (connections
    stay open but no byte moves; held bytes move on after ``heal()``, as after
    a network partition TCP survives), ``lose_replies()`` (on the connections
    open now, requests still reach the server but its replies are thrown away,
    as when a connection dies right after a request) and ``heal()``.
    """

    POLL = 0.05

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(self.POLL)
        self.port: int = self._listener.getsockname()[1]
        self.mode = "forward"
        self.accepted = 0
        self._lossy: set[int] = set()
        self._lose_new = False
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def where(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- faults --

    def cut(self) -> None:
        self.mode = "cut"
        self._flowing.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def stall(self) -> None:
        self.mode = "stall"
        self._flowing.clear()

    def lose_replies(self, *, everywhere: bool = False) -> None:
        """Lose the replies on the connections open now (``everywhere``: on new
        ones too, so that a client cannot even connect)."""
        self.mode = "lose_replies"
        self._lose_new = everywhere
        self._lossy = set(range(self.accepted))
        self._flowing.set()

    def heal(self) -> None:
        self.mode = "forward"
        self._lose_new = False
        self._lossy = set()
        self._flowing.set()

    def close(self) -> None:
        self._closed.set()
        self._flowing.set()
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)
        for thread in self._threads:
            thread.join(timeout=2)

    # -- plumbing --

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            number = self.accepted
            self.accepted += 1
            if self._lose_new:
                self._lossy.add(number)
            if self.mode == "cut":
                client.close()
                continue
            try:
                upstream = socket.create_connection(
                    ("127.0.0.1", self.target_port), timeout=2
                )
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            self._spawn(self._pump, client, upstream, None)
            self._spawn(self._pump, upstream, client, number)

    def _pump(
        self, source: socket.socket, target: socket.socket, replies_of: int | None
    ) -> None:
        """Copy bytes one way; ``replies_of`` is the connection's number when
        they are the server's replies."""
        try:
            while not self._closed.is_set():
                readable, _, _ = select.select([source], [], [], self.POLL)
                if not readable:
                    continue
                data = source.recv(65536)
                if not data:
                    break
                while not self._flowing.wait(self.POLL):
                    if self._closed.is_set():
                        return
                if replies_of is not None and replies_of in self._lossy:
                    continue
                target.sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            with self._lock:
                self._sockets.difference_update((source, target))
            _shut(source)
            _shut(target)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture
def proxy() -> Iterator[Callable[[int], TcpProxy]]:
    """Start TCP proxies in front of a port: ``proxy(server.port)``."""
    made: list[TcpProxy] = []

    def start(target_port: int) -> TcpProxy:
        made.append(TcpProxy(target_port))
        return made[-1]

    yield start
    for each in made:
        each.close()


# -- rapidfire worker subprocesses -------------------------------------------------

HANDLERS = """
import json, os, time

import anyio

SLOW = float(os.environ.get("SLOW", "0"))


def note(event, batch):
    line = {
        "event": event,
        "pid": os.getpid(),
        "id": batch.id,
        "attempt": batch.attempt,
        "reason": str(batch.reason),
        "conversation": batch.conversation,
        "messages": list(batch.messages),
        "claimed_at": batch.claimed_at,
        "at": time.time(),
    }
    with open(os.environ["OUT"], "a") as out:
        out.write(json.dumps(line) + "\\n")


def handle(batch):
    note("start", batch)
    time.sleep(SLOW)
    note("done", batch)


async def handle_async(batch):
    note("start", batch)
    await anyio.sleep(SLOW)
    note("done", batch)
"""


class Worker:
    """One ``rapidfire worker`` process and the events its handler wrote."""

    def __init__(self, process: subprocess.Popen[bytes], out: Path, log: Path) -> None:
        self.process = process
        self.out = out
        self.log = log

    def events(
        self, kind: str | None = None, *, timed: bool = False
    ) -> list[dict[str, Any]]:
        """The handler's notes; ``timed`` keeps when each was written and
        when its batch was claimed, which differ from one note to the next."""
        if not self.out.exists():
            return []
        found = [json.loads(line) for line in self.out.read_text().splitlines()]
        if not timed:
            for event in found:
                del event["at"], event["claimed_at"]
        return [e for e in found if kind is None or e["event"] == kind]

    def wait_for(self, kind: str, count: int = 1) -> list[dict[str, Any]]:
        return wait_until(
            lambda: len(self.events(kind)) >= count and self.events(kind),
            what=f"{count} {kind!r} event(s) of worker {self.process.pid}",
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait(self, timeout: float = BOUND) -> int | None:
        """The exit code, or None when the process is still running."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start ``rapidfire worker handlers:NAME`` on a URL and namespace.

    Keywords become environment variables (``SLOW`` seconds in the handler,
    ``RAPIDFIRE_*`` settings). Each worker writes its own event file.
    """
    (tmp_path / "handlers.py").write_text(textwrap.dedent(HANDLERS))
    workers: list[Worker] = []

    def start(url: str, namespace: str, handler: str = "handle", **env: str) -> Worker:
        name = f"worker-{len(workers)}"
        out, log = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.log"
        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("RAPIDFIRE_") and k != "REDIS_URL"
        }
        environ.update(
            RAPIDFIRE_REDIS_URL=url,
            RAPIDFIRE_NAMESPACE=namespace,
            OUT=str(out),
            PYTHONPATH=str(tmp_path),
            **env,
        )
        with open(log, "wb") as sink:
            process = subprocess.Popen(
                [*RAPIDFIRE, "worker", f"handlers:{handler}"],
                env=environ,
                cwd=tmp_path,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        workers.append(Worker(process, out, log))
        return workers[-1]

    yield start
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(timeout=BOUND)


# -- figures -----------------------------------------------------------------------

_figures: dict[str, dict[str, Any]] = {}


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> dict[str, Any]:
    """What a fault test ended with (pushed, delivered, ...), printed at the end."""
    found: dict[str, Any] = {}
    _figures[request.node.nodeid] = found
    return found


def pytest_terminal_summary(terminalreporter: Any) -> None:
    shown = {test: found for test, found in _figures.items() if found}
    if not shown:
        return
    terminalreporter.section("fault figures")
    for test, found in shown.items():
        line = ", ".join(f"{name}={value}" for name, value in found.items())
        terminalreporter.write_line(f"{test.split('::', 1)[-1]}: {line}")


# -- drain in a thread ---------------------------------------------------------------


@contextlib.contextmanager
def drain_in_thread(batcher: Any, handler: Any, **options: Any) -> Iterator[dict]:
    """Run ``batcher.drain`` with a stop event in a thread; stop and join on exit.

    The dict holds ``report`` (or ``error``) once the drain returned.
    """
    stop = threading.Event()
    out: dict[str, Any] = {"stop": stop}

    def run() -> None:
        try:
            out["report"] = batcher.drain(handler, stop=stop, **options)
        except BaseException as exc:  # reported by the test, not lost in the thread
            out["error"] = exc

    thread = threading.Thread(target=run, name="test-drain", daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join(timeout=BOUND)
        out["alive"] = thread.is_alive()
