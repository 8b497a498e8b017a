"""A fake WhatsApp Cloud API (Graph) server on 127.0.0.1, recording every request.

It answers ``POST /<version>/<phone_number_id>/messages`` the way Graph does: a
sent message gets ``{"messaging_product": "whatsapp", "contacts": [...],
"messages": [{"id": "wamid.out..."}]}`` and a read receipt gets
``{"success": true}``. A test can script the next answers to sends, for
example a Graph error, with :meth:`FakeGraph.fail_next_sends`.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_VERSION = "v99.0"


@dataclass(frozen=True)
class Request:
    """One request the bot made."""

    path: str
    authorization: str | None
    body: dict[str, Any]
    status: int

    @property
    def is_read(self) -> bool:
        """A read receipt (with or without the typing indicator)."""
        return self.body.get("status") == "read"

    @property
    def is_send(self) -> bool:
        """A message sent to a user."""
        return self.body.get("type") == "text"

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return str(self.body["text"]["body"])

    @property
    def to(self) -> str | None:
        return self.body.get("to")

    @property
    def recipient(self) -> str | None:
        return self.body.get("recipient")


class FakeGraph:
    """The fake server; use as a context manager (it stops on exit)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._failures: deque[tuple[int, dict[str, Any]]] = deque()
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.graph = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}
        )

    @property
    def api_url(self) -> str:
        """The value for ``WHATSAPP_API_URL``."""
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/{API_VERSION}"

    def __enter__(self) -> FakeGraph:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- scripting and looking ------------------------------------------------

    def fail_next_sends(self, code: int, times: int = 1, status: int = 400) -> None:
        """Answer the next ``times`` sends with a Graph error of ``code``."""
        error = {
            "error": {
                "message": f"(#{code}) scripted failure",
                "type": "OAuthException",
                "code": code,
                "error_data": {"messaging_product": "whatsapp", "details": "test"},
                "fbtrace_id": "AtestTRACE",
            }
        }
        with self._lock:
            self._failures.extend([(status, error)] * times)

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def sends(self, ok: bool | None = True) -> list[Request]:
        """The sends so far; only successful ones unless ``ok`` is None/False."""
        return [r for r in self.requests if r.is_send and (ok is None or r.ok == ok)]

    def replies_to(self, to: str) -> list[Request]:
        """The successful sends to one phone number (``+...``) or BSUID."""
        return [r for r in self.sends() if to in (r.to, r.recipient)]

    def wait_for(
        self, condition: Callable[[FakeGraph], bool], timeout: float = 10.0
    ) -> bool:
        """Poll every 50 ms until ``condition(self)`` holds; False at timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if condition(self):
                return True

            if time.monotonic() >= deadline:
                return False

            time.sleep(0.05)

    # -- answering ------------------------------------------------------------

    def _answer(
        self, path: str, authorization: str | None, raw: bytes
    ) -> tuple[int, dict[str, Any]]:
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}

        status: int = 200
        reply: dict[str, Any] = {"success": True}
        if not path.startswith(f"/{API_VERSION}/") or not path.endswith("/messages"):
            status, reply = 404, {"error": {"message": "unknown path", "code": 100}}
        elif body.get("type") == "text":
            with self._lock:
                scripted = self._failures.popleft() if self._failures else None

            if scripted is not None:
                status, reply = scripted
            else:
                target = body.get("to") or body.get("recipient")
                reply = {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": target, "wa_id": str(target).lstrip("+")}],
                    "messages": [{"id": f"wamid.out{next(self._ids):04d}"}],
                }

        with self._lock:
            self._requests.append(Request(path, authorization, body, status))

        return status, reply


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        graph: FakeGraph = self.server.graph  # type: ignore[attr-defined]
        status, reply = graph._answer(self.path, self.headers.get("Authorization"), raw)
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads the record, not a log."""
