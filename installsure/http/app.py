"""The HTTP application: one leaf resource that runs the middleware and dispatches routes.

Every request goes through :class:`ApiResource.render`: request id, trace id, client
address, routing, auth hook, rate limit, body validation, the handler, then one place
that writes the response (envelope, security headers, CORS, gzip, Content-Length,
X-Response-Time), logs it and counts it.

Routing: routes without path parameters sit in a dict keyed by the raw path, so the
common case costs one lookup; the rest are matched by the werkzeug map of a Klein app
(``ApiResource.klein``) in which every route is registered, so URL rules, converters
and 405s follow Klein's semantics.
"""

from __future__ import annotations

import gzip
import inspect
import json
from collections.abc import Callable, Iterable, Mapping
from time import perf_counter
from typing import Any
from urllib.parse import unquote_to_bytes

from klein import Klein
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from installsure import logs, metrics
from installsure.http._wire.head import canonical_name
from installsure.http._wire.headers import first_values, remove_trusted, set_trusted
from installsure.http.context import RequestContext, RequestIds, parse_traceparent, sane_request_id
from installsure.http.errors import ApiError, FieldError, error_body
from installsure.http.ratelimit import RateLimiter, authenticate_counted
from installsure.http.refusal import payload_too_large
from installsure.http.routing import Paged, Response, Route, Router, method_not_allowed
from installsure.http.settings import HttpSettings
from installsure.http.validation import (
    missing_body,
    parse_json,
    structure_body,
    structure_query,
    unstructure,
)

log = Logger(namespace="installsure.http")

#: ``authenticate(ctx, requirement)`` returns the user (or a Deferred/coroutine of it)
#: or raises ApiError 401/403. The auth issue provides it.
Authenticator = Callable[[RequestContext, str], Any]

_JSON = b"application/json"
_JSON_UTF8 = b"application/json; charset=utf-8"
_CORS_ALLOW_HEADERS = b"Authorization, Content-Type, X-Request-ID, traceparent, tracestate"
_UNMATCHED = "<unmatched>"
_REPLACEABLE = frozenset(
    {b"content-security-policy", b"x-frame-options", b"cross-origin-resource-policy"}
)
_CLIENT_CLOSED = 499


# One encoder for every response: json.dumps builds a new one per call when given options.
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _dumps(value: Any) -> bytes:
    return _encode_json(value).encode("utf-8")


def _is_secure(request: Any) -> bool:
    """``request.isSecure()``, remembered per connection (it asks zope.interface)."""
    channel = request.channel
    secure: bool | None = getattr(channel, "_installsure_secure", None)
    if secure is None:
        secure = bool(request.isSecure())
        if channel is not None:
            channel._installsure_secure = secure
    return secure


def _add_header(out: Headers, name: bytes, value: bytes) -> None:
    # Never append in place: some value lists are shared constants (see _write).
    existing = out.getRawHeaders(name)
    out.setRawHeaders(name, [*existing, value] if existing else [value])


def _forwarded_entry(forwarded: list[bytes], hops: int) -> str | None:
    """What the outermost of ``hops`` proxies of ours put in an ``X-Forwarded-*`` list.

    Each of our proxies appends what it saw (the client's address, the scheme), so the
    client-facing one's entry is ``hops`` from the right; entries further left came
    from the client and could be forged. With fewer entries than hops (a proxy that
    replaces rather than appends), the leftmost is taken. Several header lines count
    as one list, in order.
    """
    entries = [entry.strip() for line in forwarded for entry in line.split(b",")]
    entries = [entry for entry in entries if entry]
    if not entries:
        return None
    return entries[-hops if hops <= len(entries) else 0].decode("latin-1")


def _accepts_gzip(raw: Iterable[bytes] | None) -> bool:
    if not raw:
        return False
    for header in raw:
        for item in header.split(b","):
            name, _, params = item.strip().partition(b";")
            if name.strip().lower() in (b"gzip", b"*"):
                q = params.replace(b" ", b"")
                return not (q.startswith(b"q=0") and q.strip(b"q=0.") == b"")
    return False


