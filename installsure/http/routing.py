"""Route declarations: each route says once what it takes, returns and needs.

API modules build a :class:`Router` and decorate their handlers; the app factory
serves them and the OpenAPI generator documents them from the same declarations::

    router = Router()

    @router.route("POST", "/api/projects", body=NewProject, response=Project,
                  status=201, summary="Create a project", tags=("projects",), auth="user")
    async def create_project(ctx: RequestContext, body: NewProject) -> Project: ...

Headers and answers beyond the success one are declared the same way, for the
document (the handler reads and sends them itself)::

    router.add("GET", "/api/files/{id}/download", download,
               request_headers=(HeaderDoc("Range", "One byte range"),),
               responses=(ResponseDoc(206, "The range", headers=(CONTENT_RANGE,)),
                          ResponseDoc(304, "Not modified", has_body=False)),
               errors=(ResponseDoc(416, headers=(UNSATISFIED_RANGE,)), 503))

Handlers are called as ``handler(ctx, **path_params, [body=...], [query=...])`` and may
return a value, a Deferred or a coroutine. Values are attrs instances (or anything
:func:`~installsure.http.validation.unstructure` accepts), wrapped in the success
envelope unless the route says ``envelope=False``; :class:`Paged` adds ``meta`` and
:class:`Response` gives full control.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from attrs import field, frozen

from installsure.http.errors import ApiError

Handler = Callable[..., Any]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


T = TypeVar("T")


@frozen
class Paged(Generic[T]):
    """A page of a list: ``{"success": true, "data": [...], "meta": {page, perPage, total}}``.

    Declare ``response=Paged[Project]`` so the OpenAPI document shows the item type.
    """

    items: Sequence[T]
    page: int
    per_page: int
    total: int


class BinaryFile:
    """The type of a file part in a documented ``multipart/form-data`` body (OpenAPI
    ``format: binary``); nothing is ever structured into it."""


@frozen
class Response:
    """Full control over one response; ``body`` is bytes (sent as is) or JSON-able."""

    body: Any = None
    status: int = 200
    headers: Sequence[tuple[bytes, bytes]] = ()
    content_type: bytes = b"application/json"
    envelope: bool = True


@frozen
class HeaderDoc:
    """A header a route reads (``If-Match``) or a success response sends (``ETag``),
    for the OpenAPI document; the handler does the reading and sending itself."""

    name: str
    description: str
    required: bool = False
    schema: Mapping[str, Any] = field(factory=lambda: {"type": "string"})


@frozen
class ResponseDoc:
    """One answer of a route, as the OpenAPI document shows it.

    In a route's ``responses``: an answer with a body of its own (``body``, its type,
    as ``response`` is for the success answer), or none (``has_body=False``: a 304, a
    redirect); one with the route's own ``status`` describes the success answer (its
    body stays ``response``). In ``errors``: an answer with the error envelope, which
    the route's statuses would refer to anyway; the doc adds its description and the
    headers it carries (the ``Content-Range`` of a 416). ``headers`` are those of this
    answer only; ``response_headers`` come with every success answer besides.
    """

    status: int
    description: str = ""
    body: Any = None
    headers: tuple[HeaderDoc, ...] = ()
    has_body: bool = True


def _response_docs(what: str, items: Iterable[ResponseDoc | tuple[int, Any] | int]
                   ) -> tuple[ResponseDoc, ...]:
    """``responses``/``errors`` as declared (docs, ``(status, type)`` pairs, statuses)
    as ResponseDocs in order of status, one per status."""
    docs: dict[int, ResponseDoc] = {}
    for item in items:
        if isinstance(item, ResponseDoc):
            doc = item
        elif isinstance(item, int):
            doc = ResponseDoc(item)
        else:
            doc = ResponseDoc(item[0], body=item[1])
        if doc.status in docs:
            raise ValueError(f"{what}: status {doc.status} is declared twice")
        docs[doc.status] = doc
    return tuple(docs[status] for status in sorted(docs))


@frozen
class Route:
    """One declared operation. ``path`` uses OpenAPI syntax: ``/api/projects/{id}``."""

    method: str
    path: str
    handler: Handler
    body: type[Any] | None = None
    query: type[Any] | None = None
    response: Any = None
    status: int = 200
    summary: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    #: ``None`` (public) or a requirement name ("user", "admin", ...) for the auth hook.
    auth: str | None = None
    #: Named rate limit ("default", "login", "upload", ...) or ``None`` for none.
    rate_limit: str | None = "default"
    envelope: bool = True
    #: Body limit in bytes for this route; ``None`` uses ``HttpSettings.max_body_size``.
    max_body: int | None = None
    #: Answer 400 on body fields the type does not know.
    forbid_extra: bool = False
    #: Content types the body may have (JSON by default).
    content_types: tuple[str, ...] = ("application/json",)
    #: Extra error statuses worth documenting (the error envelope), e.g. ``(404,
    #: 409)``; a :class:`ResponseDoc` for one that has more to say (its headers).
    errors: tuple[ResponseDoc, ...] = ()
    #: Media type of the success response, e.g. ``text/plain`` for ``/metrics``.
    media_type: str = "application/json"
    #: Other statuses the handler answers with a body of its own (not the error
    #: envelope), with that body's type: ``((503, ReadinessReport),)``, or as
    #: :class:`ResponseDoc` (descriptions, headers, answers without a body).
    responses: tuple[ResponseDoc, ...] = ()
    #: Request headers the handler reads, documented as header parameters.
    request_headers: tuple[HeaderDoc, ...] = ()
    #: Headers every success response of the route carries.
    response_headers: tuple[HeaderDoc, ...] = ()
    #: Leave the route out of ``/openapi.json``.
    hidden: bool = False
    #: The handler gets ``body=`` a :class:`~installsure.http.incoming.BodyStream` as the
    #: body arrives, instead of a parsed one (uploads); ``body`` (the type) then only
    #: documents the form in OpenAPI.
    streamed: bool = False
    operation_id: str = ""
    params: tuple[str, ...] = field(default=())

    @property
    def is_static(self) -> bool:
        return not self.params

    @property
    def werkzeug_path(self) -> str:
        """The path in werkzeug/Klein rule syntax."""

        def convert(m: re.Match[str]) -> str:
            name, kind = m.group(1), m.group(2)
            return f"<{kind}:{name}>" if kind else f"<{name}>"

        return _PARAM.sub(convert, self.path)

    @property
    def openapi_path(self) -> str:
        return _PARAM.sub(lambda m: "{" + m.group(1) + "}", self.path)


class Router:
    """A list of route declarations; routers of several API modules can be merged."""

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self.routes: list[Route] = list(routes)

    def add(
        self,
        method: str,
        path: str,
        handler: Handler,
        *,
        body: type[Any] | None = None,
        query: type[Any] | None = None,
        response: Any = None,
        status: int = 200,
        summary: str = "",
        description: str = "",
        tags: Sequence[str] = (),
        auth: str | None = None,
        rate_limit: str | None = "default",
        envelope: bool = True,
        max_body: int | None = None,
        forbid_extra: bool = False,
        content_types: Sequence[str] = ("application/json",),
        errors: Iterable[int | ResponseDoc] = (),
        hidden: bool = False,
        streamed: bool = False,
        operation_id: str = "",
        media_type: str = "application/json",
        responses: Mapping[int, Any] | Iterable[ResponseDoc | tuple[int, Any]] = (),
        request_headers: Sequence[HeaderDoc] = (),
        response_headers: Sequence[HeaderDoc] = (),
    ) -> Route:
        method = method.upper()
        if method not in _METHODS:
            raise ValueError(f"route {path!r}: unknown HTTP method {method!r}")
        if not path.startswith("/"):
            raise ValueError(f"route {path!r}: the path must start with '/'")
        reserved = {"ctx", "body", "query"} & {m.group(1) for m in _PARAM.finditer(path)}
        if reserved:
            raise ValueError(
                f"route {path!r}: path parameters may not be named {', '.join(sorted(reserved))}"
            )
        for existing in self.routes:
            if existing.method == method and existing.path == path:
                raise ValueError(f"route {method} {path} is declared twice")
        error_docs = _response_docs(f"route {method} {path} errors", errors)
        for doc in error_docs:
            if doc.status < 400 or doc.body is not None or not doc.has_body:
                raise ValueError(
                    f"route {method} {path}: errors are answers with the error envelope at "
                    f"400 and up; declare status {doc.status} in responses= instead")
        route = Route(
            method=method,
            path=path,
            handler=handler,
            body=body,
            query=query,
            response=response,
            status=status,
            summary=summary,
            description=description or (handler.__doc__ or "").strip(),
            tags=tuple(tags),
            auth=auth,
            rate_limit=rate_limit,
            envelope=envelope,
            max_body=max_body,
            forbid_extra=forbid_extra,
            content_types=tuple(content_types),
            errors=error_docs,
            hidden=hidden,
            streamed=streamed,
            operation_id=operation_id or getattr(handler, "__name__", "") or path,
            media_type=media_type,
            responses=_response_docs(
                f"route {method} {path} responses",
                responses.items() if isinstance(responses, Mapping) else responses),
            params=tuple(m.group(1) for m in _PARAM.finditer(path)),
            request_headers=tuple(request_headers),
            response_headers=tuple(response_headers),
        )
        self.routes.append(route)
        return route

    def route(self, method: str, path: str, **options: Any) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add`."""

        def decorate(handler: Handler) -> Handler:
            self.add(method, path, handler, **options)
            return handler

        return decorate

    def include(self, other: Router) -> None:
        for route in other.routes:
            self.add(
                route.method,
                route.path,
                route.handler,
                body=route.body,
                query=route.query,
                response=route.response,
                status=route.status,
                summary=route.summary,
                description=route.description,
                tags=route.tags,
                auth=route.auth,
                rate_limit=route.rate_limit,
                envelope=route.envelope,
                max_body=route.max_body,
                forbid_extra=route.forbid_extra,
                content_types=route.content_types,
                errors=route.errors,
                hidden=route.hidden,
                streamed=route.streamed,
                operation_id=route.operation_id,
                media_type=route.media_type,
                responses=route.responses,
                request_headers=route.request_headers,
                response_headers=route.response_headers,
            )


def method_not_allowed(allowed: Iterable[str]) -> ApiError:
    methods = sorted(set(allowed) | ({"HEAD"} if "GET" in allowed else set()) | {"OPTIONS"})
    text = ", ".join(methods)
    return ApiError(
        "METHOD_NOT_ALLOWED",
        f"This method is not allowed here; use one of {text}.",
        headers=((b"Allow", text.encode("ascii")),),
    )


def group_by_path(routes: Iterable[Route]) -> Mapping[str, dict[str, Route]]:
    grouped: dict[str, dict[str, Route]] = {}
    for r in routes:
        grouped.setdefault(r.path, {})[r.method] = r
    return grouped
