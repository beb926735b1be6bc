"""Authorization rules (parsing, most specific wins), the realtime settings as the config
loader reads them, the subscription index, and the job runner's events published
through the broker."""

from __future__ import annotations

from pathlib import Path

import pytest
from autobahn.wamp import message as m
from autobahn.wamp.role import RoleSubscriberFeatures
from twisted.internet.testing import MemoryReactorClock

from installsure.api.health import CheckResult
from installsure.config import load_config
from installsure.config.errors import ConfigError
from installsure.jobs.events import QueueJobEvents, file_progress_topic
from installsure.realtime.principal import token_expiry
from installsure.realtime.rules import DEFAULT_RULES, RuleError, deciding_rule, parse_rules
from installsure.realtime.service import (
    HealthAnnouncer,
    RealtimeJobEventPublisher,
    RealtimeService,
)
from installsure.realtime.settings import RealtimeSettings
from installsure.realtime.subscriptions import SubscriptionTable
from installsure.realtime.wamp import WampSession
from installsure.redis.client import RedisService
from installsure.redis.target import RedisTarget
from tests.realtime.helpers import Memberships, SignedTokenVerifier, make_token
from tests.realtime.memory import RecordingChannel, subscribe


def decision(role: str, action: str, uri: str, match: str = "exact",
             rules: tuple[str, ...] = DEFAULT_RULES) -> str | None:
    rule = deciding_rule(parse_rules(rules), role, action, uri, match)
    return rule.decision if rule is not None else None


def test_default_rules_follow_the_topic_table() -> None:
    """Members need membership for project and file topics, their own user topic is
    theirs, queues are for admins and managers, health and meta for admins only."""
    assert decision("member", "subscribe", "installsure.project.p1.updated") == "member"
    assert decision("member", "subscribe", "installsure.file.f1.progress") == "member"
    assert decision("member", "subscribe", "installsure.user.u1.notification") == "self"
    assert decision("member", "subscribe", "installsure.queue.q.status") is None
    assert decision("manager", "subscribe", "installsure.queue.q.status") == "allow"
    assert decision("manager", "subscribe", "installsure.system.health") is None
    assert decision("admin", "subscribe", "installsure.system.health") == "allow"
    assert decision("admin", "subscribe", "installsure.project..updated", "wildcard") == (
        "allow")
    assert decision("member", "publish", "installsure.presence.p1") == "member"
    assert decision("member", "publish", "installsure.project.p1.updated") is None
    assert decision("admin", "call", "wamp.session.list") == "allow"
    assert decision("viewer", "call", "wamp.session.list") is None


def test_most_specific_rule_wins() -> None:
    """Role-named rules beat '*', exact beats prefix beats wildcard, longer beats
    shorter."""
    rules = (
        "* subscribe a. prefix allow",
        "* subscribe a.b. prefix deny",
        "* subscribe a.b.c exact allow",
        "* subscribe a..c wildcard deny",
        "ops subscribe a. prefix member",
    )
    assert decision("x", "subscribe", "a.z", rules=rules) == "allow"
    assert decision("x", "subscribe", "a.b.z", rules=rules) == "deny"
    assert decision("x", "subscribe", "a.b.c", rules=rules) == "allow"
    assert decision("x", "subscribe", "a.q.c", rules=rules) == "allow"  # prefix > wildcard
    assert decision("ops", "subscribe", "a.b.c", rules=rules) == "member"


def test_bad_rules_are_all_reported() -> None:
    """Each malformed rule is named with what is wrong, in one error."""
    with pytest.raises(RuleError) as excinfo:
        parse_rules(["admin subscribe", "* dance a. prefix allow",
                     "* subscribe a. glob allow", "* subscribe a. prefix maybe",
                     "* subscribe a.b wildcard allow"])
    message = str(excinfo.value)
    for part in ("five words", "unknown action(s) dance", "match must be",
                 "decision must be", "needs an empty component"):
        assert part in message


def test_realtime_settings_from_file_and_environment(tmp_path: Path) -> None:
    """realtime.* are read from TOML and INSTALLSURE_REALTIME_*; a bad rule and a bad
    window size are config errors naming the setting."""
    path = tmp_path / "c.toml"
    path.write_text('[realtime]\nallow_anonymous = true\nauto_ping_interval = "5s"\n')
    config = load_config(config_file=path, environ={
        "INSTALLSURE_REALTIME_MAX_CONNECTIONS": "7",
        "INSTALLSURE_REALTIME_RULES": "* subscribe installsure. prefix allow"})
    assert config.realtime.allow_anonymous is True
    assert config.realtime.auto_ping_interval == 5.0
    assert config.realtime.max_connections == 7
    assert config.realtime.rules == ("* subscribe installsure. prefix allow",)
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={"INSTALLSURE_REALTIME_RULES": "nonsense",
                             "INSTALLSURE_REALTIME_DEFLATE_WINDOW_BITS": "20"})
    text = str(excinfo.value)
    assert "five words" in text
    assert "deflate_window_bits" in text


