"""Settings of the realtime endpoint ``/ws`` (config section ``realtime``).

Plain values only, so the config loader fills them from TOML and the environment. The
authorization rules are strings of five words each (see :mod:`installsure.realtime.rules`),
parsed when the settings are built so that a bad rule is a config error, not a surprise
at the first SUBSCRIBE.
"""

from __future__ import annotations

from typing import Any

from attrs import Attribute, field, frozen

from installsure.config.values import InvalidSettingError, Seconds
from installsure.realtime.rules import DEFAULT_RULES, RuleError, parse_rules

MIB = 1024 * 1024


def _positive(_: object, attribute: Attribute[Any], value: float) -> None:
    if value <= 0:
        raise InvalidSettingError(
            attribute.name, f"{attribute.name} must be greater than 0, got {value!r}"
        )


def _not_negative(_: object, attribute: Attribute[Any], value: float) -> None:
    if value < 0:
        raise InvalidSettingError(
            attribute.name, f"{attribute.name} must be 0 or more, got {value!r}"
        )


def _window_bits(_: object, attribute: Attribute[Any], value: int) -> None:
    if not 9 <= value <= 15:
        raise InvalidSettingError(
            attribute.name,
            f"{attribute.name} must be between 9 and 15 (zlib's window sizes), got {value!r}",
        )


def _mem_level(_: object, attribute: Attribute[Any], value: int) -> None:
    if not 1 <= value <= 9:
        raise InvalidSettingError(
            attribute.name, f"{attribute.name} must be between 1 and 9, got {value!r}"
        )


def _rules(_: object, attribute: Attribute[Any], value: tuple[str, ...]) -> None:
    try:
        parse_rules(value)
    except RuleError as e:
        raise InvalidSettingError(attribute.name, f"{attribute.name}: {e}") from None


@frozen
class RealtimeSettings:
    """WebSocket limits, session authentication and the broker's rules."""

    enabled: bool = True
    """Serve WAMP (and the plain JSON protocol) at ``/ws`` on the HTTP listeners."""
    allow_anonymous: bool = False
    """Accept sessions without a ticket (authrole ``anonymous``, which the default
    rules allow nothing)."""
    rules: tuple[str, ...] = field(default=DEFAULT_RULES, converter=tuple, validator=_rules)
    """Authorization rules, five words each: roles (``|``-separated, or ``*``), actions
    (``subscribe|publish|call``), URI, match (``exact``/``prefix``/``wildcard``) and
    decision (``allow``, ``deny``, ``member``: the caller must be a member of the project
    named in the URI, ``self``: the URI's third component must be the caller's user id).
    Rules that name the caller's role beat ``*`` rules; then exact beats prefix beats
    wildcard, and a longer URI beats a shorter one."""
    disclose_publisher_to: tuple[str, ...] = field(
        default=("admin", "manager", "member", "viewer"), converter=tuple
    )
    """Roles of subscribers that see who published an event (``publisher``,
    ``publisher_authid``, ``publisher_authrole``); ``*`` for every role."""
    auto_ping_interval: Seconds = field(default=Seconds(20.0), validator=_not_negative)
    """Seconds between WebSocket pings to every client (0: none)."""
    auto_ping_timeout: Seconds = field(default=Seconds(10.0), validator=_not_negative)
    """A client that does not answer a ping within this is disconnected."""
    open_handshake_timeout: Seconds = field(default=Seconds(10.0), validator=_positive)
    """Seconds a client has to finish the WebSocket opening handshake."""
    close_handshake_timeout: Seconds = field(default=Seconds(2.0), validator=_positive)
    """Seconds a client has to answer a GOODBYE or a WebSocket close before the
    connection is cut."""
    hello_timeout: Seconds = field(default=Seconds(10.0), validator=_positive)
    """Seconds from the WebSocket opening to a completed WAMP HELLO/AUTHENTICATE (or
    the plain protocol's ``auth``)."""
    max_message_size: int = field(default=MIB, validator=_positive)
    """Largest message a client may send, in bytes."""
    max_frame_size: int = field(default=MIB, validator=_positive)
    """Largest WebSocket frame a client may send, in bytes (at most max_message_size)."""
    max_connections: int = field(default=10_000, validator=_not_negative)
    """WebSocket connections per process (0: no limit); one more gets HTTP 503."""
    max_subscriptions_per_session: int = field(default=1000, validator=_positive)
    """Subscriptions one session may hold; more are refused with an error."""
    permessage_deflate: bool = False
    """Accept permessage-deflate when a client offers it (costs memory per connection)."""
    deflate_window_bits: int = field(default=11, validator=_window_bits)
    """zlib window of an accepted permessage-deflate (2^bits bytes each way)."""
    deflate_mem_level: int = field(default=4, validator=_mem_level)
    """zlib memLevel (1-9) of an accepted permessage-deflate: lower uses less memory."""
    outbound_max_bytes: int = field(default=MIB, validator=_positive)
    """Bytes waiting for a slow client, beyond the socket's own buffer, before it is
    disconnected."""
    outbound_max_messages: int = field(default=1000, validator=_positive)
    """Messages waiting for a slow client before it is disconnected."""
    retained_ttl: Seconds = field(default=Seconds(86400.0), validator=_positive)
    """How long a retained event (a file's latest progress) is kept."""
    backplane_channel: str = "realtime"
    """Redis pub/sub channel name (after ``redis.key_prefix``) shared by every node; the
    retained events are kept under keys beginning with it."""

    def __attrs_post_init__(self) -> None:
        if self.max_frame_size > self.max_message_size:
            raise ValueError(
                f"realtime.max_frame_size ({self.max_frame_size}) must not exceed "
                f"realtime.max_message_size ({self.max_message_size})"
            )
