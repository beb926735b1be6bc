"""ApiChannel's shortcuts agree with twisted.web's own code paths.

The one-pass head parser, the one-step response and the idle timer that is never
cancelled per request are each compared with what the inherited twisted.web code does
with the same input, over an in-memory transport.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import address
from twisted.internet.protocol import connectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineReceiver
from twisted.web import http, server

from installsure.http import HttpSettings, Router, build_site
from installsure.http._wire import channel as channel_module
from installsure.http._wire.channel import ApiChannel
from installsure.http._wire.head import canonical_name, parse_simple_head
from installsure.http._wire.request import ApiRequest
from installsure.http.routing import Response
from installsure.http.site import ApiSite

PEER = address.IPv4Address("TCP", "127.0.0.1", 50000)
HOST = address.IPv4Address("TCP", "127.0.0.1", 8000)


def _parse(data: bytes) -> Any:
    return parse_simple_head(data, max_size=16384, max_headers=500)


# -- the parser on its own ---------------------------------------------------------------


def test_a_plain_head_is_split_into_its_parts() -> None:
    """Method, target, version and every header (names as sent, values stripped)."""
    head = _parse(
        b"GET /api/projects?page=2 HTTP/1.1\r\nHost: example.test\r\n"
        b"accept:\t application/json \t\r\nX-Empty:\r\nReferer: https://a.test/b:c\r\n\r\n"
    )
    assert head == (
        b"GET",
        b"/api/projects?page=2",
        b"HTTP/1.1",
        [
            (b"Host", b"example.test"),
            (b"accept", b"application/json"),
            (b"X-Empty", b""),
            (b"Referer", b"https://a.test/b:c"),
        ],
    )
    assert _parse(b"DELETE /x HTTP/1.0\r\n\r\n") == (b"DELETE", b"/x", b"HTTP/1.0", [])


@pytest.mark.parametrize(
    ("why", "data"),
    [
        ("incomplete head", b"GET / HTTP/1.1\r\nHost: x\r\n"),
        ("two pipelined requests", b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
        ("a body follows", b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"),
        ("declares a body", b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n"),
        ("chunked body", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("expects 100-continue", b"PUT / HTTP/1.1\r\nEXPECT: 100-continue\r\n\r\n"),
        ("folded header", b"GET / HTTP/1.1\r\nX-A: 1\r\n  2\r\n\r\n"),
        ("bare LF in a value", b"GET / HTTP/1.1\r\nX-A: 1\n2\r\n\r\n"),
        ("bare CR in a value", b"GET / HTTP/1.1\r\nX-A: 1\r2\r\n\r\n"),
        ("NUL in a value", b"GET / HTTP/1.1\r\nX-A: 1\x002\r\n\r\n"),
        ("line without colon", b"GET / HTTP/1.1\r\nnonsense\r\n\r\n"),
        ("space before colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"),
        ("non-token name", b"GET / HTTP/1.1\r\nX(A): 1\r\n\r\n"),
        ("non-token method", b"G(T / HTTP/1.1\r\n\r\n"),
        ("space in target", b"GET /a b HTTP/1.1\r\n\r\n"),
        ("byte above 0xB0 in target", b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n"),
        ("unknown version", b"GET / HTTP/2.0\r\n\r\n"),
        ("empty line first", b"\r\nGET / HTTP/1.1\r\n\r\n"),
        ("double space", b"GET  / HTTP/1.1\r\n\r\n"),
        ("empty head", b"\r\n\r\n"),
    ],
)
def test_anything_unusual_is_left_to_the_general_parser(why: str, data: bytes) -> None:
    """Every case outside "one complete, body-less, well-formed head" answers None."""
    assert _parse(data) is None, why


def test_size_and_header_count_limits_are_left_to_the_general_parser() -> None:
    """Heads over the size or header-count limit go to the parser that answers 400."""
    data = b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * 3 + b"\r\n"
    assert parse_simple_head(data, max_size=len(data), max_headers=3) is not None
    assert parse_simple_head(data, max_size=len(data) - 1, max_headers=3) is None
    assert parse_simple_head(data, max_size=len(data), max_headers=2) is None


def test_canonical_names_match_twisted_headers() -> None:
    """Header names are stored under the key twisted.web's Headers would use."""
    assert canonical_name(b"x-request-id") == b"X-Request-Id"
    assert canonical_name(b"dnt") == b"DNT"
    assert canonical_name(b"www-authenticate") == b"WWW-Authenticate"