def test_defaults_are_production_ones() -> None:
    """Auto-ping 20 s / 10 s, 1 MiB messages and frames, deflate off, no anonymous."""
    realtime = load_config(environ={}).realtime
    assert (realtime.auto_ping_interval, realtime.auto_ping_timeout) == (20.0, 10.0)
    assert realtime.max_message_size == realtime.max_frame_size == 1024 * 1024
    assert realtime.permessage_deflate is False
    assert realtime.allow_anonymous is False


def test_subscription_table_matches_each_policy() -> None:
    """The index finds exact, every prefix length and wildcard matches, and forgets
    subscriptions whose last subscriber left."""
    table = SubscriptionTable()
    exact, _ = table.add("a.b.c", "exact", 1, object())
    short, _ = table.add("a.", "prefix", 1, object())
    long_, _ = table.add("a.b.", "prefix", 2, object())
    wild, _ = table.add("a..c", "wildcard", 3, object())
    assert {s.id for s in table.matching("a.b.c")} == {exact.id, short.id, long_.id, wild.id}
    assert {s.id for s in table.matching("a.x.c")} == {short.id, wild.id}
    assert table.matching("b.b.c") == []
    assert table.remove(long_, 2) is True
    assert {s.id for s in table.matching("a.b.c")} == {exact.id, short.id, wild.id}


def test_token_expiry_reads_the_exp_claim() -> None:
    """The expiry of a JWT-shaped token comes from its exp claim; other strings have
    none."""
    expiry = token_expiry(make_token("u", ttl=100))
    assert expiry is not None
    assert expiry > 0
    assert token_expiry("not.a-token") is None
    assert token_expiry("opaque") is None


def test_job_events_reach_subscribers_through_the_broker() -> None:
    """The job runner's publisher publishes on the realtime service's broker: job
    transitions reach a manager on the queue's job topic, and file progress is retained
    for later subscribers."""
    clock = MemoryReactorClock()
    redis = RedisService(RedisTarget.from_url("redis://127.0.0.1:1/0"), reactor=clock)
    service = RealtimeService(RealtimeSettings(), redis, SignedTokenVerifier(), Memberships(),
                              clock)
    channel = RecordingChannel()
    manager = WampSession(service.broker, service.gatekeeper, channel, clock)
    manager.received([m.Hello("installsure", {"subscriber": RoleSubscriberFeatures()},
                              authmethods=["ticket"]),
                      m.Authenticate(make_token("m", "manager"))])
    subscribe(manager, channel, "installsure.queue.file-processing.job", request=9)
    channel.take()
    publisher = RealtimeJobEventPublisher(service)
    QueueJobEvents(publisher, "file-processing", transitions=True).transition(
        "j1", "process-file", "active")
    event = channel.take()[0]
    assert event.args == [{"jobId": "j1", "type": "process-file", "state": "active"}]
    publisher.publish(file_progress_topic("f1"), {"stage": "thumbnail", "percent": 50})
    assert service.broker.retained["installsure.file.f1.progress"].args == [
        {"stage": "thumbnail", "percent": 50}]


def test_health_verdict_is_published_when_it_changes() -> None:
    """The health refresh publishes healthy/degraded on installsure.system.health
    (retained), only when the verdict changes."""
    clock = MemoryReactorClock()
    redis = RedisService(RedisTarget.from_url("redis://127.0.0.1:1/0"), reactor=clock)
    service = RealtimeService(RealtimeSettings(), redis, SignedTokenVerifier(), Memberships(),
                              clock)
    announce = HealthAnnouncer(service)
    published = service.broker.stats.published
    announce({"redis": CheckResult(ok=True), "database": CheckResult(ok=True)})
    announce({"redis": CheckResult(ok=True), "database": CheckResult(ok=True)})
    announce({"redis": CheckResult(ok=False), "database": CheckResult(ok=True)})
    assert service.broker.stats.published - published == 2
    latest = service.broker.retained["installsure.system.health"]
    assert latest.args == [{"status": "degraded", "checks": {"redis": False, "database": True}}]
