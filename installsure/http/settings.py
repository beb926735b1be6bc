"""Settings of the HTTP layer (config section ``http``).

Only simple types, so the config loader can fill them from TOML and environment
variables; rate rules are written as ``"<requests>/<seconds>"`` strings and parsed here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, get_args

from attrs import field, frozen

from installsure.config.values import InvalidSettingError, Seconds, one_of

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*s?\s*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")

#: The rate rule counting failed authentications (``http.rate_limit_failed_auth``).
FAILED_AUTH_RULE = "failed_auth"
#: The optional rule counting every signed-in request per client address, whoever signs
#: in (``http.rate_limits.address``); without it signed-in requests count per principal.
ADDRESS_RULE = "address"

#: JSON responses never load anything: the strictest policy (the /docs page gets its own).
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'"

#: How HTTP/1.1 is read and written (``http.wire``); a Literal, so the config loader
#: checks it per key.
Wire = Literal["fast", "stock"]
WIRES: tuple[str, ...] = get_args(Wire)


@frozen
class RateRule:
    """At most ``requests`` per ``window`` seconds."""

    requests: int
    window: float


def parse_rate(text: str) -> RateRule:
    """Parse ``"300/60"`` (or ``"300/60s"``) into a :class:`RateRule`."""
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"rate limit {text!r} is not '<requests>/<seconds>', e.g. '300/60'")
    requests, window = int(match.group(1)), float(match.group(2))
    if requests < 1 or window <= 0:
        raise ValueError(f"rate limit {text!r} needs at least 1 request and a window above 0 s")
    return RateRule(requests, window)


def _check_rate(_inst: object, attribute: Any, value: str) -> None:
    try:
        parse_rate(value)
    except ValueError as e:
        raise InvalidSettingError(attribute.name, f"http.{attribute.name}: {e}") from None


def _check_named_rates(_inst: object, attribute: Any, value: Mapping[str, str]) -> None:
    if FAILED_AUTH_RULE in value:
        raise InvalidSettingError(
            attribute.name,
            f"http.{attribute.name}.{FAILED_AUTH_RULE}: set http.rate_limit_failed_auth instead",
        )
    for name, rate in value.items():
        try:
            parse_rate(rate)
        except ValueError as e:
            raise InvalidSettingError(
                attribute.name, f"http.{attribute.name}.{name}: {e}"
            ) from None


def _check_positive(_inst: object, attribute: Any, value: float) -> None:
    if value <= 0:
        raise InvalidSettingError(
            attribute.name, f"http.{attribute.name} must be above 0, got {value!r}"
        )


def _check_not_negative(_inst: object, attribute: Any, value: float) -> None:
    if value < 0:
        raise InvalidSettingError(
            attribute.name, f"http.{attribute.name} must be 0 or more, got {value!r}"
        )



def _check_header_name(_inst: object, attribute: Any, value: str) -> None:
    if not _HEADER_NAME.match(value):
        raise InvalidSettingError(
            attribute.name,
            f"http.{attribute.name} must be a header name of letters, digits and '-', "
            f"got {value!r}",
        )


def _default_named_rates() -> dict[str, str]:
    # login: sign-in and registration attempts per client address; login_account:
    # sign-in attempts per e-mail address, from anywhere (installsure.auth.accounts);
    # address: every signed-in request per client address, on top of its principal's
    # budget, so that accounts made in bulk from one address do not multiply it (20
    # principals' worth by default: an office behind one NAT is not throttled).
    return {"login": "10/60", "login_account": "10/300", "upload": "30/60",
            ADDRESS_RULE: "6000/60"}


@frozen
class HttpSettings:
    """How the HTTP layer behaves; host, port and listeners live elsewhere."""

    #: Origins allowed to call the API from a browser (exact match, e.g. "https://app.example").
    cors_origins: tuple[str, ...] = field(default=(), converter=tuple)
    #: Send ``Access-Control-Allow-Credentials: true`` to allowed origins.
    cors_allow_credentials: bool = True
    #: Believe ``X-Forwarded-For`` / ``X-Forwarded-Proto`` (only behind a proxy you run).
    trust_proxy: bool = False
    #: With ``trust_proxy``: how many proxies you run in front of the server (e.g. 2 for
    #: a load balancer then nginx). Each appends the address it saw to
    #: ``X-Forwarded-For``; the client's is the entry this many from the right.
    proxy_hops: int = field(default=1, validator=_check_positive)
    #: Largest JSON request body in bytes (uploads have their own limit).
    max_body_size: int = field(default=1024 * 1024, validator=_check_positive)
    #: JSON responses at least this big are gzipped when the client accepts it.
    gzip_min_size: int = field(default=1024, validator=_check_not_negative)
    #: Requests slower than this many seconds are logged as slow.
    slow_request_threshold: float = field(default=1.0, validator=_check_positive)
    #: How HTTP/1.1 is read and written: "fast" takes shortcuts through twisted.web's
    #: internals (one-pass parsing, one send per response); "stock" serves with
    #: twisted.web's own HTTPChannel and Request, the fallback should a Twisted release
    #: break the fast wire. README's "HTTP endpoints" says what differs.
    wire: Wire = field(default="fast", validator=one_of("http", WIRES))
    #: Close a keep-alive connection after this long without a request. Behind a load
    #: balancer keep it longer than the balancer's own idle timeout (60 s on AWS ALB),
    #: so the balancer never sends a request on a connection we are closing.
    idle_timeout: Seconds = field(default=Seconds(75.0), validator=_check_positive)
    #: The whole request head (request line and headers) must arrive within this long
    #: of its first byte, else the answer is 408 and the connection is closed. The idle
    #: timeout restarts with every byte, so without this a client sending one byte a
    #: second could hold a connection for ever.
    header_timeout: Seconds = field(default=Seconds(20.0), validator=_check_positive)
    #: A request body must arrive within this long of its head, plus one second for
    #: every ``body_min_rate`` bytes received (a slow but steady upload goes on; a
    #: trickle is answered 408 and closed).
    body_timeout: Seconds = field(default=Seconds(20.0), validator=_check_positive)
    #: Bytes per second a body must average to keep extending ``body_timeout``; 0 gives
    #: every body ``body_timeout`` in all.
    body_min_rate: int = field(default=500, validator=_check_not_negative)
    #: Connections the kernel queues for each listener until the server accepts them
    #: (the ``backlog`` of ``listen()``; Linux caps it at net.core.somaxconn). Added to
    #: every tcp, tcp6, ssl and unix endpoint that does not say ``backlog=`` itself.
    backlog: int = field(default=1024, validator=_check_positive)
    #: Turn the Redis-backed rate limiter on or off.
    rate_limit_enabled: bool = True
    #: Default limit per client address, ``"<requests>/<seconds>"``.
    rate_limit_default: str = field(default="300/60", validator=_check_rate)
    #: Failed authentications allowed per client address, ``"<requests>/<seconds>"``;
    #: past it the address gets 429 on every route that needs credentials, wrong or
    #: right, until the window ends. Stricter than the default on purpose.
    rate_limit_failed_auth: str = field(default="20/300", validator=_check_rate)
    #: Stricter named limits routes can ask for (``rate_limit="login"``). ``login``: sign-in
    #: and registration requests per client address; ``login_account``: sign-ins per
    #: account; ``upload``: uploads per user; ``address``: every signed-in request per
    #: client address as well as per principal, so many accounts used from one address
    #: share one budget (set it very high, e.g. "100000000/60", to count per principal
    #: only).
    rate_limits: dict[str, str] = field(
        factory=_default_named_rates, converter=dict, validator=_check_named_rates
    )
    #: Header carrying the request id in both directions.
    request_id_header: str = field(default="X-Request-ID", validator=_check_header_name)
    #: Serve ``/openapi.json`` and ``/docs``.
    expose_docs: bool = True
    #: When set, ``/metrics`` needs ``Authorization: Bearer <token>``.
    metrics_token: str | None = None
    #: Content-Security-Policy of API responses (the /docs page sends its own).
    csp: str = DEFAULT_CSP
    #: ``Strict-Transport-Security`` max-age in seconds (0 disables the header).
    hsts_max_age: int = field(default=31536000, validator=_check_not_negative)

    @property
    def default_rate(self) -> RateRule:
        return parse_rate(self.rate_limit_default)

    @property
    def failed_auth_rate(self) -> RateRule:
        return parse_rate(self.rate_limit_failed_auth)

    def named_rates(self) -> dict[str, RateRule]:
        return {name: parse_rate(rate) for name, rate in self.rate_limits.items()}
