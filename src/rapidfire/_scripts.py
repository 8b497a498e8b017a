"""The Lua scripts, loaded from the package's ``scripts/`` folder.

Each operation is one ``.lua`` file whose header lists its KEYS, ARGV and
return value. ``_lib.lua`` is prepended to each before loading (except
:data:`STANDALONE` ones). Scripts are
called by SHA (EVALSHA); after NOSCRIPT (a restart, a failover, SCRIPT FLUSH)
the executor loads the source and calls again.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources

__all__ = ["SCRIPT_NAMES", "Script", "script"]

SCRIPT_NAMES = (
    "ack",
    "claim",
    "extend",
    "flush",
    "heartbeat",
    "nack",
    "owns",
    "peek",
    "purge",
    "push",
    "requeue",
)


@dataclass(frozen=True)
class Script:
    """One loaded script: its name, full source and SHA1."""

    name: str
    source: str
    sha: str

    def __repr__(self) -> str:
        return f"Script({self.name!r}, sha={self.sha[:12]})"


def _read(name: str) -> str:
    return (
        resources.files("rapidfire")
        .joinpath(f"scripts/{name}.lua")
        .read_text(encoding="utf-8")
    )


# Scripts that need none of _lib.lua: sent without it, since defining its
# functions costs each call a few microseconds, much of what peek costs.
STANDALONE = frozenset({"peek"})


@functools.cache
def script(name: str) -> Script:
    """The script called ``name`` (see :data:`SCRIPT_NAMES`)."""
    if name not in SCRIPT_NAMES:
        raise KeyError(name)
    source = _read(name) if name in STANDALONE else _read("_lib") + "\n" + _read(name)
    return Script(name, source, hashlib.sha1(source.encode("utf-8")).hexdigest())
