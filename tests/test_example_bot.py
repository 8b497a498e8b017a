"""End-to-end tests of the example bot in ``examples/whatsapp_bot``.

The bot runs as a subprocess on a free loopback port, against the real Redis
of ``RAPIDFIRE_TEST_REDIS_URL`` (an embedded ``memory://`` server cannot be
shared between processes; these tests skip without a real server, and fail
under ``CI=true``) and a fake Graph API that the test serves on 127.0.0.1.
Webhooks are signed over their raw bytes the way Meta signs them. Nothing is
sent anywhere else.
"""

from __future__ import annotations

import importlib.util
import json
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from rapidfire import RedisConfig
from rapidfire.transports import (
    Author,
    InboundMessage,
    MessageKind,
    ReplyAddress,
)

from .conftest import (
    IN_CI,
    TEST_URL,
    delete_namespace,
    real_redis_url,
    unique_namespace,
)
from .example_bot import payloads as wa
from .example_bot.bot import REPO, Bot, bot_environment, free_port, run_to_exit
from .example_bot.graph import FakeGraph, Request

pytestmark = pytest.mark.timeout(45)

ANA = "15550000001"
BEN = "15550000002"
CAROL = "US.E2ETESTUSER000000003"  # a user known only by a BSUID (username)

DEBOUNCE = 0.4
SETTLE = 0.6
"""Seconds to wait for something that must NOT happen, once a reply came."""

MakeBot = Callable[..., Bot]


# -- fixtures -------------------------------------------------------------------


@pytest.fixture
def secrets() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {
        "WHATSAPP_APP_SECRET": f"app-secret-{tag}",
        "WHATSAPP_VERIFY_TOKEN": f"verify-token-{tag}",
        "WHATSAPP_ACCESS_TOKEN": f"EAAtest-access-token-{tag}",
    }


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with FakeGraph() as fake:
        yield fake


@pytest.fixture
def namespace() -> Iterator[tuple[str, str]]:
    if not TEST_URL and not IN_CI:
        pytest.skip(
            "the bot runs in processes of its own, which cannot share memory://:"
            " set RAPIDFIRE_TEST_REDIS_URL to run it against a real Redis"
        )

    url = real_redis_url()  # fails under CI=true without a server
    name = unique_namespace("bot")
    yield url, name
    delete_namespace(RedisConfig.from_url(url, namespace=name))


@pytest.fixture
def make_bot(
    tmp_path: Path,
    graph: FakeGraph,
    namespace: tuple[str, str],
    secrets: dict[str, str],
) -> Iterator[MakeBot]:
    """Start bots sharing one Redis namespace and the fake Graph API.

    Keywords override environment variables (None unsets one). Every bot is
    stopped at teardown, whatever happened.
    """
    url, name = namespace
    bots: list[Bot] = []

    def start(role: str = "all", **variables: str | None) -> Bot:
        settings: dict[str, str | None] = {
            **secrets,
            "WHATSAPP_API_URL": graph.api_url,
            "RAPIDFIRE_REDIS_URL": url,
            "RAPIDFIRE_NAMESPACE": name,
            "RAPIDFIRE_DEBOUNCE": str(DEBOUNCE),
            "RAPIDFIRE_MAX_WAIT": "3",
            "RAPIDFIRE_RETRY_BACKOFF": "0.1",
            "RAPIDFIRE_RETRY_BACKOFF_MAX": "0.5",
            "BOT_HOST": "127.0.0.1",
            "BOT_PORT": str(free_port()),
            **variables,
        }
        bot = Bot(bot_environment(**settings), tmp_path / f"bot{len(bots)}.log", role)
        bots.append(bot)
        bot.start()
        if role != "worker":
            bot.wait_healthy()

        return bot

    try:
        yield start
    finally:
        for bot in bots:
            bot.stop()


# -- helpers --------------------------------------------------------------------


def burst(bot: Bot, texts: list[str], phone: str = ANA) -> list[dict[str, Any]]:
    """POST each text as its own webhook, 50 ms apart; the payloads sent."""
    sent = []
    for text in texts:
        payload = wa.from_user(wa.text(text, phone=phone))
        assert bot.deliver(payload).status == 200
        sent.append(payload)
        time.sleep(0.05)

    return sent


