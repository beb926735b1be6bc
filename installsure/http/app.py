"""The HTTP application: one leaf resource that runs the middleware and dispatches routes.

Every request goes through :class:`ApiResource.render`: request id, trace id, client
address, routing, auth hook, rate limit, body validation, the handler, then one place
that writes the response (envelope, security headers, CORS, gzip, Content-Length,
X-Response-Time), logs it and counts it.

Its parts live beside it: routing in :mod:`~installsure.http.dispatch`, body reading
in :mod:`~installsure.http.body`, encoding in :mod:`~installsure.http.encoding`, the
headers every response gets in :mod:`~installsure.http.policy`, writing the answer in
:mod:`~installsure.http.writing`, the count of requests in flight in
:mod:`~installsure.http.inflight`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from time import perf_counter
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from installsure import logs, metrics
from installsure.http._wire.head import canonical_name
from installsure.http._wire.headers import first_values
from installsure.http.body import read_body
from installsure.http.context import RequestContext, RequestIds, parse_traceparent, sane_request_id
from installsure.http.dispatch import RouteTable
from installsure.http.encoding import (
    JSON_UTF8,
    Encoded,
    encode_result,
)
from installsure.http.errors import ApiError, FieldError, error_body
from installsure.http.incoming import BodyStream, from_content
from installsure.http.inflight import InFlight
from installsure.http.policy import HeaderPolicy
from installsure.http.ratelimit import RateLimiter, admit, authenticate_counted
from installsure.http.routing import Response, Route, Router
from installsure.http.settings import HttpSettings
from installsure.http.validation import structure_query
from installsure.http.writing import ResponseWriter

log = Logger(namespace="installsure.http")

#: ``authenticate(ctx, requirement)`` returns the user (or a Deferred/coroutine of it)
#: or raises ApiError 401/403. The auth issue provides it.
Authenticator = Callable[[RequestContext, str], Any]

_UNMATCHED = "<unmatched>"
_CLIENT_CLOSED = 499


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
        self._in_flight = InFlight()
        self._request_id_header = settings.request_id_header.encode("ascii")
        self._slow_ms = settings.slow_request_threshold * 1000
        self._headers = HeaderPolicy(settings)
        self._writer = ResponseWriter(settings, self._headers)
        self._request_id_key = canonical_name(self._request_id_header)
        if self.rate_limiter is not None:
            for route in router.routes:
                if route.rate_limit is not None:
                    # Unknown names fail here, at start, rather than on every request.
                    self.rate_limiter.rule(route.rate_limit)
        self.routes = RouteTable(router)

    @property
    def in_flight(self) -> int:
        """Requests of this resource being handled right now (see :meth:`drain`)."""
        return self._in_flight.count

    def drain(self, grace: float, clock: IReactorTime | None = None) -> defer.Deferred[int]:
        """Fires with 0 once no request is in flight, or after ``grace`` seconds with the
        number still running (the caller then closes connections)."""
        return self._in_flight.drain(grace, clock)

    def when_idle(self) -> defer.Deferred[int]:
        """Fires once no request is in flight."""
        return self._in_flight.when_idle()

    def cut_running(self) -> int:
        """The shutdown's grace is over: answer every request still running 503 (and
        log each); how many there were."""
        return self._in_flight.cut()

    @property
    def security_headers(self) -> list[tuple[bytes, list[bytes]]]:
        return self._headers.security_headers

    def new_request_id(self) -> str:
        return self._ids.new()

    def body_limit(self, path: bytes) -> int:
        """The largest body a request to ``path`` may send."""
        return self.routes.body_limit(path, self.settings.max_body_size)

    # -- request entry ---------------------------------------------------------------

    def render(self, request: Any) -> Any:
        self._serve(request, None)
        return NOT_DONE_YET

    def render_streamed(self, request: Any, stream: BodyStream) -> None:
        """Serve a request of a streamed route whose head is in and whose body is
        arriving through ``stream`` (see :mod:`installsure.http.incoming`)."""
        self._serve(request, stream)

    def _serve(self, request: Any, stream: BodyStream | None) -> None:
        started = perf_counter()
        self._in_flight.started()
        raw_id, raw_trace = first_values(
            request.requestHeaders,
            (self._request_id_key, self._request_id_header),
            (b"Traceparent", b"traceparent"),
        )
        request_id = (sane_request_id(raw_id) if raw_id else None) or self._ids.new()
        ctx = RequestContext(
            request,
            request_id,
            self._headers.remote(request),
            parse_traceparent(raw_trace) if raw_trace else None,
        )
        if stream is not None:
            ctx.body_stream = stream
        try:
            result = self._dispatch(ctx)
        except ApiError as error:
            self._send_error(ctx, error, started)
            return
        except Exception:
            self._send_crash(ctx, Failure(), started)  # type: ignore[no-untyped-call]
            return
        # Deferred is an ABC-registered Awaitable, so isinstance() against it is slow;
        # most handlers answer with a Response at once.
        if type(result) is not Response and isinstance(result, defer.Deferred):
            self._finish_later(ctx, result, started)
        else:
            self._send_result(ctx, result, started)

    def _dispatch(self, ctx: RequestContext) -> Any:
        request = ctx.request
        method = request.method
        if method == b"OPTIONS":
            return self._options(ctx)
        route, params = self.routes.match(method, request.path)
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
        if self.rate_limiter is not None:
            await admit(self.rate_limiter, ctx, rule=route.rate_limit,
                        authenticated=route.auth is not None)
        result = self._call(ctx, route, params)
        if isinstance(result, defer.Deferred):
            result = await result
        return result

    def _call(self, ctx: RequestContext, route: Route, params: dict[str, Any]) -> Any:
        kwargs = params
        if route.query is not None:
            kwargs = {**params, "query": structure_query(ctx.request.args, route.query)}
        if route.streamed:
            # A request that could not be streamed (twisted.web read it whole) is
            # replayed through the same interface.
            body = ctx.body_stream or from_content(getattr(ctx.request, "content", None))
            kwargs = {**kwargs, "body": body}
        elif route.body is not None:
            kwargs = {**kwargs, "body": read_body(ctx.request, route, self.settings.max_body_size)}
        result = route.handler(ctx, **kwargs)
        if type(result) is not Response and inspect.iscoroutine(result):
            return defer.Deferred.fromCoroutine(result)
        return result

    def _options(self, ctx: RequestContext) -> Response:
        request = ctx.request
        allowed = self.routes.allowed_methods(request.path)
        if not allowed:
            raise ApiError("NOT_FOUND", "There is no such path; see /openapi.json.")
        methods = sorted({*allowed, "OPTIONS"} | ({"HEAD"} if "GET" in allowed else set()))
        text = ", ".join(methods).encode("ascii")
        headers = [(b"Allow", text), *self._headers.preflight(request, text)]
        return Response(status=204, headers=headers)

    # -- responses --------------------------------------------------------------------

    def _finish_later(self, ctx: RequestContext, d: defer.Deferred[Any], started: float) -> None:
        # "gone": the client left; "cut": answered 503 at the end of a shutdown's grace.
        # Either way the handler's Deferred is cancelled, and its outcome is not sent.
        ended: list[str] = []

        def disconnected(_: object) -> None:
            ended.append("gone")
            d.cancel()

        def cut() -> None:
            ended.append("cut")
            self._cut(ctx, started)
            d.cancel()

        request: Any = ctx.request
        request.notifyFinish().addErrback(disconnected)
        self._in_flight.later(cut)

        def done(result: Any) -> None:
            self._in_flight.answered(cut)
            if ended:
                if ended[0] == "gone":
                    self._count(ctx, _CLIENT_CLOSED, 0, started)
                return
            self._send_result(ctx, result, started)

        def failed(failure: Failure) -> None:
            self._in_flight.answered(cut)
            if ended:
                if ended[0] == "gone":
                    self._count(ctx, _CLIENT_CLOSED, 0, started)
                return
            if isinstance(failure.value, ApiError):
                self._send_error(ctx, failure.value, started)
            else:
                self._send_crash(ctx, failure, started)

        d.addCallbacks(done, failed)

    def _cut(self, ctx: RequestContext, started: float) -> None:
        request: Any = ctx.request
        log.warn(
            "shutdown: {method} {path} (request {request_id}) still running after "
            "{seconds:.1f} s at the end of the grace: answered 503",
            method=request.method.decode("latin-1"),
            path=request.path.decode("latin-1"),
            request_id=ctx.request_id,
            seconds=perf_counter() - started,
        )
        body = error_body(
            "UNAVAILABLE",
            "The server is shutting down and this request did not finish within its "
            "grace period; it may or may not have taken effect.",
            ctx.request_id,
        )
        self._write(ctx, (503, body, JSON_UTF8, ()), started)

    def _send_result(self, ctx: RequestContext, result: Any, started: float) -> None:
        try:
            answer = encode_result(ctx.route, result)
        except ApiError as error:
            self._send_error(ctx, error, started)
            return
        except Exception:
            self._send_crash(ctx, Failure(), started)  # type: ignore[no-untyped-call]
            return
        self._write(ctx, answer, started)

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
        self._write(ctx, (error.status, body, JSON_UTF8, error.headers), started)

    def _send_crash(self, ctx: RequestContext, failure: Failure, started: float) -> None:
        log.failure(
            "unhandled error in {method} {path} (request {request_id})",
            failure,
            method=ctx.request.method.decode("latin-1"),
            path=ctx.request.path.decode("latin-1"),
            request_id=ctx.request_id,
        )
        self._write(ctx, (500, self._crash_body(ctx, failure), JSON_UTF8, ()), started)

    def _crash_body(self, ctx: RequestContext, failure: Failure) -> bytes:
        if self.environment == "production":
            message = "Internal error; quote the requestId when you report it."
        else:
            kind = failure.type.__name__ if failure.type is not None else "Error"
            message = f"Internal error: {kind}: {failure.getErrorMessage()}"
        return error_body("INTERNAL_ERROR", message, ctx.request_id)

    def _write(self, ctx: RequestContext, answer: Encoded, started: float) -> None:
        """Answer ``ctx``'s request, then count and log it: exactly once, whatever fails
        (an answer that is never counted keeps a drain waiting for the whole grace)."""
        status = answer[0]
        stream = ctx.body_stream
        # Answered while its body still arrives (an upload refused part-way).
        early = stream is not None and not stream.ended and not stream.gone
        if early:
            ctx.add_header(b"Connection", b"close")
        try:
            sent = self._writer.respond(ctx, answer, started)
        except Exception:
            # E.g. a header Twisted refuses: answer 500 rather than leave the client
            # waiting, unless the response had already begun.
            status, sent = 500, self._answer_failed_write(ctx, Failure(), started)  # type: ignore[no-untyped-call]
        if early:
            stream.answered_early()
        if isinstance(sent, defer.Deferred):  # a streamed body, still being sent
            sent.addCallbacks(
                lambda size: self._count_safely(ctx, status, size, started),
                lambda failure: self._count_safely(
                    ctx, _CLIENT_CLOSED, getattr(failure.value, "sent", 0), started),
            )
            return
        self._count_safely(ctx, status, sent, started)

    def _count_safely(self, ctx: RequestContext, status: int, sent: int, started: float) -> None:
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
            answer = (500, self._crash_body(ctx, failure), JSON_UTF8, ())
            sent = self._writer.respond(ctx, answer, started)
            return sent if isinstance(sent, int) else 0
        except Exception:
            log.failure("failed to write a 500 response; closing the connection")
            request.channel.loseConnection()
            return 0

    def _count(self, ctx: RequestContext, status: int, size: int, started: float) -> None:
        elapsed = perf_counter() - started
        request = ctx.request
        route = ctx.route_path
        stats = metrics.HTTP_STATS
        self._in_flight.finished()
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


def field_errors(pairs: Mapping[str, str]) -> list[FieldError]:
    """Shorthand for handlers that check fields themselves."""
    return [FieldError(name, message) for name, message in pairs.items()]