class ApiResource(Resource):
    """The whole HTTP API as one leaf resource (see module docstring)."""

    isLeaf = True

    def __init__(
        self,
        router: Router,
        settings: HttpSettings,
        *,
        environment: str = "development",
        rate_limiter: RateLimiter | None = None,
        authenticate: Authenticator | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if environment not in ("development", "production", "test"):
            raise ValueError(
                f"environment must be development, production or test, not {environment!r}"
            )
        self.settings = settings
        self.environment = environment
        self.router = router
        self.rate_limiter = rate_limiter if settings.rate_limit_enabled else None
        self.authenticate = authenticate
        self._ids = RequestIds()
        #: Requests of this resource being handled right now (see :meth:`drain`).
        self.in_flight = 0
        self._idle_waiters: list[defer.Deferred[int]] = []
        self._request_id_header = settings.request_id_header.encode("ascii")
        self._slow_ms = settings.slow_request_threshold * 1000
        self._trust_proxy = settings.trust_proxy
        self._proxy_hops = settings.proxy_hops
        self._gzip_min_size = settings.gzip_min_size
        self._cors_origins = frozenset(o.encode("ascii") for o in settings.cors_origins)
        self._security = self._security_headers(settings)
        self._security_raw = [(canonical_name(name), values) for name, values in self._security]
        self._request_id_key = canonical_name(self._request_id_header)
        self._hsts = (
            f"max-age={settings.hsts_max_age}; includeSubDomains".encode("ascii")
            if settings.hsts_max_age
            else None
        )
        if self.rate_limiter is not None:
            for route in router.routes:
                if route.rate_limit is not None:
                    # Unknown names fail here, at start, rather than on every request.
                    self.rate_limiter.rule(route.rate_limit)
        self._static: dict[bytes, dict[bytes, Route]] = {}
        self._endpoints: dict[str, Route] = {}
        self.klein = Klein()
        for index, route in enumerate(router.routes):
            name = f"r{index}:{route.method}:{route.path}"
            self._endpoints[name] = route
            self.klein.route(
                route.werkzeug_path, methods=[route.method], endpoint=name, strict_slashes=False
            )(self._klein_endpoint(route))
            if route.is_static:
                self._static.setdefault(route.path.encode("utf-8"), {})[
                    route.method.encode("ascii")
                ] = route
        self._adapter = self.klein.url_map.bind("localhost")
        # Routes with their own body limit, matched before their body arrives.
        self._limit_map = Klein()
        for route in router.routes:
            if route.max_body is not None:
                self._limit_map.route(
                    route.werkzeug_path, endpoint=str(route.max_body), strict_slashes=False
                )(self._klein_endpoint(route))
        self._limit_adapter = (
            self._limit_map.url_map.bind("localhost") if self._limit_map.endpoints else None
        )

    @staticmethod
    def _security_headers(settings: HttpSettings) -> list[tuple[bytes, list[bytes]]]:
        headers = [
            (b"X-Content-Type-Options", b"nosniff"),
            (b"X-Frame-Options", b"DENY"),
            (b"Referrer-Policy", b"no-referrer"),
            (b"Cross-Origin-Opener-Policy", b"same-origin"),
            (b"Cross-Origin-Resource-Policy", b"same-origin"),
        ]
        if settings.csp:
            headers.insert(0, (b"Content-Security-Policy", settings.csp.encode("ascii")))
        return [(name, [value]) for name, value in headers]

    @staticmethod
    def _klein_endpoint(route: Route) -> Any:
        # Klein stores the endpoint; dispatch only needs to know which route matched.
        def endpoint(_request: object, **_params: object) -> Route:
            return route

        return endpoint

    def drain(self, grace: float, clock: IReactorTime | None = None) -> defer.Deferred[int]:
        """A drain hook: fires with 0 once no request is in flight, or after ``grace``
        seconds with the number still running (the caller then closes connections)."""
        if self.in_flight == 0:
            return defer.succeed(0)
        if clock is None:
            from twisted.internet import reactor as _reactor

            clock = _reactor
        assert clock is not None  # noqa: S101 - for mypy
        waiter: defer.Deferred[int] = defer.Deferred()
        self._idle_waiters.append(waiter)

        def give_up() -> None:
            if waiter in self._idle_waiters:
                self._idle_waiters.remove(waiter)
                log.warn(
                    "{count} HTTP requests still running after the {grace}s grace period",
                    count=self.in_flight,
                    grace=grace,
                )
                waiter.callback(self.in_flight)

        timer = clock.callLater(grace, give_up)

        def stop_timer(count: int) -> int:
            if timer.active():
                timer.cancel()
            return count

        waiter.addCallback(stop_timer)
        return waiter

    @property
    def security_headers(self) -> list[tuple[bytes, list[bytes]]]:
        return self._security

    def new_request_id(self) -> str:
        return self._ids.new()

    def body_limit(self, path: bytes) -> int:
        """The largest body a request to ``path`` may send."""
        if self._limit_adapter is not None:
            try:
                endpoint, _params = self._limit_adapter.match(
                    unquote_to_bytes(path).decode("utf-8", "replace"), method="POST"
                )
            except (NotFound, MethodNotAllowed, RequestRedirect):
                return self.settings.max_body_size
            return int(endpoint)
        return self.settings.max_body_size

    # -- request entry ---------------------------------------------------------------

    def render(self, request: Any) -> Any:
        started = perf_counter()
        metrics.HTTP_STATS.in_flight += 1
        self.in_flight += 1
        raw_id, raw_trace = first_values(
            request.requestHeaders,
            (self._request_id_key, self._request_id_header),
            (b"Traceparent", b"traceparent"),
        )
        request_id = sane_request_id(raw_id) or self._ids.new()
        ctx = RequestContext(
            request, request_id, self._remote(request), parse_traceparent(raw_trace)
        )
        try:
            result = self._dispatch(ctx)
        except ApiError as error:
            self._send_error(ctx, error, started)
            return NOT_DONE_YET
        except Exception:
            self._send_crash(ctx, Failure(), started)  # type: ignore[no-untyped-call]
            return NOT_DONE_YET
        # Deferred is an ABC-registered Awaitable, so isinstance() against it is slow;
        # most handlers answer with a Response at once.
        if type(result) is not Response and isinstance(result, defer.Deferred):
            self._finish_later(ctx, result, started)
        else:
            self._send_result(ctx, result, started)
        return NOT_DONE_YET

    def _remote(self, request: Any) -> str:
        if self._trust_proxy:
            forwarded = request.requestHeaders.getRawHeaders(b"x-forwarded-for")
            if forwarded:
                client = _forwarded_entry(forwarded, self._proxy_hops)
                if client is not None:
                    return client
        # The peer of a connection never changes: work its text out once per channel.
        channel = request.channel
        remote: str | None = getattr(channel, "_installsure_remote", None)
        if remote is None:
            address = request.getClientAddress()
            remote = str(getattr(address, "host", None) or "-")
            if channel is not None:
                channel._installsure_remote = remote
        return remote

    # -- routing ----------------------------------------------------------------------

    def match(self, method: bytes, path: bytes) -> tuple[Route, dict[str, Any]]:
        """The route for ``method path`` and its parameters, or ApiError 404/405."""
        by_method = self._static.get(path)
        if by_method is not None:
            route = by_method.get(method)
            if route is None and method == b"HEAD":
                route = by_method.get(b"GET")
            if route is not None:
                return route, {}
        try:
            text = unquote_to_bytes(path).decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError("BAD_REQUEST", "The request path is not valid UTF-8.") from None
        method_text = method.decode("latin-1")
        try:
            endpoint, params = self._adapter.match(
                text, method="GET" if method_text == "HEAD" else method_text
            )
        except MethodNotAllowed as e:
            raise method_not_allowed(e.valid_methods or ()) from None
        except (NotFound, RequestRedirect):
            raise ApiError(
                "NOT_FOUND", f"There is no {method_text} {text}; see /openapi.json."
            ) from None
        return self._endpoints[endpoint], dict(params)

    def allowed_methods(self, path: bytes) -> list[str]:
        by_method = self._static.get(path)
        if by_method is not None:
            return [m.decode("ascii") for m in by_method]
        try:
            text = unquote_to_bytes(path).decode("utf-8")
            self._adapter.match(text, method="__probe__")
        except MethodNotAllowed as e:
            return list(e.valid_methods or ())
        except Exception:
            return []
        return []

    def _dispatch(self, ctx: RequestContext) -> Any:
        request = ctx.request
        method = request.method
        if method == b"OPTIONS":
            return self._options(ctx)
        route, params = self.match(method, request.path)
        ctx.route_path = route.path
        ctx.route = route
        if route.auth is None and (route.rate_limit is None or self.rate_limiter is None):
            return self._call(ctx, route, params)
        return defer.Deferred.fromCoroutine(self._guarded(ctx, route, params))

    async def _guarded(self, ctx: RequestContext, route: Route, params: dict[str, Any]) -> Any:
        if route.auth is not None:
            if self.authenticate is None:
                raise ApiError(
                    "UNAUTHENTICATED",
                    "This endpoint needs authentication, which this server does not offer yet.",
                )
            ctx.user = await authenticate_counted(
                self.authenticate, ctx, route.auth, self.rate_limiter
            )
        if route.rate_limit is not None and self.rate_limiter is not None:
            key = f"user:{ctx.user_id}" if ctx.user_id else f"ip:{ctx.remote}"
            decision = await self.rate_limiter.check(route.rate_limit, key)
            if decision is not None:
                if not decision.allowed:
                    raise decision.error()
                for name, value in decision.headers():
                    ctx.add_header(name, value)
        result = self._call(ctx, route, params)
        if isinstance(result, defer.Deferred):
            result = await result
        return result

    def _call(self, ctx: RequestContext, route: Route, params: dict[str, Any]) -> Any:
        kwargs = params
        if route.query is not None:
            kwargs = {**params, "query": structure_query(ctx.request.args, route.query)}
        if route.body is not None:
            kwargs = {**kwargs, "body": self._read_body(ctx, route)}
        result = route.handler(ctx, **kwargs)
        if type(result) is not Response and inspect.iscoroutine(result):
            return defer.Deferred.fromCoroutine(result)
        return result

    def _options(self, ctx: RequestContext) -> Response:
        request = ctx.request
        allowed = self.allowed_methods(request.path)
        if not allowed:
            raise ApiError("NOT_FOUND", "There is no such path; see /openapi.json.")
        methods = sorted({*allowed, "OPTIONS"} | ({"HEAD"} if "GET" in allowed else set()))
        text = ", ".join(methods).encode("ascii")
        headers = [(b"Allow", text)]
        origin = request.requestHeaders.getRawHeaders(b"origin")
        wanted = request.requestHeaders.getRawHeaders(b"access-control-request-method")
        if origin and wanted and origin[0] in self._cors_origins:
            headers += [
                (b"Access-Control-Allow-Methods", text),
                (b"Access-Control-Allow-Headers", _CORS_ALLOW_HEADERS),
                (b"Access-Control-Max-Age", b"600"),
            ]
        return Response(status=204, headers=headers)

    def _read_body(self, ctx: RequestContext, route: Route) -> Any:
        assert route.body is not None  # noqa: S101 - only called for routes with a body
        request = ctx.request
        limit = route.max_body or self.settings.max_body_size
        length = request.requestHeaders.getRawHeaders(b"content-length")
        if length and length[0].isdigit() and int(length[0]) > limit:
            raise too_large(limit)
        content = request.content
        raw = b""
        if content is not None:
            content.seek(0)
            raw = content.read(limit + 1)
        if len(raw) > limit:
            raise too_large(limit)
        if not raw.strip():
            raise missing_body()
        raw_type = request.requestHeaders.getRawHeaders(b"content-type")
        media, _, params = (raw_type[0] if raw_type else b"").partition(b";")
        accepted = "/".join(route.content_types).encode()
        if media.strip().lower().decode("latin-1") not in route.content_types:
            raise ApiError(
                "UNSUPPORTED_MEDIA_TYPE",
                f"Send the body with Content-Type: {accepted.decode()}.",
            )
        charset = params.strip().lower()
        if charset.startswith(b"charset=") and charset[8:].strip(b'"') not in (b"utf-8", b"utf8"):
            raise ApiError("UNSUPPORTED_MEDIA_TYPE", "Send the JSON body encoded as UTF-8.")
        return structure_body(parse_json(raw), route.body, forbid_extra=route.forbid_extra)

    # -- responses --------------------------------------------------------------------

    def _finish_later(self, ctx: RequestContext, d: defer.Deferred[Any], started: float) -> None:
        gone: list[bool] = []

        def disconnected(_: object) -> None:
            gone.append(True)
            d.cancel()

        request: Any = ctx.request
        request.notifyFinish().addErrback(disconnected)

        def done(result: Any) -> None:
            if gone:
                self._count(ctx, _CLIENT_CLOSED, 0, started)
                return
            self._send_result(ctx, result, started)

        def failed(failure: Failure) -> None:
            if gone:
                self._count(ctx, _CLIENT_CLOSED, 0, started)
                return
            if isinstance(failure.value, ApiError):
                self._send_error(ctx, failure.value, started)
            else:
                self._send_crash(ctx, failure, started)

        d.addCallbacks(done, failed)

    def _send_result(self, ctx: RequestContext, result: Any, started: float) -> None:
        try:
            status, body, content_type, headers = self._encode(ctx, result)
        except ApiError as error:
            self._send_error(ctx, error, started)
            return
        except Exception:
            self._send_crash(ctx, Failure(), started)  # type: ignore[no-untyped-call]
            return
        self._write(ctx, status, body, content_type, headers, started)

    def _encode(
        self, ctx: RequestContext, result: Any
    ) -> tuple[int, bytes, bytes | None, Iterable[tuple[bytes, bytes]]]:
        route: Route | None = ctx.route
        status = route.status if route is not None else 200
        envelope = route.envelope if route is not None else True
        if isinstance(result, Response):
            if result.status == 204 or (result.body is None and result.status in (204, 304)):
                return result.status, b"", None, result.headers
            if isinstance(result.body, bytes):
                return result.status, result.body, result.content_type, result.headers
            data = unstructure(result.body)
            payload = {"success": True, "data": data} if result.envelope else data
            return result.status, _dumps(payload), _JSON_UTF8, result.headers
        if isinstance(result, Paged):
            payload = {
                "success": True,
                "data": unstructure(list(result.items)),
                "meta": {"page": result.page, "perPage": result.per_page, "total": result.total},
            }
            return status, _dumps(payload), _JSON_UTF8, ()
        if result is None and status == 204:
            return 204, b"", None, ()
        data = unstructure(result)
        return status, _dumps({"success": True, "data": data} if envelope else data), _JSON_UTF8, ()

    def _send_error(self, ctx: RequestContext, error: ApiError, started: float) -> None:
        if error.status >= 500:
            log.error(
                "{code} for {method} {path} (request {request_id}): {message}",
                code=error.code,
                method=ctx.request.method.decode("latin-1"),
                path=ctx.request.path.decode("latin-1"),
                request_id=ctx.request_id,
                message=error.message,
            )
        body = error_body(error.code, error.message, ctx.request_id, error.details)
        self._write(ctx, error.status, body, _JSON_UTF8, error.headers, started)

    def _send_crash(self, ctx: RequestContext, failure: Failure, started: float) -> None:
        log.failure(
            "unhandled error in {method} {path} (request {request_id})",
            failure,
            method=ctx.request.method.decode("latin-1"),
            path=ctx.request.path.decode("latin-1"),
            request_id=ctx.request_id,
        )
        self._write(ctx, 500, self._crash_body(ctx, failure), _JSON_UTF8, (), started)

    def _crash_body(self, ctx: RequestContext, failure: Failure) -> bytes:
        if self.environment == "production":
            message = "Internal error; quote the requestId when you report it."
        else:
            kind = failure.type.__name__ if failure.type is not None else "Error"
            message = f"Internal error: {kind}: {failure.getErrorMessage()}"
        return error_body("INTERNAL_ERROR", message, ctx.request_id)

    def _write(  # noqa: PLR0917 - internal, called from three places
        self,
        ctx: RequestContext,
        status: int,
        body: bytes,
        content_type: bytes | None,
        headers: Iterable[tuple[bytes, bytes]],
        started: float,
    ) -> None:
        """Answer ``ctx``'s request, then count and log it: exactly once, whatever fails
        (an answer that is never counted keeps a drain waiting for the whole grace)."""
        try:
            sent = self._respond(ctx, status, body, content_type, headers, started)
        except Exception:
            # E.g. a header Twisted refuses: answer 500 rather than leave the client
            # waiting, unless the response had already begun.
            status, sent = 500, self._answer_failed_write(ctx, Failure(), started)  # type: ignore[no-untyped-call]
        try:
            self._count(ctx, status, sent, started)
        except Exception:
            # Bookkeeping must never break a response that is already sent.
            log.failure("failed to log or count a request")

    def _answer_failed_write(self, ctx: RequestContext, failure: Failure, started: float) -> int:
        """A 500 with none of the response's own headers, after writing it failed;
        the size of its body (0 when even that could not be sent)."""
        request: Any = ctx.request
        log.failure(
            "failed to write the response of {method} {path} (request {request_id})",
            failure,
            method=request.method.decode("latin-1"),
            path=request.path.decode("latin-1"),
            request_id=ctx.request_id,
        )
        if request.startedWriting or request.finished:
            return 0
        request.responseHeaders = Headers()
        ctx.extra_headers = None
        try:
            return self._respond(
                ctx, 500, self._crash_body(ctx, failure), _JSON_UTF8, (), started
            )
        except Exception:
            log.failure("failed to write a 500 response; closing the connection")
            request.channel.loseConnection()
            return 0

    def _respond(  # noqa: PLR0917 - internal, see _write
        self,
        ctx: RequestContext,
        status: int,
        body: bytes,
        content_type: bytes | None,
        headers: Iterable[tuple[bytes, bytes]],
        started: float,
    ) -> int:
        """Set the response's headers, write it and finish the request; the size of
        the body sent."""
        request: Any = ctx.request
        out = request.responseHeaders
        # Our own names and values (constants, or checked at start) skip Headers' checks
        # (see installsure.http._wire.headers); other headers go through its public API.
        remove_trusted(out, b"Server")
        set_trusted(out, self._security_raw)
        request_headers = request.requestHeaders
        if self._hsts is not None and (
            _is_secure(request)
            or (
                self._trust_proxy
                and (
                    _forwarded_entry(
                        request_headers.getRawHeaders(b"x-forwarded-proto", []),
                        self._proxy_hops,
                    )
                    or ""
                ).lower()
                == "https"
            )
        ):
            out.setRawHeaders(b"Strict-Transport-Security", [self._hsts])
        if self._cors_origins:
            self._cors(request, out)
        for name, value in headers:
            if name.lower() in _REPLACEABLE:
                # A route may set its own policy (e.g. /docs); never send two.
                out.setRawHeaders(name, [value])
            else:
                _add_header(out, name, value)
        if ctx.extra_headers:
            for name, value in ctx.extra_headers:
                _add_header(out, name, value)
        if content_type is not None and (
            len(body) >= self._gzip_min_size
            and content_type.startswith(_JSON)
            and _accepts_gzip(request_headers.getRawHeaders(b"accept-encoding"))
        ):
            body = gzip.compress(body, compresslevel=5)
            out.setRawHeaders(b"Content-Encoding", [b"gzip"])
            _add_header(out, b"Vary", b"Accept-Encoding")
        request.setResponseCode(status)
        with_body = status not in (204, 304)
        elapsed = b"%.2fms" % ((perf_counter() - started) * 1000)
        ours = [(self._request_id_key, [ctx.request_id.encode("ascii")])]
        if content_type == _JSON_UTF8:
            ours.append((b"Content-Type", [content_type]))
        elif content_type is not None:
            # A handler's (Response.content_type): sanitised like any header value.
            out.setRawHeaders(b"Content-Type", [content_type])
        if with_body:
            ours.append((b"Content-Length", [b"%d" % len(body)]))
        ours.append((b"X-Response-Time", [elapsed]))
        set_trusted(out, ours)
        respond = getattr(request, "respond", None)
        if respond is not None:
            respond(body if with_body else b"")
        else:
            if body and with_body:
                request.write(body)
            request.finish()
        return len(body)

    def _cors(self, request: Any, out: Any) -> None:
        _add_header(out, b"Vary", b"Origin")
        origin = request.requestHeaders.getRawHeaders(b"origin")
        if origin and origin[0] in self._cors_origins:
            out.setRawHeaders(b"Access-Control-Allow-Origin", [origin[0]])
            if self.settings.cors_allow_credentials:
                out.setRawHeaders(b"Access-Control-Allow-Credentials", [b"true"])
            out.setRawHeaders(
                b"Access-Control-Expose-Headers",
                [
                    self._request_id_header + b", X-Response-Time, RateLimit-Limit, "
                    b"RateLimit-Remaining, RateLimit-Reset, Retry-After"
                ],
            )

    def _count(self, ctx: RequestContext, status: int, size: int, started: float) -> None:
        elapsed = perf_counter() - started
        request = ctx.request
        route = ctx.route_path
        stats = metrics.HTTP_STATS
        stats.in_flight -= 1
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle_waiters:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(0)
        method = stats.method_label(request.method)
        stats.observe(method, route, status, elapsed)
        path = request.uri.decode("latin-1")
        logged_route = None if route == _UNMATCHED else route
        logs.log_access(
            method=method,
            path=path,
            route=logged_route,
            status=status,
            duration_ms=elapsed * 1000,
            bytes_sent=size,
            request_id=ctx.request_id,
            remote=ctx.remote,
            user=ctx.user_id,
            trace_id=ctx.trace_id,
            slow_threshold_ms=self._slow_ms,
        )


def too_large(limit: int) -> ApiError:
    refusal = payload_too_large(limit)
    return ApiError(refusal.code, refusal.message, status=refusal.status)


def field_errors(pairs: Mapping[str, str]) -> list[FieldError]:
    """Shorthand for handlers that check fields themselves."""
    return [FieldError(name, message) for name, message in pairs.items()]
