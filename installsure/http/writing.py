"""Writing an answer: the response's headers (the policy's, the handler's, ours), gzip
for large JSON, Content-Length and X-Response-Time, then the body, whole or streamed.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from twisted.internet import defer

from installsure.http._wire.head import canonical_name
from installsure.http._wire.headers import is_sane, set_trusted
from installsure.http.context import RequestContext
from installsure.http.encoding import JSON, JSON_UTF8, Encoded, accepts_gzip, gzipped
from installsure.http.outgoing import StreamedBody, send_streamed
from installsure.http.policy import HeaderPolicy, add_header
from installsure.http.settings import HttpSettings


class ResponseWriter:
    """Writes :data:`~installsure.http.encoding.Encoded` answers under ``settings``."""

    def __init__(self, settings: HttpSettings, policy: HeaderPolicy) -> None:
        self._policy = policy
        self._gzip_min_size = settings.gzip_min_size
        self._request_id_key = canonical_name(settings.request_id_header.encode("ascii"))

    def respond(
        self, ctx: RequestContext, answer: Encoded, started: float
    ) -> int | defer.Deferred[int]:
        """Set the response's headers, write it and finish the request; the size of
        the body sent (a Deferred of it for a streamed body, fired once it is sent)."""
        status, body, content_type, headers = answer
        request: Any = ctx.request
        self._policy.apply(request, headers, ctx.extra_headers)
        out = request.responseHeaders
        request_headers = request.requestHeaders
        streamed = isinstance(body, StreamedBody)
        if content_type is not None and not streamed and (
            len(body) >= self._gzip_min_size
            and content_type.startswith(JSON)
            and accepts_gzip(request_headers.getRawHeaders(b"accept-encoding"))
        ):
            body = gzipped(body)
            out.setRawHeaders(b"Content-Encoding", [b"gzip"])
            add_header(out, b"Vary", b"Accept-Encoding")
        request.setResponseCode(status)
        with_body = status not in (204, 304)
        elapsed = b"%.2fms" % ((perf_counter() - started) * 1000)
        ours = [(self._request_id_key, [ctx.request_id.encode("ascii")])]
        if content_type is not None:
            if content_type is JSON_UTF8 or is_sane(content_type):
                ours.append((b"Content-Type", [content_type]))
            else:
                # A handler's (Response.content_type) with a line break: sanitised as
                # any header value is, so it cannot add a header.
                out.setRawHeaders(b"Content-Type", [content_type])
        if with_body:
            length = body.length if isinstance(body, StreamedBody) else len(body)
            ours.append((b"Content-Length", [b"%d" % length]))
        ours.append((b"X-Response-Time", [elapsed]))
        set_trusted(out, ours)
        if isinstance(body, StreamedBody):
            if request.method == b"HEAD" or not with_body:
                body.source.close()
                request.finish()
                return 0
            return send_streamed(request, body)
        respond = getattr(request, "respond", None)
        if respond is not None:
            respond(body if with_body else b"")
        else:
            if body and with_body:
                request.write(body)
            request.finish()
        return len(body)
