"""Does a Redis answer at a URL? Standard library only, for the Makefile and
``.ci/run``, which run before the virtualenv is used::

    python3 tests/local_redis.py [URL]    # default redis://127.0.0.1:6379/9

Prints the URL and exits 0 when a Redis answers PING there; otherwise says
why on stderr and exits 1. The URL is a test database: the suite deletes
only the keys of the namespaces it creates there.
"""

from __future__ import annotations

import socket
import sys
from urllib.parse import urlsplit

DEFAULT = "redis://127.0.0.1:6379/9"


def main(argv: list[str]) -> int:
    url = argv[0] if argv else DEFAULT
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    try:
        with socket.create_connection((host, port), timeout=5) as conn:
            conn.sendall(b"PING\r\n")
            reply = conn.recv(64)
    except OSError as exc:
        print(f"Redis at {host}:{port} does not answer ({exc})", file=sys.stderr)
        return 1
    if not reply.startswith((b"+PONG", b"-NOAUTH")):
        print(f"{host}:{port} answered {reply!r}, not a Redis PONG", file=sys.stderr)
        return 1
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
