"""RedisConfig: URLs, the environment, validation, describe() and connecting."""

from __future__ import annotations

import dataclasses
import socket
import uuid
from datetime import timedelta

import pytest
import redis

from rapidfire import (
    Batcher,
    ConfigurationError,
    RapidfireError,
    RedisConfig,
    RedisUnavailableError,
)

SECRET = "hunter2-s3cret"


def free_loopback_port() -> int:
    """A loopback port nothing listens on: bound once to pick it, then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- from_url -------------------------------------------------------------------


def test_redis_url_gives_host_port_and_db():
    config = RedisConfig.from_url("redis://cache.internal:6380/4", namespace="app")

    assert (config.scheme, config.host, config.port) == (
        "redis",
        "cache.internal",
        6380,
    )
    assert config.db == 4
    assert config.namespace == "app"
    assert config.where == "cache.internal:6380"
    assert not config.is_memory


def test_redis_url_defaults_to_port_6379_db_0():
    config = RedisConfig.from_url("redis://cache.internal")

    assert (config.host, config.port, config.db) == ("cache.internal", 6379, 0)
    assert config.namespace == "rapidfire"


@pytest.mark.parametrize(
    "url", ["redis://", "redis:///5", "redis://:6379", "rediss://"]
)
def test_a_url_without_a_host_is_refused_not_taken_as_localhost(url: str):
    with pytest.raises(ConfigurationError, match="names no host"):
        RedisConfig.from_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:6379#kT9@prod-redis.internal:6379/2",
        "redis://:abc/def@127.0.0.1:16391/0",
        "redis://:6379/My+Pass/word@127.0.0.1:6379/0",
        "redis://:p?ss@127.0.0.1:6379/0",
    ],
)
def test_a_password_with_special_characters_is_never_echoed(url: str):
    secret_parts = ("kT9", "abc/def", "My+Pass", "p?ss")

    with pytest.raises(ConfigurationError) as caught:
        RedisConfig.from_url(url)

    assert not any(part in str(caught.value) for part in secret_parts)


def test_from_env_refuses_memory_and_an_empty_url():
    with pytest.raises(ConfigurationError, match="embedded server"):
        RedisConfig.from_env({"RAPIDFIRE_REDIS_URL": "memory://"})
    with pytest.raises(ConfigurationError, match="set but empty"):
        RedisConfig.from_env({"RAPIDFIRE_REDIS_URL": " ", "REDIS_URL": "redis://h"})

    assert RedisConfig.from_env({}, default_url="memory://").is_memory


def test_redis_url_takes_user_and_password():
    config = RedisConfig.from_url(f"redis://worker:{SECRET}@h:6379/0")

    assert config.username == "worker"
    assert config.password == SECRET


def test_rediss_url_connects_over_tls():
    config = RedisConfig.from_url("rediss://secure.example:6390/2")
    client = config.client()
    try:
        connection_class = client.connection_pool.connection_class
    finally:
        client.close()

    assert config.scheme == "rediss"
    assert (config.host, config.port, config.db) == ("secure.example", 6390, 2)
    assert issubclass(connection_class, redis.SSLConnection)
    assert config.describe().startswith("rediss://secure.example:6390 ")


def test_unix_url_gives_socket_path_and_db_from_query():
    config = RedisConfig.from_url("unix:///var/run/redis/redis.sock?db=3")
    client = config.client()
    try:
        connection_class = client.connection_pool.connection_class
    finally:
        client.close()

    assert config.scheme == "unix"
    assert config.path == "/var/run/redis/redis.sock"
    assert config.db == 3
    assert config.where == "/var/run/redis/redis.sock"
    assert issubclass(connection_class, redis.UnixDomainSocketConnection)


def test_unix_url_without_path_is_refused():
    with pytest.raises(ConfigurationError, match="socket path"):
        RedisConfig.from_url("unix://")


def test_unix_url_error_does_not_show_the_password():
    with pytest.raises(ConfigurationError) as info:
        RedisConfig.from_url(f"unix://user:{SECRET}@")

    assert SECRET not in str(info.value)


def test_memory_url_names_an_embedded_server():
    named = RedisConfig.from_url("memory://demo/2")
    default = RedisConfig.from_url("memory://")

    assert named.is_memory
    assert (named.host, named.db) == ("demo", 2)
    assert named.where == "memory://demo"
    assert default.host == "default"
    assert "embedded" in named.describe()


@pytest.mark.parametrize(
    ("url", "db"),
    [
        ("redis://h", 0),
        ("redis://h/7", 7),
        ("redis://h:6379/12", 12),
        ("redis://h?db=5", 5),
        ("redis://h/1?db=6", 6),
        ("unix:///tmp/r.sock?db=9", 9),
        ("memory://x?db=4", 4),
    ],
)
def test_db_comes_from_the_path_or_the_query(url: str, db: int):
    config = RedisConfig.from_url(url)

    assert config.db == db


def test_db_keyword_overrides_the_url():
    config = RedisConfig.from_url("redis://h/3?db=4", db=8)

    assert config.db == 8


@pytest.mark.parametrize("url", ["redis://h/abc", "redis://h?db=x1", "redis://h/-1"])
def test_db_that_is_not_a_number_names_db_and_the_value(url: str):
    bad = url.rsplit("=", 1)[-1] if "?" in url else url.rsplit("/", 1)[-1]

    with pytest.raises(ConfigurationError) as info:
        RedisConfig.from_url(url)

    assert "db" in str(info.value)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("db", [-1, True, "2", 1.0])
def test_db_keyword_must_be_a_non_negative_int(db: object):
    with pytest.raises(ConfigurationError, match=r"db must be an integer >= 0") as info:
        RedisConfig.from_url("redis://h", db=db)

    assert repr(db) in str(info.value)


def test_unknown_scheme_is_named_with_the_valid_ones():
    with pytest.raises(ConfigurationError) as info:
        RedisConfig.from_url(f"http://user:{SECRET}@h:80/0")

    message = str(info.value)
    assert "'http'" in message
    assert "redis://" in message
    assert "memory://" in message
    assert SECRET not in message


def test_invalid_port_is_refused():
    with pytest.raises(ConfigurationError, match="port"):
        RedisConfig.from_url("redis://h:notaport/0")


@pytest.mark.parametrize("url", ["", None, 42])
def test_url_must_be_a_non_empty_string(url: object):
    with pytest.raises(ConfigurationError, match="url"):
        RedisConfig(url=url)  # type: ignore[arg-type]


# -- validation -----------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["a", "app.prod:v1-2_x", "9lives", "n" * 64])
def test_valid_namespaces_are_kept(namespace: str):
    config = RedisConfig.from_url("memory://", namespace=namespace)

    assert config.namespace == namespace


@pytest.mark.parametrize(
    "namespace", ["", " x", "has space", "-lead", ":lead", "a/b", "n{x}", "n" * 65, 5]
)
def test_bad_namespace_names_the_field_and_the_value(namespace: object):
    with pytest.raises(ConfigurationError) as info:
        RedisConfig.from_url("memory://", namespace=namespace)

    assert "namespace" in str(info.value)
    assert repr(namespace) in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("connect_timeout", 0),
        ("connect_timeout", -1.0),
        ("command_timeout", float("nan")),
        ("command_timeout", "5"),
        ("health_check_interval", -1),
        ("retries", -1),
        ("retries", 1.5),
        ("shards", 0),
        ("shards", 1025),
        ("shards", True),
        ("max_connections", 0),
        ("ssl_cert_reqs", "maybe"),
    ],
)
def test_bad_setting_names_the_field_and_the_value(field: str, value: object):
    with pytest.raises(ConfigurationError) as info:
        RedisConfig.from_url("redis://h", **{field: value})

    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, RapidfireError)
    assert field in str(info.value)
    assert repr(value) in str(info.value)


def test_durations_take_seconds_or_timedelta():
    config = RedisConfig.from_url(
        "redis://h", connect_timeout=timedelta(milliseconds=250), command_timeout=2
    )

    assert config.connect_timeout == 0.25
    assert config.command_timeout == 2.0


def test_config_is_frozen_and_with_namespace_copies_it():
    config = RedisConfig.from_url("redis://h:6380/3", namespace="one", retries=1)
    other = config.with_namespace("two")

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.namespace = "changed"  # type: ignore[misc]

    assert (other.namespace, other.where, other.db, other.retries) == (
        "two",
        "h:6380",
        3,
        1,
    )
    assert config.namespace == "one"


# -- from_env -------------------------------------------------------------------


def test_from_env_reads_the_url_and_the_namespace():
    config = RedisConfig.from_env(
        {"RAPIDFIRE_REDIS_URL": "redis://a:6390/2", "RAPIDFIRE_NAMESPACE": "bot"}
    )

    assert (config.where, config.db, config.namespace) == ("a:6390", 2, "bot")


def test_from_env_prefers_rapidfire_url_over_redis_url():
    config = RedisConfig.from_env(
        {"RAPIDFIRE_REDIS_URL": "redis://mine", "REDIS_URL": "redis://shared"}
    )

    assert config.host == "mine"


def test_from_env_falls_back_to_redis_url():
    env = {"REDIS_URL": "redis://shared:6381/1"}

    config = RedisConfig.from_env(env)

    assert (config.where, config.db) == ("shared:6381", 1)


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("RAPIDFIRE_REDIS_URL", "redis://from-os:6379/5")
    monkeypatch.setenv("RAPIDFIRE_NAMESPACE", "osns")

    config = RedisConfig.from_env()

    assert (config.host, config.db, config.namespace) == ("from-os", 5, "osns")


@pytest.mark.parametrize(
    ("var", "text", "field", "value"),
    [
        ("RAPIDFIRE_REDIS_DB", "6", "db", 6),
        ("RAPIDFIRE_REDIS_CONNECT_TIMEOUT", "0.5", "connect_timeout", 0.5),
        ("RAPIDFIRE_REDIS_TIMEOUT", "2.5", "command_timeout", 2.5),
        ("RAPIDFIRE_REDIS_RETRIES", "7", "retries", 7),
        ("RAPIDFIRE_REDIS_MAX_CONNECTIONS", "40", "max_connections", 40),
        ("RAPIDFIRE_SHARDS", "8", "shards", 8),
        ("RAPIDFIRE_REDIS_USERNAME", "svc", "username", "svc"),
        ("RAPIDFIRE_REDIS_PASSWORD", SECRET, "password", SECRET),
        ("RAPIDFIRE_REDIS_SSL_CA_CERTS", "/ca.pem", "ssl_ca_certs", "/ca.pem"),
        ("RAPIDFIRE_REDIS_SSL_CERTFILE", "/c.pem", "ssl_certfile", "/c.pem"),
        ("RAPIDFIRE_REDIS_SSL_KEYFILE", "/k.pem", "ssl_keyfile", "/k.pem"),
        ("RAPIDFIRE_REDIS_SSL_CERT_REQS", "none", "ssl_cert_reqs", "none"),
    ],
)
def test_from_env_reads_each_setting(var: str, text: str, field: str, value: object):
    config = RedisConfig.from_env({"RAPIDFIRE_REDIS_URL": "redis://h/1", var: text})

    assert getattr(config, field) == value


@pytest.mark.parametrize(
    ("var", "text"),
    [
        ("RAPIDFIRE_REDIS_DB", "two"),
        ("RAPIDFIRE_REDIS_CONNECT_TIMEOUT", "fast"),
        ("RAPIDFIRE_REDIS_TIMEOUT", "5s"),
        ("RAPIDFIRE_REDIS_RETRIES", "1.5"),
        ("RAPIDFIRE_REDIS_MAX_CONNECTIONS", "many"),
        ("RAPIDFIRE_SHARDS", "4x"),
    ],
)
def test_from_env_bad_number_names_the_variable_and_the_value(var: str, text: str):
    with pytest.raises(ConfigurationError) as info:
        RedisConfig.from_env({"RAPIDFIRE_REDIS_URL": "redis://h", var: text})

    assert var in str(info.value)
    assert repr(text) in str(info.value)


def test_from_env_keywords_win_over_the_environment():
    config = RedisConfig.from_env(
        {"RAPIDFIRE_REDIS_URL": "redis://h", "RAPIDFIRE_NAMESPACE": "env"},
        namespace="kw",
        shards=2,
    )

    assert (config.namespace, config.shards) == ("kw", 2)


def test_from_env_without_any_url_refuses_to_guess():
    with pytest.raises(ConfigurationError) as info:
        RedisConfig.from_env({"RAPIDFIRE_NAMESPACE": "x", "REDIS_URL": ""})

    assert "RAPIDFIRE_REDIS_URL" in str(info.value)
    assert "never falls back" in str(info.value)


def test_from_env_default_url_is_used_only_when_asked():
    config = RedisConfig.from_env({}, default_url="memory://")
    from_env = RedisConfig.from_env(
        {"RAPIDFIRE_REDIS_URL": "redis://h"}, default_url="memory://"
    )

    assert config.is_memory
    assert not from_env.is_memory


# -- describe, repr, str ----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "options"),
    [
        (f"redis://user:{SECRET}@db.example:6390/3", {}),
        (f"redis://:{SECRET}@db.example:6390/3", {}),
        ("redis://db.example:6390/3", {"password": SECRET}),
        ("redis://db.example:6390/3", {"username": "u", "password": SECRET}),
        (f"rediss://user:{SECRET}@db.example:6390/3", {}),
    ],
)
def test_describe_repr_and_str_show_the_server_but_never_the_password(
    url: str, options: dict[str, str]
):
    config = RedisConfig.from_url(url, namespace="shop", **options)

    for text in (config.describe(), repr(config), str(config)):
        assert SECRET not in text
        assert "db.example:6390" in text
        assert "db=3" in text
        assert "namespace=shop" in text
    assert "***" in config.describe()
    assert config.password == SECRET


def test_describe_of_a_unix_socket_names_the_path():
    config = RedisConfig.from_url(f"unix://:{SECRET}@/run/r.sock?db=2", namespace="n")

    assert config.describe() == "unix:///run/r.sock db=2 namespace=n"
    assert SECRET not in repr(config)


# -- connecting ----------------------------------------------------------------


def test_closed_port_raises_redis_unavailable_naming_host_and_port():
    port = free_loopback_port()
    config = RedisConfig.from_url(
        f"redis://:{SECRET}@127.0.0.1:{port}/0", connect_timeout=0.5, retries=0
    )
    batcher = Batcher(config)
    try:
        with pytest.raises(RedisUnavailableError) as info:
            batcher.ping()
    finally:
        batcher.close()

    assert f"127.0.0.1:{port}" in str(info.value)
    assert info.value.where == f"127.0.0.1:{port}"
    assert SECRET not in str(info.value)


def test_closed_port_fails_push_without_storing_or_hanging():
    port = free_loopback_port()
    config = RedisConfig.from_url(
        f"redis://127.0.0.1:{port}/0", connect_timeout=0.5, retries=1
    )
    batcher = Batcher(config)
    try:
        with pytest.raises(RedisUnavailableError, match=f"127.0.0.1:{port}"):
            batcher.push("15550000001", {"text": "hi"}, dedupe_id="w1")
    finally:
        batcher.close()


def test_memory_clients_of_one_name_share_data_and_other_names_do_not():
    name = uuid.uuid4().hex[:8]
    first = RedisConfig.from_url(f"memory://{name}").client()
    second = RedisConfig.from_url(f"memory://{name}").client()
    other = RedisConfig.from_url(f"memory://{name}-other").client()
    other_db = RedisConfig.from_url(f"memory://{name}/1").client()
    try:
        first.set("shared-key", "v")
        seen = (second.get("shared-key"), other.get("shared-key"))
        seen_db = other_db.get("shared-key")
    finally:
        for client in (first, second, other, other_db):
            client.close()

    assert seen == (b"v", None)
    assert seen_db is None


# -- cluster mode -------------------------------------------------------------------


def test_several_seed_nodes_mean_a_cluster_of_256_shards():
    config = RedisConfig.from_url(
        "redis://:s3cret@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002", namespace="bot"
    )

    assert (config.cluster, config.shards) == (True, 256)
    assert config.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002))
    assert config.password == "s3cret"
    assert config.describe() == (
        "redis://:***@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002 (cluster) db=0"
        " namespace=bot"
    )
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(
    ("cluster", "shards", "expected"),
    [
        (None, None, (None, None)),
        (False, None, (False, 1)),
        (True, None, (True, 256)),
        (True, 8, (True, 8)),
        (None, 4, (None, 4)),
    ],
)
def test_the_shard_count_follows_cluster_mode_unless_set(
    cluster: bool | None, shards: int | None, expected: tuple[object, object]
):
    config = RedisConfig.from_url(
        "redis://127.0.0.1:6379", cluster=cluster, shards=shards
    )

    assert (config.cluster, config.shards) == expected
    assert config.resolved == (None not in expected)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "redis://a:1,b:2", "cluster": False}, "names 2 nodes"),
        ({"url": "redis://a:1,b:2/3"}, "db must be 0 on a Redis Cluster, got 3"),
        ({"url": "redis://a:1", "cluster": True, "db": 1}, "got 1"),
        ({"url": "unix:///tmp/r.sock", "cluster": True}, "needs a redis://"),
        ({"url": "memory://x", "cluster": True}, "needs a redis://"),
        ({"url": "redis://a:1,b:x"}, "invalid port"),
        ({"url": "redis://a:1,b:+2"}, "invalid port"),
        ({"url": "redis://a:1, b:2"}, "space in a host name"),
        ({"url": "redis://a:1,:2"}, "names no host"),
        ({"url": "redis://a:1", "cluster": "yes"}, "cluster must be True, False"),
    ],
)
def test_a_cluster_setting_that_cannot_work_is_refused(
    options: dict[str, object], message: str
):
    with pytest.raises(ConfigurationError, match=message):
        RedisConfig(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("0", False), ("no", False), ("auto", None)],
)
def test_cluster_mode_comes_from_the_environment(value: str, expected: bool | None):
    env = {
        "RAPIDFIRE_REDIS_URL": "redis://127.0.0.1:7000",
        "RAPIDFIRE_REDIS_CLUSTER": value,
    }

    assert RedisConfig.from_env(env).cluster is expected


def test_a_bad_cluster_variable_is_refused_by_name():
    env = {
        "RAPIDFIRE_REDIS_URL": "redis://127.0.0.1:7000",
        "RAPIDFIRE_REDIS_CLUSTER": "maybe",
    }

    with pytest.raises(ConfigurationError, match=r"RAPIDFIRE_REDIS_CLUSTER.*'maybe'"):
        RedisConfig.from_env(env)


def test_the_embedded_server_is_never_a_cluster():
    resolved = RedisConfig.from_url("memory://cfg-cluster").detect()

    assert (resolved.cluster, resolved.shards) == (False, 1)
