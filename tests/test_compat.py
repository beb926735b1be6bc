"""The private names of Twisted and txredisapi in installsure._compat still have the shape
we rely on, checked on real objects (a real TCP connection to a real twisted.web Site)."""

from __future__ import annotations

import importlib
import inspect
import socket
import types
from collections.abc import Iterator
from typing import Any

import attrs
import pytest_twisted
import txredisapi
from twisted.internet import reactor, task
from twisted.internet.interfaces import _ISupportsExitSignalCapturing
from twisted.web import http, server
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from zope.interface.interface import InterfaceClass

from installsure import _compat
from installsure._compat import PRIVATE_NAMES, Kind, PrivateName

_MISSING = object()


def _resolve(path: str) -> Any:
    """The module, class or attribute a dotted path names."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            found = getattr(found, name)
        return found
    raise ImportError(path)


def _parameters(function: Any) -> tuple[str, ...]:
    """Parameter names of a function defined on a class, without ``self``."""
    names = tuple(inspect.signature(function).parameters)
    return names[1:]


def _own_attribute(instance: object, name: str) -> object:
    """``instance.name`` when the instance itself holds it (in its ``__dict__`` or a
    slot), not merely its class."""
    if name in getattr(instance, "__dict__", {}):
        return vars(instance)[name]
    if isinstance(inspect.getattr_static(type(instance), name, None), types.MemberDescriptorType):
        return getattr(instance, name, _MISSING)
    return _MISSING


def problem_with(entry: PrivateName, instances: dict[str, object]) -> str | None:
    """What no longer holds about ``entry`` (None: everything does)."""
    try:
        owner = _resolve(entry.owner)
    except (ImportError, AttributeError) as e:
        return f"{entry.owner} is gone ({e})"
    if entry.kind is Kind.CLASS:
        found = getattr(owner, entry.name, _MISSING)
        if not isinstance(found, type | InterfaceClass):
            return "is no longer a class" if found is not _MISSING else "is gone"
        if entry.params is not None and _parameters(found.__init__) != entry.params:
            return f"takes {_parameters(found.__init__)}, not {entry.params}"
        return None
    if entry.kind is Kind.METHOD:
        found = getattr(owner, entry.name, _MISSING)
        if not inspect.isfunction(found):
            return "is no longer a method" if found is not _MISSING else "is gone"
        if entry.params is not None and _parameters(found) != entry.params:
            return f"takes {_parameters(found)}, not {entry.params}"
        return None
    if entry.kind is Kind.CLASS_ATTRIBUTE:
        if not any(entry.name in vars(klass) for klass in owner.__mro__):
            return "is gone from the class"
        value = getattr(owner, entry.name)
        if type(value) is not type(entry.default) or value != entry.default:
            return f"defaults to {value!r}, not {entry.default!r}"
        return None
    instance = instances.get(entry.owner)
    if instance is None:
        return f"the test has no real {entry.owner} to look at"
    if not isinstance(instance, owner):
        return f"the test's {entry.owner} is a {type(instance).__name__}"
    value = _own_attribute(instance, entry.name)
    if value is _MISSING:
        return f"is not set by the {entry.set_by} any more"
    if entry.value_type is not None and not isinstance(value, entry.value_type):
        return f"is a {type(value).__name__}, not a {entry.value_type.__name__}"
    return None


@attrs.define
class LiveConnection:
    """A plain twisted.web Site on 127.0.0.1 and one client that has sent a request line
    and a header but not yet the end of the head."""

    port: Any
    client: socket.socket
    protocol: Any

    @property
    def channel(self) -> http.HTTPChannel:
        return self.protocol._channel  # type: ignore[no-any-return]

    async def close(self) -> None:
        self.client.close()
        await self.port.stopListening()


async def _live_connection() -> LiveConnection:
    site = server.Site(Resource())
    built: list[Any] = []
    build = site.buildProtocol

    def recording(addr: Any) -> Any:
        protocol = build(addr)
        built.append(protocol)
        return protocol

    site.buildProtocol = recording  # type: ignore[method-assign]
    port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
    client.sendall(b"GET /compat HTTP/1.1\r\nHost: compat.test\r\n")
    for _ in range(200):  # the head is parsed up to here within a few reactor turns
        if built and getattr(built[0]._channel, "_command", None) is not None:
            return LiveConnection(port, client, built[0])
        await task.deferLater(reactor, 0.01, lambda: None)  # type: ignore[arg-type]
    client.close()
    await port.stopListening()
    raise AssertionError("the Site never read the request line")


def _real_instances(live: LiveConnection) -> dict[str, object]:
    """A real object for every owner of an instance attribute in PRIVATE_NAMES."""
    request = server.Request(live.channel)
    factory = txredisapi.RedisFactory(None, None, 1, isLazy=True)
    return {
        "twisted.web.http_headers.Headers": Headers({b"x": [b"y"]}),
        "twisted.web.server.Site": server.Site(Resource()),
        "twisted.web.http.Request": request,
        "twisted.python.components.Componentized": request,
        "twisted.web.http.HTTPChannel": live.channel,
        "twisted.internet.abstract.FileDescriptor": live.channel.transport,
        "txredisapi._PoolSlot": txredisapi._PoolSlot(factory, object()),
        "txredisapi.RedisFactory": factory,
        "txredisapi.RedisProtocol": txredisapi.RedisProtocol(),
        # An empty list of Sentinels: the real constructor, and no connection attempts.
        "txredisapi.Sentinel": txredisapi.Sentinel([]),
    }


@pytest_twisted.ensureDeferred
async def test_every_private_name_still_has_the_shape_we_rely_on() -> None:
    """Each class, method, class default and instance attribute in PRIVATE_NAMES exists
    as listed on the installed Twisted and txredisapi; an upgrade that renames or drops
    one fails here, naming it and why we need it."""
    live = await _live_connection()
    try:
        instances = _real_instances(live)
        problems = [
            f"{entry.owner}.{entry.name}: {problem} (needed because {entry.reason})"
            for entry in PRIVATE_NAMES
            if (problem := problem_with(entry, instances)) is not None
        ]
    finally:
        await live.close()
    assert not problems, "\n".join(problems)


def _broken(entry: PrivateName) -> Iterator[PrivateName]:
    """Ways ``entry`` could stop matching what a release ships."""
    yield attrs.evolve(entry, name=entry.name + "_renamed")
    if entry.params is not None:
        yield attrs.evolve(entry, params=(*entry.params, "added"))
    if entry.kind is Kind.CLASS_ATTRIBUTE:
        yield attrs.evolve(entry, default=not entry.default if entry.default in (0, 1)
                           else object())
    if entry.value_type is not None:
        yield attrs.evolve(entry, value_type=frozenset)


@pytest_twisted.ensureDeferred
async def test_the_check_fails_for_a_name_that_went_away_or_changed() -> None:
    """A renamed name, a changed signature, another default or another value type is
    reported, for every entry: the check above can fail."""
    live = await _live_connection()
    try:
        instances = _real_instances(live)
        missed = [
            f"{variant.owner}.{variant.name} {variant.kind.value}"
            for entry in PRIVATE_NAMES
            for variant in _broken(entry)
            if problem_with(variant, instances) is None
        ]
    finally:
        await live.close()
    assert not missed, "not detected: " + ", ".join(missed)


def test_every_entry_says_why_and_is_listed_once() -> None:
    """Each private name is listed once, with a reason, and says what to check."""
    keys = [(entry.owner, entry.name) for entry in PRIVATE_NAMES]
    assert len(keys) == len(set(keys))
    for entry in PRIVATE_NAMES:
        assert entry.reason.strip(), entry
        if entry.kind in (Kind.CLASS, Kind.METHOD) and entry.owner.startswith("txredisapi"):
            assert entry.params is not None, f"{entry.name}: say which parameters we pass"


def test_txredisapi_aliases_are_the_listed_classes() -> None:
    """PoolSlot, SlotFactory and SentinelEndpoint are txredisapi's private classes, each
    in PRIVATE_NAMES."""
    listed = {entry.name for entry in PRIVATE_NAMES if entry.owner == "txredisapi"}
    for alias, name in [("PoolSlot", "_PoolSlot"), ("SlotFactory", "_SlotFactory"),
                        ("SentinelEndpoint", "_SentinelEndpoint")]:
        assert getattr(_compat, alias) is getattr(txredisapi, name)
        assert name in listed


def test_raw_headers_is_the_dict_headers_reads() -> None:
    """raw_headers gives the live store of a Headers (a write shows in getRawHeaders),
    and None for headers kept some other way."""
    headers = Headers()
    stored = _compat.raw_headers(headers)
    assert stored == {}
    assert stored is not None
    stored[b"X-Request-Id"] = [b"abc"]
    assert headers.getRawHeaders(b"x-request-id") == [b"abc"]

    class Elsewhere(Headers):
        __slots__ = ()

    odd = Elsewhere()
    odd._rawHeaders = types.MappingProxyType({})  # type: ignore[assignment]
    assert _compat.raw_headers(odd) is None


def test_site_parses_post_forms_follows_the_site_setting() -> None:
    """site_parses_post_forms answers what the Site was built with."""
    assert _compat.site_parses_post_forms(server.Site(Resource())) is True
    off = server.Site(Resource(), parsePOSTFormSubmission=False)
    assert _compat.site_parses_post_forms(off) is False


@pytest_twisted.ensureDeferred
async def test_tcp_write_pending_on_a_real_connection() -> None:
    """tcp_write_pending is true exactly while a write waits for the reactor to hand it
    to the kernel."""
    live = await _live_connection()
    try:
        transport = live.channel.transport
        assert not _compat.tcp_write_pending(transport)  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # type: ignore[union-attr]
        assert _compat.tcp_write_pending(transport)  # type: ignore[arg-type]
        for _ in range(200):
            if not _compat.tcp_write_pending(transport):  # type: ignore[arg-type]
                break
            await task.deferLater(reactor, 0.01, lambda: None)  # type: ignore[arg-type]
        assert not _compat.tcp_write_pending(transport)  # type: ignore[arg-type]
        assert live.client.recv(100) == b"HTTP/1.1 204 No Content\r\n\r\n"
    finally:
        await live.close()


def test_clear_exit_signal_forgets_the_signal_twistd_would_raise() -> None:
    """On the running reactor (which records its stopping signal) clear_exit_signal sets
    it back to None; an object that records none is left alone."""
    assert _ISupportsExitSignalCapturing.providedBy(reactor)
    saved = reactor._exitSignal  # type: ignore[attr-defined]
    try:
        reactor._exitSignal = 15  # type: ignore[attr-defined]
        _compat.clear_exit_signal(reactor)
        assert reactor._exitSignal is None  # type: ignore[attr-defined]
    finally:
        reactor._exitSignal = saved  # type: ignore[attr-defined]
    other = types.SimpleNamespace(_exitSignal=15)
    _compat.clear_exit_signal(other)
    assert other._exitSignal == 15