def wamid(payload: dict[str, Any]) -> str:
    return str(payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"])


def replies(graph: FakeGraph, count: int, to: str = f"+{ANA}") -> list[Request]:
    """Wait (bounded) for ``count`` replies to ``to``, then let things settle."""
    assert graph.wait_for(lambda g: len(g.replies_to(to)) >= count), (
        f"expected {count} repl(ies) to {to}, got {graph.requests}"
    )
    time.sleep(SETTLE)
    return graph.replies_to(to)


def assert_private(output: str, secrets: dict[str, str], texts: list[str]) -> None:
    """No message text, full user id, token or secret in the bot's output."""
    private = [*secrets.values(), ANA, BEN, CAROL]
    for text in texts:
        private += [
            text,
            json.dumps(text)[1:-1],
            json.dumps(text)[1:-1].replace("/", "\\/"),
        ]

    leaked = sorted({value for value in private if value in output})
    assert not leaked, f"the bot's output holds {leaked}:\n{output}"


# -- the burst ------------------------------------------------------------------


def test_a_burst_gets_one_reply_with_every_text_in_order(
    make_bot: MakeBot, graph: FakeGraph, secrets: dict[str, str]
) -> None:
    bot = make_bot()
    texts = [
        "hello kiwi",
        "café ☕ and/or crème brûlée 👋",
        "are you still there mango",
        "last one papaya",
    ]

    sent = burst(bot, texts)
    (reply,) = replies(graph, 1)
    code = bot.stop()

    last = wamid(sent[-1])
    order = [r for r in graph.requests if r.is_read or r.is_send]
    wire = wa.raw(sent[1])  # what was signed: Meta's escaped form
    assert b"caf\\u00e9" in wire
    assert b"and\\/or" in wire
    assert reply.text == "\n".join(texts)
    assert reply.to == f"+{ANA}"
    assert reply.body["recipient_type"] == "individual"
    assert reply.body["context"] == {"message_id": last}
    assert reply.body["biz_opaque_callback_data"]
    assert reply.path == f"/v99.0/{wa.NUMBER_ID}/messages"
    assert reply.authorization == f"Bearer {secrets['WHATSAPP_ACCESS_TOKEN']}"
    assert [r.is_read for r in order] == [True, False]
    assert order[0].body == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": last,
        "typing_indicator": {"type": "text"},
    }
    assert code == 0
    assert_private(bot.output(), secrets, texts)


def test_two_users_in_one_post_get_one_reply_each(
    make_bot: MakeBot, graph: FakeGraph, secrets: dict[str, str]
) -> None:
    bot = make_bot()
    payload = wa.webhook(
        contacts=[wa.contact(phone=ANA), wa.contact(phone=None, user_id=CAROL)],
        messages=[
            wa.text("ana says plum", phone=ANA),
            wa.text("carol says fig", phone=None, user_id=CAROL),
            wa.text("ana again plum", phone=ANA),
        ],
    )

    assert bot.deliver(payload).status == 200
    assert graph.wait_for(lambda g: len(g.sends()) >= 2)
    time.sleep(SETTLE)
    bot.stop()

    ana, carol = graph.replies_to(f"+{ANA}"), graph.replies_to(CAROL)
    assert [r.text for r in ana] == ["ana says plum\nana again plum"]
    assert [r.text for r in carol] == ["carol says fig"]
    assert carol[0].to is None
    assert len(graph.sends()) == 2
    assert_private(bot.output(), secrets, ["ana says plum", "carol says fig"])


def test_one_unusable_message_does_not_sink_the_others(
    make_bot: MakeBot, graph: FakeGraph
) -> None:
    bot = make_bot()
    payload = wa.webhook(
        contacts=[wa.contact(phone=ANA), wa.contact(phone=BEN)],
        messages=[
            wa.text("ana says pear", phone=ANA),
            wa.text("x" * 300_000, phone=BEN),  # over max_message_bytes
        ],
    )

    assert bot.deliver(payload).status == 200
    assert graph.wait_for(lambda g: len(g.sends()) >= 1)
    time.sleep(SETTLE)
    bot.stop()

    assert [r.text for r in graph.replies_to(f"+{ANA}")] == ["ana says pear"]
    assert graph.replies_to(f"+{BEN}") == []
    assert "dropped one unusable message" in bot.output()