# -- the channel: fast path against the line parser --------------------------------------


class _Recording:
    """Answers 204 and remembers what twisted.web made of the request."""

    seen: list[dict[str, Any]]

    def process(self) -> None:
        self.seen.append(
            {
                "method": self.method,
                "uri": self.uri,
                "path": self.path,
                "clientproto": self.clientproto,
                "args": self.args,
                "headers": sorted(
                    (name, list(values))
                    for name, values in self.requestHeaders.getAllRawHeaders()
                ),
                "cookies": self.received_cookies,
                "persistent": self.channel.persistent,
                "content": self.content.read(),
                "channel while handling": _channel_state(self.channel),
            }
        )
        self.setResponseCode(204)
        self.finish()


#: HTTPChannel's per-request state, which the shortcuts set themselves.
_CHANNEL_STATE = (
    "line_mode", "_handlingRequest", "timeOut", "_savedTimeOut", "length",
    "_transferDecoder", "_receivedHeaderCount", "_receivedHeaderSize",
    "_HTTPChannel__first_line", "_HTTPChannel__header", "_dataBuffer", "persistent",
    "_waitingForTransport",
)


def _channel_state(channel: Any) -> dict[str, Any]:
    state = {name: getattr(channel, name) for name in _CHANNEL_STATE}
    state["_dataBuffer"] = list(state["_dataBuffer"])  # a snapshot, not the live list
    decoder = state["_transferDecoder"]  # compared by kind: each channel has its own
    state["_transferDecoder"] = None if decoder is None else type(decoder).__name__
    state["requests"] = len(channel.requests)
    state["parked request line"] = [
        name for name in ("_command", "_path", "_version") if hasattr(channel, name)
    ]
    return state


def _connect(
    clock: Clock | None = None,
    request_class: type = ApiRequest,
    channel_class: type[http.HTTPChannel] = ApiChannel,
) -> tuple[Any, StringTransport, list[Any]]:
    router = Router()
    site = build_site(router, HttpSettings())
    site.protocol = channel_class  # type: ignore[assignment]
    seen: list[dict[str, Any]] = []
    site.requestFactory = type("Recording", (_Recording, request_class), {"seen": seen})
    channel = site.buildProtocol(PEER)
    assert isinstance(channel, channel_class)
    if clock is not None:
        channel.callLater = clock.callLater  # type: ignore[method-assign]
    transport = StringTransport(peerAddress=PEER, hostAddress=HOST)
    channel.makeConnection(transport)
    return channel, transport, seen


@pytest.fixture
def fast_path_uses() -> Iterator[list[bytes]]:
    """The heads the one-pass parser accepted while the test ran."""
    accepted: list[bytes] = []
    original = channel_module.parse_simple_head

    def counting(data: bytes, **kw: Any) -> Any:
        head = original(data, **kw)
        if head is not None:
            accepted.append(data)
        return head

    channel_module.parse_simple_head = counting
    yield accepted
    channel_module.parse_simple_head = original


