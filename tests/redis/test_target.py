"""RedisTarget: URLs parsed into targets, malformed ones refused with a clear message."""

from __future__ import annotations

import pytest

from installsure.redis.target import RedisTarget


def test_tcp_url_with_password_and_db() -> None:
    """redis://:password@host:port/db fills host, port, password and db."""
    target = RedisTarget.from_url("redis://:s3cret@redis.example:6380/2")
    assert (target.host, target.port, target.password, target.db, target.tls) == (
        "redis.example", 6380, "s3cret", 2, False,
    )


def test_defaults_and_tls() -> None:
    """Port defaults to 6379, db to 0; rediss:// means TLS."""
    target = RedisTarget.from_url("rediss://cache")
    assert (target.host, target.port, target.db, target.tls) == ("cache", 6379, 0, True)


def test_username_and_escaped_password() -> None:
    """ACL user names and percent-escaped passwords are decoded."""
    target = RedisTarget.from_url("redis://app:p%40ss@h/0")
    assert (target.username, target.password) == ("app", "p@ss")


def test_unix_url() -> None:
    """unix:///path?db=N names a socket and a database."""
    target = RedisTarget.from_url("unix:///run/redis/redis.sock?db=3")
    assert (target.unix_socket, target.db, target.host) == ("/run/redis/redis.sock", 3, None)


def test_for_unix_socket() -> None:
    """for_unix_socket builds the embedded server's target."""
    assert RedisTarget.for_unix_socket("/data/redis.sock").describe() == "unix:///data/redis.sock?db=0"


def test_password_never_in_description_or_repr() -> None:
    """describe() and repr() are safe to log: the password is not in them."""
    target = RedisTarget.from_url("redis://:hunter2@h:1/0")
    assert "hunter2" not in target.describe()
    assert "hunter2" not in repr(target)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "empty"),
        ("http://localhost:6379", "unknown scheme 'http'"),
        ("redis://", "host is missing"),
        ("redis://localhost:99999", "Port out of range"),
        ("redis://localhost:abc", "invalid Redis URL"),
        ("redis://localhost/x", "database 'x' is not a non-negative integer"),
        ("redis://localhost/1?db=2", "both in the path"),
        ("redis://localhost?timeout=3", "unknown query parameter(s) timeout"),
        ("unix://relative.sock", "absolute path"),
    ],
)
def test_malformed_urls_are_refused_clearly(url: str, fragment: str) -> None:
    """Each malformed URL raises ValueError naming the problem and the accepted forms."""
    with pytest.raises(ValueError, match="expected redis://") as info:
        RedisTarget.from_url(url)
    assert fragment in str(info.value)


def test_malformed_url_message_hides_password() -> None:
    """Even in an error message the password is masked."""
    with pytest.raises(ValueError) as info:
        RedisTarget.from_url("redis://:hunter2@localhost/x")
    assert "hunter2" not in str(info.value)


def test_sentinels_validated() -> None:
    """Sentinel targets need at least one (host, port) pair and a master name."""
    target = RedisTarget.for_sentinels([("s1", 26379)], "mymaster", db=1)
    assert target.is_sentinel
    assert "mymaster" in target.describe()
    with pytest.raises(ValueError, match=r"redis\.sentinels is empty"):
        RedisTarget.for_sentinels([], "mymaster")
    with pytest.raises(ValueError, match="master_name is required"):
        RedisTarget.for_sentinels([("s1", 26379)], "")
    with pytest.raises(ValueError, match="invalid port"):
        RedisTarget.for_sentinels([("s1", 0)], "m")


def test_tls_ca_file_only_for_rediss() -> None:
    """rediss:// accepts ?ca=/abs/path.pem; plain redis:// and relative paths do not."""
    target = RedisTarget.from_url("rediss://cache:6380/1?ca=/etc/redis/ca.pem")
    assert (target.tls, target.tls_ca_file, target.db) == (True, "/etc/redis/ca.pem", 1)
    with pytest.raises(ValueError, match=r"unknown query parameter\(s\) ca \(allowed: db\)"):
        RedisTarget.from_url("redis://cache?ca=/etc/redis/ca.pem")
    with pytest.raises(ValueError, match="absolute path"):
        RedisTarget.from_url("rediss://cache?ca=ca.pem")
