"""The example bot as a subprocess on a free loopback port, and HTTP to it.

Every wait is bounded. :meth:`Bot.stop` ends the process (SIGTERM, then
SIGKILL after a timeout) and is safe to call more than once, so a fixture can
always call it in its teardown.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .payloads import raw, sign

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "examples" / "whatsapp_bot" / "app.py"

# Variables of the test's own environment that must not leak into the bot.
_STRIPPED_PREFIXES = ("WHATSAPP_", "RAPIDFIRE_", "BOT_")
_STRIPPED = {"REDIS_URL", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"}
_STRIPPED |= {"all_proxy", "ALL_PROXY"}

# Requests from the test to the bot never go through a proxy.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bot_environment(**variables: str | None) -> dict[str, str]:
    """The test's environment without bot settings or proxies, plus ``variables``.

    A variable given as None is left unset.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _STRIPPED and not name.startswith(_STRIPPED_PREFIXES)
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: v for k, v in variables.items() if v is not None})
    return env


@dataclass
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Bot:
    """One bot process; its output (stdout and stderr) goes to ``log_path``."""

    def __init__(self, env: dict[str, str], log_path: Path, role: str = "all"):
        self.env = env
        self.role = role
        self.log_path = log_path
        self.port = int(env.get("BOT_PORT", "0"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Bot:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(APP), "--role", self.role],
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        return self

    def output(self) -> str:
        """Everything the process printed so far."""
        if not self.log_path.exists():
            return ""

        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_healthy(self, timeout: float = 15.0) -> None:
        """Poll ``/healthz`` every 50 ms until it answers 200; fail otherwise."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"bot exited with {self.process.returncode}:\n{self.output()}"
                )

            try:
                if self.get("/healthz", timeout=1.0).status == 200:
                    return
            except OSError:
                pass

            time.sleep(0.05)

        raise AssertionError(f"bot not healthy after {timeout}s:\n{self.output()}")

    def wait_output(self, text: str, timeout: float = 10.0) -> bool:
        """Poll the output every 50 ms until it holds ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True

            time.sleep(0.05)

        return text in self.output()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; the exit code."""
        process = self.process
        if process is None:
            return None

        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

        return process.returncode

    # -- HTTP -------------------------------------------------------------------

    def get(self, path: str, timeout: float = 5.0) -> Answer:
        return self._call(urllib.request.Request(self.url + path), timeout)

    def post(self, body: bytes, signature: str | None, timeout: float = 5.0) -> Answer:
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature

        request = urllib.request.Request(
            self.url + "/webhook", data=body, headers=headers, method="POST"
        )
        return self._call(request, timeout)

    def deliver(self, payload: dict[str, Any]) -> Answer:
        """POST ``payload`` as Meta would: escaped raw bytes, correctly signed."""
        body = raw(payload)
        return self.post(body, sign(body, self.env["WHATSAPP_APP_SECRET"]))

    def _call(self, request: urllib.request.Request, timeout: float) -> Answer:
        try:
            with _DIRECT.open(request, timeout=timeout) as reply:
                return Answer(reply.status, reply.read())
        except urllib.error.HTTPError as error:
            with error:
                return Answer(error.code, error.read())


def run_to_exit(env: dict[str, str], timeout: float = 20.0) -> tuple[int, str]:
    """Run the bot expecting it to exit by itself; its exit code and output."""
    done = subprocess.run(
        [sys.executable, str(APP)],
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")