SIMPLE_HEADS = [
    b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"get /api/projects?page=2&q=a%20b&q=c&blank= HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD /x HTTP/1.1\r\nACCEPT: a\r\naccept: b\r\nX-Request-ID: r-1\r\nDNT: 1\r\n\r\n",
    b"DELETE /api/p/1 HTTP/1.1\r\nHost: x\r\nCookie: a=1; b=2\r\nX-Blank:\t \r\n\r\n",
    b"OPTIONS /x HTTP/1.1\r\nConnection: close\r\nOrigin: https://a.test\r\n\r\n",
    b"GET /%7Efolder/\xb0 HTTP/1.0\r\nUser-Agent: curl/8\r\n\r\n",
    (
        b"GET /api/projects HTTP/1.1\r\nHost: api.installsure.test\r\n"
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: application/json\r\n"
        b"Accept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\n"
        b"Authorization: Bearer abc.def.ghi\r\nConnection: keep-alive\r\n"
        b"Referer: https://app.installsure.test/\r\nTraceparent: 00-%s-%s-01\r\n\r\n"
    )
    % (b"a" * 32, b"b" * 16),
]


@pytest.mark.parametrize("data", SIMPLE_HEADS)
def test_one_pass_parsing_builds_the_same_request_as_the_line_parser(
    data: bytes, fast_path_uses: list[bytes]
) -> None:
    """The same head, read whole (one pass) and in two pieces (twisted.web's line
    parser), gives the same request as twisted.web's own Request and HTTPChannel build:
    method, target, args, headers, cookies, persistence, empty body; the channel is in
    the same state while the request is handled and after it; and the answer is the
    same."""
    fast, fast_wire, fast_seen = _connect(Clock())
    fast.dataReceived(data)
    assert fast_path_uses == [data]
    fast_after = _channel_state(fast)

    cut = data.index(b"\r\n") + 2
    answers = []
    for request_class, channel_class in (
        (ApiRequest, ApiChannel),
        (server.Request, ApiChannel),
        (server.Request, http.HTTPChannel),
    ):
        slow, slow_wire, slow_seen = _connect(Clock(), request_class, channel_class)
        slow.dataReceived(data[:cut])
        slow.dataReceived(data[cut:])
        assert fast_seen == slow_seen, (request_class, channel_class)
        assert fast_after == _channel_state(slow), (request_class, channel_class)
        answers.append((_without_date(slow_wire.value()), slow_wire.disconnecting))
    assert fast_path_uses == [data]  # the other connections never took the shortcut
    assert len(fast_seen) == 1
    assert answers[0] == (_without_date(fast_wire.value()), fast_wire.disconnecting)
    assert answers[2] == answers[0]


