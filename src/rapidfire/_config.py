"""RedisConfig: the one place where every process learns where its batches live.

Producers and workers that share a namespace must share a RedisConfig (the
same URL, database and namespace). Build it from the environment in every
process with :meth:`RedisConfig.from_env`, and compare the line that
:meth:`RedisConfig.describe` prints at start: it is the same in every process
that can see the others' batches.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from ._errors import ConfigurationError, translate
from ._validate import Duration, check_int, seconds

if TYPE_CHECKING:
    import redis
    import redis.asyncio

__all__ = ["CLUSTER_SHARDS", "ENV_URL", "RedisConfig"]

ENV_URL = "RAPIDFIRE_REDIS_URL"
ENV_NAMESPACE = "RAPIDFIRE_NAMESPACE"
ENV_FALLBACK_URL = "REDIS_URL"

_SCHEMES = ("redis", "rediss", "unix", "memory")
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_CERT_REQS = ("required", "optional", "none")
_MAX_SHARDS = 1024
CLUSTER_SHARDS = 256
"""Shards of a namespace on a Redis Cluster unless set. Over 3 to 30 primaries
with evenly split slots, each primary holds 8 to 86 shards, within 10% of the
mean; each shard's keys see about 0.4% of the namespace's requests."""


@dataclass(frozen=True)
class RedisConfig:
    """Where a namespace's batches live, and how to reach them.

    Build one with :meth:`from_url` or :meth:`from_env`; the constructor takes
    the same arguments. The config is frozen and validated when built: a bad
    value raises :class:`ConfigurationError` naming the field and the value.

    Args:
        url: ``redis://[user:password@]host[:port][/db]``, ``rediss://...``
            for TLS, ``unix:///path/to/socket[?db=N]``, or ``memory://[name]``
            for the embedded in-process server (for tests and demos).
        namespace: Prefix of every key; processes that share a namespace share
            batches. Letters, digits and ``_ . : -``, at most 64 characters.
        db: Database index; overrides the one in the URL.
        username: Overrides the URL's user name.
        password: Overrides the URL's password. Never shown in ``repr``,
            :meth:`describe` or logs.
        connect_timeout: Seconds to wait for a connection.
        command_timeout: Seconds to wait for an answer to a command.
        retries: How often an idempotent step is retried after a connection
            error, with exponential backoff.
        health_check_interval: Seconds after which an idle pooled connection is
            checked with PING before use.
        max_connections: Pool size limit (per node on a cluster); ``None``
            for no limit.
        shards: How many shards the namespace's ready index is split into;
            each shard is one hash slot. Part of the namespace's layout,
            recorded in Redis on first use. Unset: 1 on a single server,
            256 (:data:`CLUSTER_SHARDS`) on a cluster.
        cluster: ``True`` for Redis Cluster, ``False`` for a single server,
            ``None`` (the default) to ask the server on first use. A URL
            naming several nodes (``redis://h1:p1,h2:p2``) means a cluster.
        ssl_ca_certs, ssl_certfile, ssl_keyfile: TLS files (``rediss://``).
        ssl_cert_reqs: ``"required"`` (default), ``"optional"`` or ``"none"``.
        ssl_check_hostname: Verify the server's host name (default true).
    """

    url: str = field(repr=False)
    namespace: str = "rapidfire"
    db: int | None = None
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    connect_timeout: Duration = 5.0
    command_timeout: Duration = 5.0
    retries: int = 3
    health_check_interval: Duration = 15.0
    max_connections: int | None = None
    shards: int | None = None
    cluster: bool | None = None
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: str = "required"
    ssl_check_hostname: bool = True

    scheme: str = field(init=False, repr=False)
    host: str = field(init=False, repr=False)
    port: int = field(init=False, repr=False)
    path: str = field(init=False, repr=False)
    nodes: tuple[tuple[str, int], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url:
            raise ConfigurationError(
                f"url must be a non-empty string, got {self.url!r}"
            )
        parts = urlsplit(self.url)
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            raise ConfigurationError(
                f"url has unknown scheme {parts.scheme!r} in {_redact_url(self.url)!r};"
                f" use one of {', '.join(s + '://' for s in _SCHEMES)}"
            )
        if parts.fragment or "#" in self.url:
            raise ConfigurationError(
                f"url {_redact_url(self.url)!r} contains '#': a password with '#',"
                " '?', '/' or '@' must be percent-encoded (or set"
                " RAPIDFIRE_REDIS_PASSWORD)"
            )
        query = parse_qs(parts.query)
        unknown = sorted(set(query) - {"db"})
        if unknown:
            raise ConfigurationError(
                f"url has unknown query parameter(s) {', '.join(unknown)} in"
                f" {_redact_url(self.url)!r}; only ?db=N is read (set the other"
                " options as RedisConfig fields)"
            )
        host, port, path = "", 0, ""
        url_db: str | None = None
        nodes: tuple[tuple[str, int], ...] = ()
        if scheme in ("redis", "rediss"):
            nodes = _parse_nodes(parts.netloc.rpartition("@")[2], self.url)
            host, port = nodes[0]
            db_part = parts.path.lstrip("/")
            url_db = db_part or None
        elif scheme == "unix":
            path = unquote(parts.path)
            if not path:
                raise ConfigurationError(
                    f"url {_redact_url(self.url)!r} names no socket path"
                    " (unix:///path/to.sock)"
                )
            host = "localhost"
        else:
            host = parts.netloc or "default"
            db_part = parts.path.lstrip("/")
            url_db = db_part or None
        if "db" in query:
            url_db = query["db"][-1]
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "nodes", nodes)

        if self.db is None:
            object.__setattr__(self, "db", _parse_db(url_db if url_db else "0"))
        elif isinstance(self.db, bool) or not isinstance(self.db, int) or self.db < 0:
            raise ConfigurationError(f"db must be an integer >= 0, got {self.db!r}")
        if self.username is None and parts.username:
            object.__setattr__(self, "username", unquote(parts.username))
        if self.password is None and parts.password:
            object.__setattr__(self, "password", unquote(parts.password))

        if not isinstance(self.namespace, str) or not _NAMESPACE.fullmatch(
            self.namespace
        ):
            raise ConfigurationError(
                f"namespace must be 1-64 letters, digits or _ . : - (starting with"
                f" a letter or digit), got {self.namespace!r}"
            )
        for name in ("connect_timeout", "command_timeout", "health_check_interval"):
            value = seconds(name, getattr(self, name))
            if name != "health_check_interval" and value <= 0:
                raise ConfigurationError(f"{name} must be > 0 s, got {value!r}")
            object.__setattr__(self, name, value)
        check_int("retries", self.retries, 0, 100)
        if self.shards is not None:
            check_int("shards", self.shards, 1, _MAX_SHARDS)
        self._check_cluster()
        if self.max_connections is not None:
            check_int("max_connections", self.max_connections, 1, 1_000_000)
        if self.ssl_cert_reqs not in _CERT_REQS:
            raise ConfigurationError(
                f"ssl_cert_reqs must be one of {', '.join(_CERT_REQS)},"
                f" got {self.ssl_cert_reqs!r}"
            )

    def _check_cluster(self) -> None:
        cluster = self.cluster
        if cluster is not None and not isinstance(cluster, bool):
            raise ConfigurationError(
                f"cluster must be True, False or None, got {cluster!r}"
            )
        if len(self.nodes) > 1:
            if cluster is False:
                raise ConfigurationError(
                    f"url {_redact_url(self.url)!r} names {len(self.nodes)} nodes,"
                    " which only a Redis Cluster has, but cluster=False"
                )
            object.__setattr__(self, "cluster", cluster := True)
        if cluster and self.scheme not in ("redis", "rediss"):
            raise ConfigurationError(
                f"cluster=True needs a redis:// or rediss:// url, got"
                f" {self.scheme}://: Redis Cluster runs on TCP only"
            )
        if cluster and self.db != 0:
            raise ConfigurationError(
                f"db must be 0 on a Redis Cluster, got {self.db!r}: a cluster has"
                " database 0 only (use another namespace to keep work apart)"
            )
        if self.shards is None and cluster is not None:
            object.__setattr__(self, "shards", CLUSTER_SHARDS if cluster else 1)

    @property
    def resolved(self) -> bool:
        """True once cluster mode and the shard count are known."""
        return self.cluster is not None and self.shards is not None

    def detect(self) -> RedisConfig:
        """This config with cluster mode (and so the default shard count)
        learned from the server when it was left to detection; otherwise
        the config itself. Connects once to the first node."""
        known = self._known_without_asking()
        if known is not None:
            return known
        import redis as redis_sync

        # db 0: SELECT fails on a cluster, which is what this asks.
        client = redis_sync.Redis(**self._node_options(None))
        try:
            with _translated(self):
                info = client.info("cluster")
        finally:
            client.close()
        return self._detected(info)

    async def adetect(self) -> RedisConfig:
        """:meth:`detect` for asyncio code."""
        known = self._known_without_asking()
        if known is not None:
            return known
        import redis.asyncio as redis_async

        client = redis_async.Redis(**self._node_options(None))
        try:
            with _translated(self):
                info = await client.info("cluster")
        finally:
            await client.aclose()
        return self._detected(info)

    def _known_without_asking(self) -> RedisConfig | None:
        """The resolved config when no server need be asked, else None."""
        if self.resolved:
            return self
        if self.cluster is not None or self.is_memory or self.scheme == "unix":
            return replace(self, cluster=bool(self.cluster))
        return None

    def _detected(self, info: Mapping[str, Any]) -> RedisConfig:
        cluster = str(info.get("cluster_enabled", 0)) == "1"
        if cluster and self.db != 0:
            raise ConfigurationError(
                f"{self.where} is a Redis Cluster, which has database 0 only, but"
                f" db={self.db} is configured: set db 0 (use another namespace to"
                " keep work apart)"
            )
        return replace(self, cluster=cluster)

    # -- building ------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisConfig:
        """Build a config from a URL; ``options`` are the other fields."""
        return cls(url=url, **options)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        default_url: str | None = None,
        **options: Any,
    ) -> RedisConfig:
        """Build a config from environment variables.

        ``RAPIDFIRE_REDIS_URL`` (or, failing that, ``REDIS_URL``) gives the URL,
        ``RAPIDFIRE_NAMESPACE`` the namespace. Optional: ``RAPIDFIRE_REDIS_DB``,
        ``RAPIDFIRE_REDIS_USERNAME``, ``RAPIDFIRE_REDIS_PASSWORD``,
        ``RAPIDFIRE_REDIS_CONNECT_TIMEOUT``, ``RAPIDFIRE_REDIS_TIMEOUT``,
        ``RAPIDFIRE_REDIS_RETRIES``, ``RAPIDFIRE_REDIS_MAX_CONNECTIONS``,
        ``RAPIDFIRE_SHARDS``, ``RAPIDFIRE_REDIS_CLUSTER`` (``1``, ``0`` or
        ``auto``), ``RAPIDFIRE_REDIS_SSL_CA_CERTS``,
        ``RAPIDFIRE_REDIS_SSL_CERTFILE``, ``RAPIDFIRE_REDIS_SSL_KEYFILE``,
        ``RAPIDFIRE_REDIS_SSL_CERT_REQS``, ``RAPIDFIRE_REDIS_SSL_CHECK_HOSTNAME``
        (``0``/``1``). Keyword ``options`` win over the environment.

        A ``memory://`` URL in the environment is refused: the embedded server
        is private to one process.

        With no URL in the environment this raises :class:`ConfigurationError`
        instead of guessing: a process that quietly used a default server could
        be looking at a different store than its peers. Only demos and tests
        pass ``default_url="memory://"``, and they say so in their output.
        """
        env = os.environ if environ is None else environ
        if ENV_URL in env and not env[ENV_URL].strip():
            raise ConfigurationError(
                f"{ENV_URL} is set but empty: set it to the server every producer"
                " and worker shares, or unset it"
            )
        url = env.get(ENV_URL) or env.get(ENV_FALLBACK_URL) or default_url
        if url and url != default_url and url.lower().startswith("memory:"):
            raise ConfigurationError(
                f"{ENV_URL}={url} names the embedded server, which lives inside one"
                " process: producers and workers in other processes would never"
                " see its batches. Use redis://... (memory:// is for tests and"
                " demos that pass default_url)"
            )
        if not url:
            raise ConfigurationError(
                f"{ENV_URL} is not set: tell every producer and worker where Redis"
                f" is (for example {ENV_URL}=redis://127.0.0.1:6379/0); rapidfire"
                " never falls back to a default server"
            )
        found: dict[str, Any] = {}
        if env.get(ENV_NAMESPACE):
            found["namespace"] = env[ENV_NAMESPACE]
        numbers = {
            "RAPIDFIRE_REDIS_DB": ("db", int),
            "RAPIDFIRE_REDIS_CONNECT_TIMEOUT": ("connect_timeout", float),
            "RAPIDFIRE_REDIS_TIMEOUT": ("command_timeout", float),
            "RAPIDFIRE_REDIS_RETRIES": ("retries", int),
            "RAPIDFIRE_REDIS_MAX_CONNECTIONS": ("max_connections", int),
            "RAPIDFIRE_SHARDS": ("shards", int),
        }
        for var, (name, kind) in numbers.items():
            if env.get(var):
                try:
                    found[name] = kind(env[var])
                except ValueError:
                    raise ConfigurationError(
                        f"{var} must be {'an integer' if kind is int else 'a number'},"
                        f" got {env[var]!r}"
                    ) from None
        strings = {
            "RAPIDFIRE_REDIS_USERNAME": "username",
            "RAPIDFIRE_REDIS_PASSWORD": "password",
            "RAPIDFIRE_REDIS_SSL_CA_CERTS": "ssl_ca_certs",
            "RAPIDFIRE_REDIS_SSL_CERTFILE": "ssl_certfile",
            "RAPIDFIRE_REDIS_SSL_KEYFILE": "ssl_keyfile",
            "RAPIDFIRE_REDIS_SSL_CERT_REQS": "ssl_cert_reqs",
        }
        for var, name in strings.items():
            if env.get(var):
                found[name] = env[var]
        mode = env.get("RAPIDFIRE_REDIS_CLUSTER", "").strip().lower()
        if mode:
            modes: dict[str, bool | None] = {"1": True, "true": True, "yes": True}
            modes.update({"0": False, "false": False, "no": False, "auto": None})
            if mode not in modes:
                raise ConfigurationError(
                    "RAPIDFIRE_REDIS_CLUSTER must be 1, 0 or auto, got"
                    f" {env['RAPIDFIRE_REDIS_CLUSTER']!r}"
                )
            found["cluster"] = modes[mode]
        check = env.get("RAPIDFIRE_REDIS_SSL_CHECK_HOSTNAME")
        if check:
            if check.lower() not in ("0", "1", "true", "false", "yes", "no"):
                raise ConfigurationError(
                    f"RAPIDFIRE_REDIS_SSL_CHECK_HOSTNAME must be 0 or 1, got {check!r}"
                )
            found["ssl_check_hostname"] = check.lower() in ("1", "true", "yes")
        found.update(options)
        return cls(url=url, **found)

    def with_namespace(self, namespace: str) -> RedisConfig:
        """The same server and settings, another namespace."""
        return replace(self, namespace=namespace)

    # -- describing ----------------------------------------------------------

    @property
    def is_memory(self) -> bool:
        """True for ``memory://``, the embedded in-process server."""
        return self.scheme == "memory"

    @property
    def where(self) -> str:
        """``host:port`` (or the socket path, or ``memory://name``)."""
        if self.scheme == "unix":
            return self.path
        if self.scheme == "memory":
            return f"memory://{self.host}"
        return ",".join(_hostport(h, p) for h, p in self.nodes)

    def describe(self) -> str:
        """One line naming server, database and namespace; no password.

        Every process logs it once at start: producers and workers that print
        different lines are not looking at the same batches.
        """
        if self.scheme == "memory":
            server = f"memory://{self.host} (embedded, this process only)"
        elif self.scheme == "unix":
            server = f"unix://{self.path}"
        else:
            secret = ":***" if self.password else ""
            user = (
                f"{self.username or ''}{secret}@" if (self.username or secret) else ""
            )
            server = f"{self.scheme}://{user}{self.where}"
            if self.cluster:
                server += " (cluster)"
        return f"{server} db={self.db} namespace={self.namespace}"

    def __repr__(self) -> str:
        return f"RedisConfig({self.describe()!r})"

    # -- connecting ----------------------------------------------------------

    def client(self) -> redis.Redis:
        """A new synchronous redis-py client for this config (bytes replies):
        a ``RedisCluster`` when ``cluster`` is true. With ``cluster=None``
        call :meth:`detect` first; batchers do that themselves."""
        if self.is_memory:
            return _memory_client(self, asynchronous=False)  # type: ignore[no-any-return]
        if self.cluster:
            from redis.cluster import ClusterNode, RedisCluster

            # The sync cluster client reads the slot map as it is built: a
            # node that is down then is reported as RedisUnavailableError.
            with _translated(self):
                return RedisCluster(  # type: ignore[return-value]
                    startup_nodes=[
                        ClusterNode(h, p)  # type: ignore[no-untyped-call]
                        for h, p in self.nodes
                    ],
                    **self._cluster_options(),
                )
        import redis as redis_sync

        return redis_sync.Redis(**self._client_options())

    def async_client(self) -> redis.asyncio.Redis:
        """A new asyncio redis-py client for this config (bytes replies);
        see :meth:`client` (use :meth:`adetect` first)."""
        if self.is_memory:
            return _memory_client(self, asynchronous=True)  # type: ignore[no-any-return]
        if self.cluster:
            from redis.asyncio.cluster import ClusterNode, RedisCluster

            return RedisCluster(  # type: ignore[return-value]
                startup_nodes=[ClusterNode(h, p) for h, p in self.nodes],
                **self._cluster_options(),
            )
        import redis.asyncio as redis_async

        return redis_async.Redis(**self._client_options())

    def node_client(self, node: tuple[str, int] | None = None) -> redis.Redis:
        """A plain client for one node of a cluster (the first seed unless
        ``node`` is given), as pub/sub needs; :meth:`client` elsewhere."""
        if not self.cluster:
            return self.client()
        import redis as redis_sync

        return redis_sync.Redis(**self._node_options(node))

    def async_node_client(
        self, node: tuple[str, int] | None = None
    ) -> redis.asyncio.Redis:
        """:meth:`node_client` for asyncio code."""
        if not self.cluster:
            return self.async_client()
        import redis.asyncio as redis_async

        return redis_async.Redis(**self._node_options(node))

    def _node_options(self, node: tuple[str, int] | None) -> dict[str, Any]:
        host, port = node or self.nodes[0]
        return {**self._client_options(), "host": host, "port": port, "db": 0}

    def _cluster_options(self) -> dict[str, Any]:
        options = self._client_options()
        for name in ("db", "host", "port"):
            options.pop(name, None)
        if options["max_connections"] is None:
            options.pop("max_connections")
        # MOVED, ASK and TRYAGAIN are followed inside redis-py (the command
        # was not run); a connection error is not resent by redis-py, which
        # refreshes its slot map instead: rapidfire decides what to resend.
        return options

    def _client_options(self) -> dict[str, Any]:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        options: dict[str, Any] = {
            "db": self.db,
            "username": self.username,
            "password": self.password,
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": self.command_timeout,
            "socket_keepalive": True,
            "health_check_interval": self.health_check_interval,
            "max_connections": self.max_connections,
            # rapidfire retries only steps that are safe to repeat; redis-py must
            # not resend a push on its own after an ambiguous failure.
            "retry": Retry(NoBackoff(), 0),
            "client_name": f"rapidfire:{self.namespace}",
        }
        if self.scheme == "unix":
            options["unix_socket_path"] = self.path
        else:
            options["host"] = self.host
            options["port"] = self.port
        if self.scheme == "rediss":
            options.update(
                ssl=True,
                ssl_ca_certs=self.ssl_ca_certs,
                ssl_certfile=self.ssl_certfile,
                ssl_keyfile=self.ssl_keyfile,
                ssl_cert_reqs=self.ssl_cert_reqs,
                ssl_check_hostname=self.ssl_check_hostname,
            )
        return options


def _parse_nodes(text: str, url: str) -> tuple[tuple[str, int], ...]:
    """``host[:port][,host[:port]...]`` (``[v6]:port`` too) as pairs."""
    nodes = []
    for part in text.split(","):
        host, port_text = part, ""
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else rest
        elif part.count(":") == 1:
            host, port_text = part.split(":")
        if not host:
            raise ConfigurationError(
                f"url {_redact_url(url)!r} names no host: rapidfire does not"
                " assume localhost (write redis://127.0.0.1:6379/0)"
            )
        if any(c.isspace() for c in host):
            raise ConfigurationError(
                f"url {_redact_url(url)!r} has a space in a host name"
            )
        try:
            if port_text and not re.fullmatch(r"[0-9]{1,5}", port_text):
                raise ValueError(port_text)
            port = int(port_text) if port_text else 6379
            if not 0 < port < 65536:
                raise ValueError(port)
        except ValueError:
            raise ConfigurationError(
                f"url has an invalid port in {_redact_url(url)!r}"
            ) from None
        nodes.append((host.lower(), port))
    return tuple(dict.fromkeys(nodes))


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextmanager
def _translated(config: RedisConfig) -> Iterator[None]:
    with translate(config.where):
        yield


def _parse_db(text: str) -> int:
    # A malformed URL can put part of a password here: never echo that.
    shown = "<redacted>" if "@" in text or ":" in text else text
    try:
        db = int(text)
    except ValueError:
        raise ConfigurationError(f"db must be an integer >= 0, got {shown!r}") from None
    if db < 0:
        raise ConfigurationError(f"db must be an integer >= 0, got {shown!r}")
    return db


def _redact_url(url: str) -> str:
    """The URL with everything between ``//`` and the last ``@`` hidden."""
    head, sep, rest = url.partition("//")
    if not sep or "@" not in rest:
        return url
    return f"{head}//***@{rest.rsplit('@', 1)[1]}"


# The embedded servers, one per memory:// name, shared by every client in this
# process so that a producer and a worker thread see the same data.
_memory_servers: dict[str, Any] = {}
_memory_lock = threading.Lock()


def _memory_client(config: RedisConfig, *, asynchronous: bool) -> Any:
    try:
        import fakeredis
        import lupa  # noqa: F401  (fakeredis needs it to run the Lua scripts)
    except ImportError:
        raise ConfigurationError(
            "memory:// needs the embedded server: pip install 'rapidfire[memory]'"
        ) from None
    with _memory_lock:
        server = _memory_servers.get(config.host)
        if server is None:
            server = _memory_servers[config.host] = fakeredis.FakeServer()
    cls = fakeredis.FakeAsyncRedis if asynchronous else fakeredis.FakeRedis
    return cls(server=server, db=config.db)
