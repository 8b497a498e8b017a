"""Play Meta's part on your own machine, with the standard library only.

Two commands, for trying the bot without a WhatsApp account:

    python examples/whatsapp_bot/fake_meta.py graph [--port 8099]
        A fake Graph API on 127.0.0.1: prints every read receipt and reply the
        bot sends, answers like Meta does. Point WHATSAPP_API_URL at the URL it
        prints.

    python examples/whatsapp_bot/fake_meta.py burst [--bot URL] TEXT...
        Sends each TEXT as its own webhook POST (50 ms apart), from a made-up
        user, signed with WHATSAPP_APP_SECRET the way Meta signs: over the raw
        bytes, with unicode and slashes escaped.

Nothing here talks to Meta; both commands only use 127.0.0.1 by default.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import itertools
import json
import os
import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

USER = "15550000001"
NUMBER_ID = "100000000000001"

# The bot is on this machine: never send to it through a proxy.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def serve_graph(port: int) -> None:
    """Run the fake Graph API until Ctrl+C."""
    ids = itertools.count(1)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(size) or b"{}")
            if request.get("status") == "read":
                typing = " + typing indicator" if "typing_indicator" in request else ""
                print(f"[graph] read receipt for {request.get('message_id')}{typing}")
                answer: dict[str, Any] = {"success": True}
            else:
                wamid = f"wamid.fake{next(ids):04d}"
                to = request.get("to") or request.get("recipient")
                print(f"[graph] message to {to} (id {wamid}):")
                print("        " + request["text"]["body"].replace("\n", "\n        "))
                answer = {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": str(to).lstrip("+")}],
                    "messages": [{"id": wamid}],
                }

            sys.stdout.flush()
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"[graph] fake Graph API on http://127.0.0.1:{port}/v25.0", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def send_burst(bot: str, texts: list[str], secret: str) -> None:
    """POST each text as its own signed webhook."""
    run = time.time_ns() // 1000  # unique per burst, so bursts are not redeliveries
    for number, text in enumerate(texts, 1):
        payload = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "200000000000001",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550009999",
                                    "phone_number_id": NUMBER_ID,
                                },
                                "contacts": [
                                    {"profile": {"name": "Test User"}, "wa_id": USER}
                                ],
                                "messages": [
                                    {
                                        "from": USER,
                                        "id": f"wamid.burst{run}{number:02d}",
                                        "timestamp": str(run),
                                        "type": "text",
                                        "text": {"body": text},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
        # Meta's wire form: ASCII only, "\u00e9" for "é", "\/" for "/".
        body = json.dumps(payload).replace("/", "\\/").encode("ascii")
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(
            f"{bot.rstrip('/')}/webhook",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": f"sha256={digest}",
            },
            method="POST",
        )
        try:
            with _DIRECT.open(request, timeout=5) as reply:
                status = reply.status
        except urllib.error.HTTPError as error:
            status = error.code

        print(f"[meta] POST {number}/{len(texts)} -> {status}", flush=True)
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    graph = commands.add_parser("graph", help="run a fake Graph API")
    graph.add_argument("--port", type=int, default=8099)
    burst = commands.add_parser("burst", help="send a signed burst to the bot")
    burst.add_argument("--bot", default="http://127.0.0.1:8000")
    burst.add_argument("texts", nargs="+")
    args = parser.parse_args()

    if args.command == "graph":
        serve_graph(args.port)
        return 0

    secret = os.environ.get("WHATSAPP_APP_SECRET")
    if not secret:
        print("set WHATSAPP_APP_SECRET to the bot's app secret", file=sys.stderr)
        return 2

    send_burst(args.bot, args.texts, secret)
    return 0


if __name__ == "__main__":
    sys.exit(main())