CONVERSATIONS = {
    "pipelined in one read": [
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
    ],
    "one after another": [b"GET /a HTTP/1.1\r\n\r\n", b"DELETE /b?c=d HTTP/1.1\r\n\r\n"],
    "a head cut in the middle, then a whole one": [
        b"GET /a HTTP/1.1\r\nHo", b"st: x\r\n\r\nGET /b HTTP/1.1\r\n\r\n"
    ],
    "a body between two simple requests": [
        b"GET /a HTTP/1.1\r\n\r\n",
        b"PUT /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
        b"GET /c HTTP/1.1\r\n\r\n",
    ],
    "HTTP/1.0 closes": [b"GET /a HTTP/1.0\r\n\r\n", b"GET /b HTTP/1.1\r\n\r\n"],
    "Connection: close closes": [b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n"],
}


@pytest.mark.parametrize("reads", CONVERSATIONS.values(), ids=CONVERSATIONS.keys())
def test_connections_go_through_the_same_states_as_twisted_webs_channel(
    reads: list[bytes],
) -> None:
    """Over whole conversations (pipelining, heads cut anywhere, bodies, closes) the
    channel, with its one-pass parsing and its shortcut when a request is done, serves
    the same requests, passes through the same states while each is handled, ends in
    the same state and writes the same bytes as twisted.web's HTTPChannel."""
    runs = []
    for request_class, channel_class in (
        (server.Request, http.HTTPChannel),  # the reference: twisted.web alone
        (ApiRequest, ApiChannel),
        (server.Request, ApiChannel),
    ):
        channel, wire, seen = _connect(Clock(), request_class, channel_class)
        for data in reads:
            channel.dataReceived(data)
        runs.append((seen, _channel_state(channel), _without_date(wire.value()),
                     wire.disconnecting))
    assert runs[0][0], "the conversation served no request"
    assert runs[1] == runs[0]
    assert runs[2] == runs[0]


def _without_date(wire: bytes) -> bytes:
    """What a connection wrote, without Date lines, and with the refusal that ends it
    (if any) as ``<refused>``: twisted.web's bare ``400 Bad Request`` and our answer
    in the envelope (400, or 431 for a head over its limits) are the same decision."""
    wire = b"\r\n".join(line for line in wire.split(b"\r\n") if not line.startswith(b"Date:"))
    if wire.endswith(_TWISTED_REFUSAL):
        return wire[: -len(_TWISTED_REFUSAL)] + b"<refused>"
    ours = _OUR_REFUSAL.search(wire)
    if ours is not None:
        return wire[: ours.start()] + b"<refused>"
    return wire


_TWISTED_REFUSAL = b"HTTP/1.1 400 Bad Request\r\n\r\n"
#: ApiChannel.refuse's answer, at the end of what a connection wrote.
_OUR_REFUSAL = re.compile(
    rb"HTTP/1\.[01] (?:400|431) [^\r]*\r\n(?:[^\r\n]+\r\n)*?Connection: close\r\n"
    rb"(?:[^\r\n]+\r\n)*\r\n\{\"success\":false,[^\r\n]*\}\Z"
)


def _same_outcome(ours: tuple[Any, ...], theirs: tuple[Any, ...], data: bytes) -> bool:
    """Ours and twisted.web's outcome agree: equal, or twisted.web closed a connection
    with a line longer than LineReceiver reads, without an answer, where ours answered
    431 and closed."""
    if ours == theirs:
        return True
    line_too_long = any(len(line) > LineReceiver.MAX_LENGTH for line in data.split(b"\r\n"))
    return (
        line_too_long
        and ours[2] == theirs[2] + b"<refused>"
        and (ours[:2], ours[3:]) == (theirs[:2], theirs[3:])
    )


def _serve(site: Any, data: bytes) -> tuple[Any, StringTransport]:
    """A new connection of ``site`` (with a clock of its own) that has read ``data``."""
    channel = site.buildProtocol(PEER)
    channel.callLater = Clock().callLater
    wire = StringTransport(peerAddress=PEER, hostAddress=HOST)
    channel.makeConnection(wire)
    channel.dataReceived(data)
    return channel, wire


# Pieces of request heads: for each, what clients send and what the one-pass parser must
# refuse or get exactly right. A piece is odd one time in twelve, so about half the heads
# are plain throughout and the rest differ from a plain one in one or two places.
_PIECES: dict[str, tuple[list[bytes], list[bytes]]] = {
    "method": ([b"GET", b"HEAD", b"DELETE", b"OPTIONS", b"get", b"M-SEARCH"],
               [b"POST", b"G\tT", b"GET\x00", b"", b"G(T", b"\xc3\x89"]),
    "space": ([b" "], [b"  ", b"\t", b""]),
    "target": ([b"/", b"/livez", b"/a/b?c=d&e=&c=f", b"/%41%zz?x=%20", b"*", b"http://h/p",
                b"/a#frag", b"/?", b"/a?b?c", b"//double"],
               [b"/\x7f", b"/\xb0", b"/\xb1", b"/\x80", b"/a\tb", b""]),
    "version": ([b"HTTP/1.1", b"HTTP/1.0"],
                [b"HTTP/1.2", b"HTTP/2", b"http/1.1", b"HTTP/1.1 ", b"HTTP/1.10", b"HTTP/1"]),
    "name": ([b"Host", b"host", b"X-Request-ID", b"Cookie", b"Connection", b"Accept",
              b"Traceparent", b"X-Forwarded-For", b"DNT", b"Upgrade", b"x-y_z.1~"],
             [b"X A", b"", b"X\x00", b"\xc3\x84", b"Content-Length", b"Transfer-Encoding",
              b"Expect", b"content-length", b"X(y)"]),
    "colon": ([b": ", b":"], [b":\t", b" : ", b":  ", b"::"]),
    "value": ([b"x", b"", b"a, b", b"close", b"keep-alive", b"Upgrade, close", b"0",
               b"a=1; b=2", b"a=1;;c", b"a:b", b"\xff\xfe", b"\x7f"],
              [b" padded ", b"\ttab\t", b"7", b"chunked", b"100-continue", b"a\x00b",
               b"a\rb", b"a\nb", b"v ", b"  "]),
    "eol": ([b"\r\n"], [b"\n"]),
}
#: Whole header lines whose meaning the general parser owns, or that change persistence.
_MEANINGFUL_LINES = [b"Expect: 100-continue", b"expect: 100-continue", b"Content-Length: 0",
                     b"Content-Length: 2", b"Transfer-Encoding: chunked",
                     b"Connection: close", b"Connection: Keep-Alive", b"Cookie: a=1; b"]


def _random_head(rng: random.Random) -> bytes:
    """A request head (sometimes with more after it) for the differential test."""

    def piece(kind: str) -> bytes:
        usual, odd = _PIECES[kind]
        return rng.choice(odd if rng.random() < 1 / 12 else usual)

    head = piece("method") + piece("space") + piece("target") + b" " + piece("version")
    head += piece("eol")
    for _ in range(rng.choice([0, 1, 1, 2, 3, 4, 6, 9])):
        head += piece("name") + piece("colon") + piece("value") + piece("eol")
        if rng.random() < 0.02:
            head += rng.choice([b" folded", b"\tfolded"]) + piece("eol")
        if rng.random() < 0.005:
            head += b"X-Big: " + b"v" * 17000 + b"\r\n"
        if rng.random() < 0.03:
            head += rng.choice(_MEANINGFUL_LINES) + b"\r\n"
    head += piece("eol")
    roll = rng.random()
    if roll < 0.04:
        head += b"GET /next HTTP/1.1\r\n\r\n"
    elif roll < 0.06:
        head += b"{}"
    elif roll < 0.08:
        head = head[: rng.randrange(len(head))]
    return head


def test_random_heads_are_served_exactly_as_twisted_web_serves_them() -> None:
    """Ten thousand generated heads, half plain and half subtly odd, each read whole:
    the channel (one-pass parser where it applies) and twisted.web's own HTTPChannel
    and Request see the same requests in the same channel states, write the same bytes
    (our refusals have the envelope where twisted.web's are bare, see _without_date)
    and close the same connections. The seed is fixed, so a failure reproduces."""
    rng = random.Random(20261130)
    sites = {}
    for name, (request_class, channel_class) in {
        "ours": (ApiRequest, ApiChannel), "twisted.web": (server.Request, http.HTTPChannel)
    }.items():
        site = build_site(Router(), HttpSettings())
        site.protocol = channel_class  # type: ignore[assignment]
        seen: list[dict[str, Any]] = []
        site.requestFactory = type("Recording", (_Recording, request_class), {"seen": seen})
        sites[name] = (site, seen)
    shortcuts = 0
    original = channel_module.parse_simple_head
    for case in range(10000):
        data = _random_head(rng)
        outcomes = {}
        for name, (site, seen) in sites.items():
            seen.clear()
            channel, wire = _serve(site, data)
            outcomes[name] = (list(seen), _channel_state(channel),
                              _without_date(wire.value()), wire.disconnecting)
        assert _same_outcome(outcomes["ours"], outcomes["twisted.web"], data), (case, data)
        if original(data, max_size=16384, max_headers=500) is not None:
            shortcuts += 1
    # The generator must exercise the shortcut a good deal, and not only the fallback.
    assert shortcuts > 3000, shortcuts


def test_requests_after_a_slow_one_take_the_shortcut_again(fast_path_uses: list[bytes]) -> None:
    """Once a request parsed line by line is answered, the next whole head is parsed in
    one pass on the same connection, and both are answered in order."""
    channel, wire, seen = _connect()
    channel.dataReceived(b"GET /one HTTP/1.1\r\n")
    channel.dataReceived(b"Host: x\r\n\r\n")
    channel.dataReceived(b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [r["uri"] for r in seen] == [b"/one", b"/two"]
    assert len(fast_path_uses) == 1
    assert wire.value().count(b"HTTP/1.1 204 ") == 2


def test_a_malformed_head_still_gets_a_400() -> None:
    """What the shortcut refuses, the line parser refuses as twisted.web does, with a
    400 (in the envelope: see tests/http/test_refusals.py)."""
    channel, wire, seen = _connect()
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n")
    assert wire.value().startswith(b"HTTP/1.1 400 ")
    assert wire.disconnecting
    assert seen == []


# -- one-step responses -------------------------------------------------------------------


def _api_channel() -> tuple[ApiChannel, StringTransport]:
    router = Router()

    @router.route("GET", "/thing", rate_limit=None)
    def thing(_ctx: Any) -> Response:
        return Response(body=b'{"a":1}', content_type=b"application/json",
                        headers=[(b"Vary", b"Origin"), (b"Vary", b"Accept")])

    @router.route("GET", "/nothing", rate_limit=None)
    def nothing(_ctx: Any) -> Response:
        return Response(status=204)

    channel = build_site(router, HttpSettings()).buildProtocol(PEER)
    assert isinstance(channel, ApiChannel)
    transport = StringTransport(peerAddress=PEER, hostAddress=HOST)
    channel.makeConnection(transport)
    return channel, transport


def test_one_step_responses_carry_every_header_and_the_body() -> None:
    """A response sent in one step has its status line, each header (several values
    of one name as separate lines), Content-Length and the body."""
    channel, wire = _api_channel()
    channel.dataReceived(b"GET /thing HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = wire.value().partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert b"Vary: Origin" in lines
    assert b"Vary: Accept" in lines
    assert b"Content-Length: 7" in lines
    assert b"X-Frame-Options: DENY" in lines
    assert body == b'{"a":1}'


def test_head_and_204_answers_have_no_body_and_keep_the_connection() -> None:
    """HEAD keeps the GET's Content-Length without the body; 204 has neither; the
    connection then serves the next request."""
    channel, wire = _api_channel()
    channel.dataReceived(b"HEAD /thing HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, rest = wire.value().partition(b"\r\n\r\n")
    assert b"Content-Length: 7" in head.split(b"\r\n")
    assert rest == b""
    wire.clear()
    channel.dataReceived(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, rest = wire.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 204 ")
    assert b"Content-Length" not in head
    assert rest == b""
    assert not wire.disconnecting


class _RandomAnswer:
    """Answers with what ``plan`` (set per case) says; ``respond`` picks the way."""

    plan: dict[str, Any]
    one_step: bool

    def process(self) -> None:
        plan = self.plan
        self.setResponseCode(plan["code"])
        for name, values in plan["headers"]:
            self.responseHeaders.setRawHeaders(name, values)
        if plan["cookie"]:
            self.addCookie(b"session", b"abc", path=b"/")
        if plan["etag"]:
            self.setETag(b'"v1"')
        if self.one_step:
            self.respond(plan["body"])
        else:
            if plan["body"]:
                self.write(plan["body"])
            self.finish()


def _random_answer(rng: random.Random) -> dict[str, Any]:
    body = rng.choice([b"", b"{}", b'{"a":1}', b"x" * 3000])
    headers: list[tuple[bytes, list[bytes]]] = []
    if rng.random() < 0.8:
        headers.append((b"Content-Length", [b"%d" % len(body)]))
    if rng.random() < 0.8:
        headers.append((b"Content-Type", [b"application/json; charset=utf-8"]))
    if rng.random() < 0.3:
        headers.append((b"Vary", [b"Origin", b"Accept-Encoding"]))
    if rng.random() < 0.3:
        headers.append((b"X-Request-Id", [b"r-%d" % rng.randrange(1000)]))
    rng.shuffle(headers)
    return {
        "code": rng.choice([200, 200, 201, 204, 304, 400, 404, 500]),
        "headers": headers,
        "body": body,
        "cookie": rng.random() < 0.1,
        "etag": rng.random() < 0.1,
    }


def test_random_one_step_answers_match_twisted_webs_write_and_finish() -> None:
    """For two thousand generated answers (codes with and without a body, HEAD and GET,
    HTTP/1.0 and 1.1, headers with several values, with and without Content-Length or
    Content-Type, cookies, ETags), ``respond(body)`` on our channel puts the same bytes
    on the wire, and leaves the connection the same, as twisted.web's ``write`` and
    ``finish`` on its own channel. The seed is fixed, so a failure reproduces."""
    rng = random.Random(11302026)
    sites = {}
    for one_step, request_class, channel_class in (
        (True, ApiRequest, ApiChannel), (False, server.Request, http.HTTPChannel)
    ):
        site = build_site(Router(), HttpSettings())
        site.protocol = channel_class  # type: ignore[assignment]
        answer = type("Answer", (_RandomAnswer, request_class), {"one_step": one_step})
        site.requestFactory = answer
        sites[one_step] = (site, answer)
    for case in range(2000):
        plan = _random_answer(rng)
        data = rng.choice([b"GET", b"GET", b"HEAD"]) + b" /x " + rng.choice(
            [b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]
        ) + b"\r\nHost: x\r\n\r\n"
        outcomes = []
        for site, answer in sites.values():
            answer.plan = plan
            channel, wire = _serve(site, data)
            outcomes.append((_without_date(wire.value()), wire.disconnecting,
                             _channel_state(channel)))
        assert outcomes[0] == outcomes[1], (case, data, plan)


def test_http_1_0_and_connection_close_end_the_connection_after_the_answer() -> None:
    """Persistence follows twisted.web: HTTP/1.0 and ``Connection: close`` close after
    the response."""
    for request in (
        b"GET /thing HTTP/1.0\r\n\r\n",
        b"GET /thing HTTP/1.1\r\nConnection: close\r\n\r\n",
    ):
        channel, wire = _api_channel()
        channel.dataReceived(request)
        assert wire.value().endswith(b'{"a":1}')
        assert wire.disconnecting


# -- the idle timeout -------------------------------------------------------------------


def test_an_idle_connection_is_closed_after_the_timeout() -> None:
    """No request for ``timeOut`` seconds: the connection is closed."""
    clock = Clock()
    channel, wire, _seen = _connect(clock)
    timeout = channel.timeOut
    assert timeout
    clock.advance(timeout - 1)
    assert not wire.disconnecting
    channel.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
    clock.advance(timeout - 1)
    assert not wire.disconnecting  # the request reset the countdown
    clock.advance(1)
    assert wire.disconnecting


class _Slow(ApiRequest):
    """Keeps the request open until the test answers it."""

    pending: list[ApiRequest]

    def process(self) -> None:
        self.pending.append(self)


def _slow_connection(clock: Clock) -> tuple[ApiChannel, StringTransport, list[ApiRequest]]:
    """A connection whose requests wait, in the list returned, for the test to answer."""
    site = build_site(Router(), HttpSettings())
    pending: list[ApiRequest] = []
    site.requestFactory = type("Slow", (_Slow,), {"pending": pending})
    channel = site.buildProtocol(PEER)
    assert isinstance(channel, ApiChannel)
    channel.callLater = clock.callLater  # type: ignore[method-assign]
    wire = StringTransport(peerAddress=PEER, hostAddress=HOST)
    channel.makeConnection(wire)
    return channel, wire, pending


def test_a_request_in_progress_is_never_timed_out() -> None:
    """While a request is being handled the idle timeout is off, however long it takes;
    after the answer the countdown starts again, and a closed connection leaves no
    timer behind."""
    clock = Clock()
    channel, wire, pending = _slow_connection(clock)
    timeout = channel.timeOut
    assert timeout
    channel.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
    clock.advance(timeout * 3)
    assert not wire.disconnecting
    request = pending.pop()
    request.setResponseCode(200)
    request.setHeader(b"content-length", b"0")
    request.finish()
    assert wire.value().startswith(b"HTTP/1.1 200 ")
    clock.advance(timeout - 1)
    assert not wire.disconnecting
    clock.advance(1)
    assert wire.disconnecting
    channel.connectionLost(connectionDone)
    assert clock.getDelayedCalls() == []


def test_the_idle_countdown_restarts_when_a_short_request_is_answered() -> None:
    """A request answered before the connection's idle check comes round restarts the
    countdown at the answer: the connection is closed a whole timeout after it, not
    after the request arrived."""
    clock = Clock()
    channel, wire, pending = _slow_connection(clock)
    timeout = channel.timeOut
    assert timeout is not None
    assert timeout > 4
    clock.advance(timeout / 2)
    channel.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
    clock.advance(timeout / 4)  # answered before the first idle check is due
    request = pending.pop()
    request.setResponseCode(204)
    request.finish()
    answered = clock.seconds()
    clock.advance(answered + timeout - 1 - clock.seconds())
    assert not wire.disconnecting
    clock.advance(1)
    assert wire.disconnecting


def test_closing_a_connection_cancels_its_timer() -> None:
    """A connection that goes away leaves no DelayedCall holding it."""
    clock = Clock()
    channel, _wire, _seen = _connect(clock)
    assert clock.getDelayedCalls()
    channel.connectionLost(connectionDone)
    assert clock.getDelayedCalls() == []


def test_a_new_timeout_period_counts_from_when_it_is_set() -> None:
    """setTimeout(period) restarts the countdown with the new period, shorter or longer,
    and setTimeout(None) switches it off, as TimeoutMixin does."""
    clock = Clock()
    channel, wire, _seen = _connect(clock)
    assert channel.timeOut
    clock.advance(channel.timeOut / 2)
    channel.setTimeout(5)
    clock.advance(4.9)
    assert not wire.disconnecting
    clock.advance(0.1)
    assert wire.disconnecting

    channel, wire, _seen = _connect(clock)
    channel.setTimeout(None)
    clock.advance(10 * 24 * 3600)
    assert not wire.disconnecting
    channel.setTimeout(3 * 24 * 3600)
    clock.advance(3 * 24 * 3600 - 1)
    assert not wire.disconnecting
    clock.advance(1)
    assert wire.disconnecting


def test_api_site_stores_request_bodies_as_twisted_webs_site() -> None:
    """ApiRequest stores the empty body of a request without one itself, as
    server.Site.getContentFile would: true only while ApiSite keeps that method."""
    assert getattr(ApiSite, "getContentFile", None) is getattr(
        server.Site, "getContentFile", None
    )
    channel, _wire, _seen = _connect()
    ours, theirs = ApiRequest(channel), server.Request(channel)
    ours.gotLength(0)
    theirs.gotLength(0)
    assert type(ours.content) is type(theirs.content)
    assert ours.content.read() == theirs.content.read() == b""


@pytest.mark.parametrize("args", [(), (0,)])
def test_api_requests_start_with_the_attributes_twisted_web_gives_a_request(
    args: tuple[int, ...],
) -> None:
    """ApiRequest's one-step constructor sets exactly the attributes, with the same
    values, that twisted.web's Request constructors set (a twisted.web upgrade that
    adds one fails here)."""
    channel, _wire, _seen = _connect()
    ours = ApiRequest(channel, *args)
    theirs = server.Request(channel, *args)
    assert set(vars(ours)) == set(vars(theirs))
    for name, value in vars(theirs).items():
        assert getattr(ours, name) == value, name
    # Keyword arguments take twisted.web's own path.
    explicit = ApiRequest(channel, parsePOSTFormSubmission=False)
    assert explicit._parsePOSTFormSubmission is False
