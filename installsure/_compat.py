"""Every private name of Twisted and txredisapi that InstallSure relies on, in one place.

Twisted's compatibility policy covers its public names only, and txredisapi promises
nothing about its internals: a release may rename or drop any name below without a
deprecation period. So code that needs one takes it from here:

* the accessors and aliases below, for what callers import (a header dict, a class to
  subclass, the exit signal twistd re-raises);
* :data:`PRIVATE_NAMES`, for attributes that our overrides of twisted.web and
  txredisapi methods read or set on ``self`` (nothing there to import, so they are
  listed with the reason we touch them).

tests/test_compat.py checks that each name still exists with the shape we rely on, on
real objects, so an upgrade fails CI instead of a request in production. setup.cfg's
ceilings for twisted and txredisapi exist because of this list.

autobahn: one method, for close codes its public API refuses (see PRIVATE_NAMES).

Klein: nothing. InstallSure uses only its public API (``Klein()``, ``route``,
``url_map``, ``endpoints``).

Importing this module imports txredisapi, which installs the default reactor: modules
that run before twistd picks one (config, tap, the twistd plugin) must not import it.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
import txredisapi
from twisted.internet import tcp
from twisted.internet.interfaces import _ISupportsExitSignalCapturing
from twisted.web import server
from twisted.web.http_headers import Headers


class Kind(enum.Enum):
    """What a private name is, and so what tests/test_compat.py checks about it."""

    #: A class (or zope Interface) at ``owner.name``; ``params``: its constructor's.
    CLASS = "class"
    #: A function on the class ``owner``; ``params``: its parameters after ``self``.
    METHOD = "method"
    #: A class attribute whose default (``default``) our code relies on.
    CLASS_ATTRIBUTE = "class attribute"
    #: An attribute every instance of ``owner`` has once ``set_by`` has run, of
    #: ``value_type`` when one is given.
    INSTANCE_ATTRIBUTE = "instance attribute"


@attrs.frozen
class PrivateName:
    """One private name of a dependency, and why InstallSure touches it."""

    #: Dotted path of the module (for a class) or class that holds ``name``.
    owner: str
    #: The name as looked up; a name-mangled one spelled out (``_HTTPChannel__header``).
    name: str
    kind: Kind
    reason: str
    params: tuple[str, ...] | None = None
    default: object = None
    #: For an instance attribute: which step sets it ("constructor", "connectionMade",
    #: "the request line").
    set_by: str = "constructor"
    value_type: type | None = None


_CHANNEL = "twisted.web.http.HTTPChannel"
_REQUEST = "twisted.web.http.Request"
#: Defaults the one-pass parser relies on: it never runs the line parser, so these must
#: still be in the state the previous request's reset (allContentReceived) left them.
_PARSER_RESET = (
    "ApiChannel._serve_simple skips the line parser and leaves this as the previous "
    "request's reset left it: the class default must be that reset state"
)

PRIVATE_NAMES: tuple[PrivateName, ...] = (
    # -- twisted.web: headers, site, request -----------------------------------------
    PrivateName(
        "twisted.web.http_headers.Headers", "_rawHeaders", Kind.INSTANCE_ATTRIBUTE,
        "the fast wire (installsure.http._wire: channel, request, the application's "
        "header helpers) reads and writes header values in this dict directly (see "
        "raw_headers)", value_type=dict,
    ),
    PrivateName(
        "twisted.web.server.Site", "_parsePOSTFormSubmission", Kind.INSTANCE_ATTRIBUTE,
        "ApiRequest's one-step constructor copies it, as server.Request.__init__ does "
        "(see site_parses_post_forms)", value_type=bool,
    ),
    PrivateName(
        _REQUEST, "_parsePOSTFormSubmission", Kind.INSTANCE_ATTRIBUTE,
        "ApiRequest's one-step constructor sets it; requestReceived reads it for POST",
        value_type=bool,
    ),
    PrivateName(
        "twisted.python.components.Componentized", "_adapterCache",
        Kind.INSTANCE_ATTRIBUTE,
        "ApiRequest's one-step constructor sets it instead of calling "
        "Componentized.__init__", value_type=dict,
    ),
    PrivateName(
        _REQUEST, "_disconnected", Kind.CLASS_ATTRIBUTE,
        "ApiRequest.respond leaves a request whose client has gone to twisted.web",
        default=False,
    ),
    PrivateName(
        "twisted.web.server.Request", "_encoder", Kind.CLASS_ATTRIBUTE,
        "ApiRequest.respond leaves an encoded (e.g. gzip) response to twisted.web",
        default=None,
    ),
    PrivateName(
        _REQUEST, "_cleanup", Kind.METHOD,
        "ApiRequest.respond ends with it, as Request.finish does", params=(),
    ),
    # -- twisted.web: the HTTP/1.1 channel -------------------------------------------
    PrivateName(
        "twisted.protocols.basic.LineReceiver", "_buffer", Kind.CLASS_ATTRIBUTE,
        "ApiChannel.dataReceived takes its shortcut only when no partial line is "
        "buffered; a partial request line there starts the head deadline",
        default=b"",
    ),
    PrivateName(
        "twisted.protocols.basic.LineReceiver", "_busyReceiving", Kind.CLASS_ATTRIBUTE,
        "ApiChannel.dataReceived takes its shortcut only when the line parser is not "
        "delivering lines", default=False,
    ),
    PrivateName(
        _CHANNEL, "_handlingRequest", Kind.INSTANCE_ATTRIBUTE,
        "ApiChannel._serve_simple and requestDone set it as allContentReceived and "
        "requestDone do; no read deadline runs while it is set", value_type=bool,
    ),
    PrivateName(
        _CHANNEL, "_dataBuffer", Kind.INSTANCE_ATTRIBUTE,
        "bytes read while a request is handled; ApiChannel.requestDone's short path "
        "runs only when it is empty, and a draining ApiChannel keeps its connection "
        "open for the request they hold", value_type=list,
    ),
    PrivateName(
        _CHANNEL, "_transferDecoder", Kind.INSTANCE_ATTRIBUTE,
        "ApiChannel._serve_simple clears it, as allContentReceived does",
    ),
    PrivateName(
        _CHANNEL, "_networkProducer", Kind.INSTANCE_ATTRIBUTE,
        "ApiChannel.requestDone's short path resumes it, as requestDone does",
        set_by="connectionMade",
    ),
    PrivateName(
        _CHANNEL, "_savedTimeOut", Kind.CLASS_ATTRIBUTE,
        "ApiChannel._serve_simple parks the idle timeout there, requestDone restores it",
        default=None,
    ),
    PrivateName(
        _CHANNEL, "_waitingForTransport", Kind.CLASS_ATTRIBUTE,
        "ApiChannel.requestDone's short path resumes the network producer unless set",
        default=False,
    ),
    PrivateName(
        _CHANNEL, "_respondToBadRequestAndDisconnect", Kind.METHOD,
        "every refusal of twisted.web's parser calls it; ApiChannel overrides it to "
        "answer in the envelope (400, or 431 when the head's counters are over their "
        "limits)", params=(),
    ),
    PrivateName(
        _CHANNEL, "_receivedHeaderCount", Kind.CLASS_ATTRIBUTE,
        _PARSER_RESET + "; past maxHeaders it tells ApiChannel a refusal is a 431",
        default=0,
    ),
    PrivateName(
        _CHANNEL, "_receivedHeaderSize", Kind.CLASS_ATTRIBUTE,
        _PARSER_RESET + "; past totalHeadersSize it tells ApiChannel a refusal is a 431",
        default=0,
    ),
    PrivateName(_CHANNEL, "_HTTPChannel__first_line", Kind.CLASS_ATTRIBUTE, _PARSER_RESET,
                default=1),
    PrivateName(_CHANNEL, "_HTTPChannel__header", Kind.CLASS_ATTRIBUTE, _PARSER_RESET,
                default=b""),
    *(
        PrivateName(
            _CHANNEL, name, Kind.INSTANCE_ATTRIBUTE,
            "where lineReceived parks the request line: ApiChannel._serve_simple sets "
            "it for a request it hands back, ApiRequest reads _path for the body limit, "
            "ApiChannel.refuse all three for its answer and access-log line, and both "
            "wires' requests all three to dispatch a streamed upload when its head is in "
            "(see request_line_being_read)",
            set_by="the request line", value_type=bytes,
        )
        for name in ("_command", "_path", "_version")
    ),
    # -- twisted.internet ----------------------------------------------------------------
    PrivateName(
        "twisted.internet.abstract.FileDescriptor", "_tempDataBuffer",
        Kind.INSTANCE_ATTRIBUTE,
        "ApiChannel writes straight to the socket only when the transport has nothing "
        "queued (see tcp_write_pending)", value_type=list,
    ),
    PrivateName(
        "twisted.internet.interfaces", "_ISupportsExitSignalCapturing", Kind.CLASS,
        "how twistd tells a reactor that records the signal that stopped it; "
        "clear_exit_signal asks the same",
    ),
    PrivateName(
        "twisted.internet.base.ReactorBase", "_exitSignal", Kind.CLASS_ATTRIBUTE,
        "twistd re-raises the signal stored there after shutdown; clear_exit_signal "
        "forgets it after a graceful drain", default=None,
    ),
    # -- txredisapi ----------------------------------------------------------------------
    PrivateName(
        "txredisapi", "_PoolSlot", Kind.CLASS,
        "one connection of a pool; installsure.redis subclasses it (see PoolSlot)",
        params=("factory", "endpoint", "reconnect"),
    ),
    PrivateName(
        "txredisapi._PoolSlot", "service", Kind.INSTANCE_ATTRIBUTE,
        "the ClientService of a slot, which our subclass replaces by a quieter one",
    ),
    PrivateName(
        "txredisapi._PoolSlot", "_retryDelay", Kind.METHOD,
        "our slot hands it to its ClientService as the retry policy",
        params=("attempt",),
    ),
    # -- autobahn: the WebSocket closing handshake ---------------------------------------
    PrivateName(
        "autobahn.websocket.protocol.WebSocketProtocol", "sendCloseFrame", Kind.METHOD,
        "autobahn's public sendClose takes only 1000 and 3000-4999; a shutting-down server "
        "must close with 1001 and a protocol violation with 1002 (websocket_close)",
        params=("code", "reasonUtf8", "isReply"),
    ),
    PrivateName(
        "txredisapi._PoolSlot", "_prepareConnection", Kind.METHOD,
        "our slot hands it to its ClientService as prepareConnection",
        params=("protocol",),
    ),
    PrivateName(
        "txredisapi", "_SlotFactory", Kind.CLASS,
        "the protocol factory of a slot's ClientService (see SlotFactory)",
        params=("factory", "slot"),
    ),
    PrivateName(
        "txredisapi", "_SentinelEndpoint", Kind.CLASS,
        "connects a Sentinel-managed link to the current master (see SentinelEndpoint)",
        params=("factory",),
    ),
    PrivateName(
        "txredisapi.RedisFactory", "slots", Kind.INSTANCE_ATTRIBUTE,
        "our startConnecting (which makes our slots) appends them where stopTrying and "
        "disconnect look", value_type=list,
    ),
    PrivateName(
        "txredisapi.RedisFactory", "startConnecting", Kind.METHOD,
        "overridden to make our slots; the only way txredisapi connects a pool",
        params=("endpoint",),
    ),
    PrivateName(
        "txredisapi.RedisProtocol", "_build_command", Kind.METHOD,
        "overridden with a faster encoder that refuses values txredisapi would send "
        "as text; execute_command calls it", params=("args", "kwargs"),
    ),
    PrivateName(
        "txredisapi.RedisProtocol", "_encode_value", Kind.METHOD,
        "overridden to refuse values txredisapi would send as text", params=("arg",),
    ),
    PrivateName(
        "txredisapi.RedisProtocol", "_ready", Kind.INSTANCE_ATTRIBUTE,
        "connectionLost tells a failed attempt (never ready) from a lost connection",
        value_type=bool,
    ),
    *(
        PrivateName(
            "txredisapi.Sentinel", name, Kind.INSTANCE_ATTRIBUTE,
            "our Sentinel skips Sentinel.__init__ (it brings its own connections) and "
            "sets this itself; check_master_state and disconnect read it",
        )
        for name in ("sentinels", "min_other_sentinels")
    ),
    PrivateName(
        "txredisapi.Sentinel", "check_master_state", Kind.METHOD,
        "our master discovery keeps txredisapi's test of a healthy master",
        params=("state",),
    ),
)


# -- accessors: what callers import ----------------------------------------------------

#: txredisapi's pool slot: one connection kept up by a ClientService. installsure.redis
#: subclasses it to give that service a quieter log.
PoolSlot: Any = txredisapi._PoolSlot
#: The protocol factory a slot's ClientService connects with.
SlotFactory: Any = txredisapi._SlotFactory
#: An endpoint that asks Sentinel for the master's address before each attempt.
SentinelEndpoint: Any = txredisapi._SentinelEndpoint


def raw_headers(headers: Headers) -> dict[bytes, list[bytes]] | None:
    """The dict ``headers`` keeps its values in (canonical name to values), to read and
    write directly; None when it is not a plain dict (then use the public API)."""
    stored = getattr(headers, "_rawHeaders", None)
    return stored if type(stored) is dict else None


def site_parses_post_forms(site: server.Site) -> bool:
    """Whether ``site`` has its requests parse form bodies of POSTs into ``args``."""
    return site._parsePOSTFormSubmission


def websocket_close(protocol: Any, code: int, reason: str) -> None:
    """Begin the WebSocket closing handshake of an autobahn protocol with any RFC 6455
    close code (1001 going away, 1002 protocol error, 1008 policy violation)."""
    protocol.sendCloseFrame(code=code, reasonUtf8=reason.encode("utf-8")[:120], isReply=False)


def tcp_write_pending(transport: tcp.Server) -> bool:
    """Whether a TCP transport holds bytes it has not yet handed to the kernel."""
    return bool(transport.dataBuffer or transport._tempDataBuffer)


def clear_exit_signal(reactor: object) -> None:
    """Forget the signal that stopped ``reactor``, so twistd exits 0 instead of
    re-raising it (for a stop that drained cleanly)."""
    if _ISupportsExitSignalCapturing.providedBy(reactor):
        reactor._exitSignal = None


def request_line_being_read(channel: object) -> tuple[bytes, bytes, bytes] | None:
    """The method, target and version of the request whose head or body ``channel`` is
    reading (HTTPChannel parks them until the body is in); None when it has none."""
    try:
        line = (channel._command, channel._path, channel._version)  # type: ignore[attr-defined]
    except AttributeError:
        return None
    return line if all(isinstance(part, bytes) for part in line) else None