def test_a_redelivered_webhook_changes_nothing(
    make_bot: MakeBot, graph: FakeGraph
) -> None:
    bot = make_bot()
    texts = ["one lime", "two lime", "three lime"]

    sent = burst(bot, texts)
    again_during = bot.deliver(sent[1])  # Meta retries while the burst is open
    (first,) = replies(graph, 1)
    again_after = [bot.deliver(payload) for payload in sent]  # ... and much later
    burst(bot, ["a new message lime"])
    second = replies(graph, 2)[1]

    assert again_during.status == 200
    assert [a.status for a in again_after] == [200, 200, 200]
    assert first.text == "\n".join(texts)
    assert second.text == "a new message lime"
    assert len(graph.sends()) == 2


# -- what is refused or ignored -------------------------------------------------


def test_refused_and_empty_posts_cause_no_reply(
    make_bot: MakeBot, graph: FakeGraph, secrets: dict[str, str]
) -> None:
    bot = make_bot(WHATSAPP_PHONE_NUMBER_IDS=f"{wa.NUMBER_ID}, 100000000000007")
    forged = wa.raw(wa.from_user(wa.text("forged pear", phone=ANA)))
    elsewhere = wa.webhook(
        messages=[wa.text("to another business pear", phone=ANA)],
        number_id="100000000000008",
    )
    statuses = wa.webhook(statuses=[wa.status("wamid.out0001", "read", recipient=ANA)])
    garbage = b"this is not json {"
    reaction = wa.from_user(
        wa.item("reaction", {"message_id": "wamid.out0001", "emoji": "👍"}, phone=ANA)
    )

    refused = bot.post(forged, wa.sign(forged, "not-the-app-secret"))
    unsigned = bot.post(forged, None)
    status_only = bot.deliver(statuses)
    not_json = bot.post(garbage, wa.sign(garbage, secrets["WHATSAPP_APP_SECRET"]))
    only_reaction = bot.deliver(reaction)
    not_served = bot.deliver(elsewhere)
    handled_reaction = bot.wait_output("nothing to answer")
    burst(bot, ["still here quince", "and well quince"])
    (reply,) = replies(graph, 1)

    assert (refused.status, unsigned.status) == (403, 403)
    assert status_only.status == 200
    assert not_json.status == 400
    assert only_reaction.status == 200
    assert not_served.status == 200
    assert "business number not served here" in bot.output()
    assert handled_reaction
    assert reply.text == "still here quince\nand well quince"
    assert len(graph.sends()) == 1
    assert len([r for r in graph.requests if r.is_read]) == 1
    assert bot.get("/healthz").json() == {"role": "all", "redis": True, "worker": True}


def test_the_verification_handshake(make_bot: MakeBot, secrets: dict[str, str]) -> None:
    bot = make_bot()
    token = secrets["WHATSAPP_VERIFY_TOKEN"]

    def handshake(mode: str, token: str, challenge: str) -> tuple[int, str]:
        query = {
            "hub.mode": mode,
            "hub.verify_token": token,
            "hub.challenge": challenge,
        }
        answer = bot.get("/webhook?" + urllib.parse.urlencode(query))
        return answer.status, answer.body.decode()

    good = handshake(mode="subscribe", token=token, challenge="1158201444")
    wrong_token = handshake(mode="subscribe", token="guess", challenge="1")
    wrong_mode = handshake(mode="unsubscribe", token=token, challenge="1")
    bot.stop()

    assert good == (200, "1158201444")
    assert wrong_token[0] == 403
    assert wrong_mode[0] == 403
    assert token not in bot.output()


