"""The curated public surface of rapidfire.transports."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import rapidfire.transports as transports
from rapidfire._errors import RapidfireError
from rapidfire.transports import (
    AsyncBaileysSender,
    AsyncConsoleSender,
    AsyncSender,
    AsyncWhatsAppSender,
    BaileysSender,
    ConsoleSender,
    Sender,
    TransportError,
    WhatsAppSender,
)

# Classes that stay internal on purpose.
INTERNAL = {"ContactIndex"}


def isort_key(name: str) -> tuple[int, str]:
    if name.isupper():
        return 0, name
    return (1 if name[0].isupper() else 2), name


def test_all_is_sorted_and_every_name_exists() -> None:
    assert transports.__all__ == sorted(transports.__all__, key=isort_key)
    assert len(set(transports.__all__)) == len(transports.__all__)
    for name in transports.__all__:
        assert hasattr(transports, name), name


def test_every_public_class_of_the_private_modules_is_exported() -> None:
    missing = set()
    for module_info in pkgutil.iter_modules(transports.__path__):
        module = importlib.import_module(f"{transports.__name__}.{module_info.name}")
        for name in getattr(module, "__all__", []):
            exported = name in transports.__all__ or name in INTERNAL
            if inspect.isclass(getattr(module, name)) and not exported:
                missing.add(f"{module_info.name}.{name}")

    assert missing == set()


def test_errors_share_the_rapidfire_root() -> None:
    assert issubclass(TransportError, RapidfireError)


def test_senders_satisfy_their_protocols() -> None:
    sync = WhatsAppSender(access_token="t")
    bridge = BaileysSender(url="http://127.0.0.1:9/send", secret="s")

    assert isinstance(sync, Sender)
    assert isinstance(bridge, Sender)
    assert isinstance(ConsoleSender(), Sender)
    for async_sender in (
        AsyncWhatsAppSender(sync),
        AsyncBaileysSender(bridge),
        AsyncConsoleSender(),
    ):
        assert isinstance(async_sender, AsyncSender)
        assert inspect.iscoroutinefunction(async_sender.send_text)
    assert not inspect.iscoroutinefunction(sync.send_text)