def test_the_logs_hold_no_text_number_or_secret(
    make_bot: MakeBot, graph: FakeGraph, secrets: dict[str, str]
) -> None:
    bot = make_bot(BOT_LOG_LEVEL="DEBUG")
    texts = ["my card is 4111 lychee", "città/città 🚀 lychee", "bsuid user lychee"]
    forged = wa.raw(wa.from_user(wa.text("forged lychee", phone=BEN)))
    garbage = b'{"not": "closed'
    failed = wa.status("wamid.out9999", "failed", recipient=ANA)
    failed["errors"] = [{"code": 131047, "title": "Re-engagement message"}]
    token = secrets["WHATSAPP_VERIFY_TOKEN"]

    burst(bot, texts[:2])
    carol = bot.deliver(wa.from_user(wa.text(texts[2], phone=None, user_id=CAROL)))
    bot.post(forged, wa.sign(forged, "forged-secret"))
    bot.post(garbage, wa.sign(garbage, secrets["WHATSAPP_APP_SECRET"]))
    bot.deliver(wa.webhook(statuses=[failed]))
    bot.get(f"/webhook?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=7")
    bot.get("/webhook?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=7")
    assert graph.wait_for(lambda g: len(g.sends()) == 2)
    code = bot.stop()
    output = bot.output()

    assert carol.status == 200
    assert code == 0
    assert f"namespace={bot.env['RAPIDFIRE_NAMESPACE']}" in output
    assert "worker stopped" in output
    assert "code(s) 131047" in output
    assert_private(output, secrets, [*texts, "forged lychee"])


# -- the two roles ----------------------------------------------------------------


def test_web_and_worker_roles_in_two_processes(
    make_bot: MakeBot, graph: FakeGraph, secrets: dict[str, str]
) -> None:
    # Each half gets only the secret it needs.
    web = make_bot("web", WHATSAPP_ACCESS_TOKEN=None)
    texts = ["split one melon", "split two melon", "split three melon"]

    sent = burst(web, texts)
    time.sleep(DEBOUNCE + SETTLE)
    before_worker = list(graph.requests)
    worker = make_bot("worker", WHATSAPP_APP_SECRET=None, BOT_PORT=None)
    (reply,) = replies(graph, 1)
    health = web.get("/healthz").json()
    worker_code, web_code = worker.stop(), web.stop()

    assert before_worker == []
    assert reply.text == "\n".join(texts)
    assert reply.body["context"] == {"message_id": wamid(sent[-1])}
    assert [r.is_read for r in graph.requests] == [True, False]
    assert health == {"role": "web", "redis": True}
    assert (worker_code, web_code) == (0, 0)
    assert "worker stopped: 1 batch(es) handled" in worker.output()
    for bot in (web, worker):
        assert f"namespace={web.env['RAPIDFIRE_NAMESPACE']}" in bot.output()
        assert_private(bot.output(), secrets, texts)


# -- send failures ----------------------------------------------------------------


def test_a_retryable_send_failure_is_retried(
    make_bot: MakeBot, graph: FakeGraph
) -> None:
    graph.fail_next_sends(130429)  # throughput limit: try again later
    bot = make_bot(BOT_SEND_ATTEMPTS="1")

    burst(bot, ["retry me cherry", "please cherry"])
    (reply,) = replies(graph, 1)

    attempts = graph.sends(ok=None)
    assert [r.ok for r in attempts] == [False, True]
    assert attempts[0].body == attempts[1].body
    assert reply.text == "retry me cherry\nplease cherry"
    assert "will be retried" in bot.output()


def test_a_permanent_send_failure_is_logged_and_dropped(
    make_bot: MakeBot, graph: FakeGraph
) -> None:
    graph.fail_next_sends(131047)  # outside the 24 h window: a retry cannot help
    bot = make_bot(BOT_SEND_ATTEMPTS="1")

    burst(bot, ["too late banana"])
    assert graph.wait_for(lambda g: len(g.sends(ok=False)) == 1)
    burst(bot, ["a later message banana"])
    (reply,) = replies(graph, 1)

    assert reply.text == "a later message banana"
    assert len(graph.sends(ok=None)) == 2
    assert "code=131047" in bot.output()
    assert "refused for good" in bot.output()


# -- the brain ------------------------------------------------------------------


def test_the_brain_is_replaced_by_one_variable(
    make_bot: MakeBot, graph: FakeGraph
) -> None:
    bot = make_bot(BOT_BRAIN="example_bot.brains:shout", PYTHONPATH=str(REPO / "tests"))

    burst(bot, ["quiet please", "thank you"])
    (reply,) = replies(graph, 1)

    assert reply.text == "QUIET PLEASE / THANK YOU"
    assert "brain example_bot.brains:shout" in bot.output()


def _load_brain() -> ModuleType:
    path = REPO / "examples" / "whatsapp_bot" / "brain.py"
    spec = importlib.util.spec_from_file_location("whatsapp_bot_brain", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _message(kind: MessageKind, text: str | None) -> InboundMessage:
    return InboundMessage(
        platform="whatsapp",
        conversation=f"wa:{wa.NUMBER_ID}:p:{ANA}",
        message_id=wa.new_id(),
        sender=Author(phone=f"+{ANA}"),
        timestamp=1760000000.0,
        kind=kind,
        text=text,
        reply_to=ReplyAddress("whatsapp", phone_number_id=wa.NUMBER_ID, to=f"+{ANA}"),
        platform_type=kind.value,
    )


def test_the_default_brain_renders_every_message_in_order() -> None:
    brain = _load_brain()
    burst = [
        _message(MessageKind.TEXT, "look at this"),
        _message(MessageKind.IMAGE, "holiday"),
        _message(MessageKind.STICKER, None),
        _message(MessageKind.REACTION, "👍"),
        _message(MessageKind.TEXT, "nice?"),
    ]

    reply = brain.make_reply(burst)

    assert reply == "look at this\n[image] holiday\n[sticker]\nnice?"


def test_the_default_brain_does_not_answer_reactions_only() -> None:
    brain = _load_brain()

    assert brain.make_reply([_message(MessageKind.REACTION, "👍")]) is None
    assert brain.make_reply([_message(MessageKind.REACTION, None)]) is None


# -- refusing to start ----------------------------------------------------------


BASE = {
    "WHATSAPP_APP_SECRET": "app-secret-start",
    "WHATSAPP_ACCESS_TOKEN": "EAAtest-start",
    "RAPIDFIRE_REDIS_URL": "redis://127.0.0.1:6379/0",
}


@pytest.mark.parametrize(
    ("unset", "named"),
    [
        ("WHATSAPP_APP_SECRET", "WHATSAPP_APP_SECRET"),
        ("RAPIDFIRE_REDIS_URL", "RAPIDFIRE_REDIS_URL"),
        ("WHATSAPP_ACCESS_TOKEN", "WHATSAPP_ACCESS_TOKEN"),
    ],
)
def test_the_bot_refuses_to_start_without(unset: str, named: str) -> None:
    env = bot_environment(**{**BASE, "BOT_PORT": str(free_port()), unset: None})

    code, output = run_to_exit(env)

    assert code == 2
    assert named in output
    assert "cannot start" in output


def test_the_bot_refuses_the_embedded_memory_server() -> None:
    env = bot_environment(
        **{**BASE, "BOT_PORT": str(free_port()), "RAPIDFIRE_REDIS_URL": "memory://"}
    )

    code, output = run_to_exit(env)

    assert code == 2
    assert "memory://" in output


def test_a_push_that_fails_answers_503_so_that_meta_retries(tmp_path: Path) -> None:
    # No Redis listens on this port: every push fails.
    env = bot_environment(
        WHATSAPP_APP_SECRET="app-secret-down",
        RAPIDFIRE_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        BOT_PORT=str(free_port()),
    )
    bot = Bot(env, tmp_path / "bot.log", role="web")
    try:
        bot.start()
        assert bot.wait_output("Uvicorn running"), bot.output()
        started = time.monotonic()
        answer = bot.deliver(wa.from_user(wa.text("lost? no: retried", phone=ANA)))
        took = time.monotonic() - started
        health = bot.get("/healthz")
    finally:
        code = bot.stop()

    assert answer.status == 503
    assert took < 5
    assert (health.status, health.json()) == (503, {"role": "web", "redis": False})
    assert "Redis does not answer yet" in bot.output()
    assert code == 0
