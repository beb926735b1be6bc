"""OpenAPI 3.1 document generated from the route declarations.

attrs classes become ``components/schemas`` (camelCase properties, required = fields
without defaults, the attrs validators as JSON Schema keywords via
:mod:`~installsure.http.constraints`); success responses are shown inside the envelope
of API.md with their real media type, and every error status a route can answer with
refers to the error envelope. What the validator refuses, the document says: a test runs
schemathesis against the served document (tests/http/test_schemathesis.py).
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import types
import typing
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union, get_args, get_origin

import attrs

from installsure.http import constraints
from installsure.http.errors import STATUS_OF_CODE
from installsure.http.routing import BinaryFile, HeaderDoc, Paged, ResponseDoc, Route
from installsure.http.validation import camel
from installsure.http.wiretypes import INT_MAX, INT_MIN

_PRIMITIVES: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer", "format": "int64", "minimum": INT_MIN, "maximum": INT_MAX},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    bytes: {"type": "string", "contentEncoding": "base64"},
    BinaryFile: {"type": "string", "format": "binary"},
    dt.datetime: {"type": "string", "format": "date-time"},
    dt.date: {"type": "string", "format": "date"},
    uuid.UUID: {"type": "string", "format": "uuid"},
    type(None): {"type": "null"},
    Any: {},
    object: {},
}

_CONVERTER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):([a-z]+)\}")
# Path parameters match werkzeug's converters: one non-empty segment unless typed.
_PATH_PARAMETER: dict[str | None, dict[str, Any]] = {
    None: {"type": "string", "pattern": "^[^/]+$"},
    "string": {"type": "string", "pattern": "^[^/]+$"},
    "int": {"type": "integer", "minimum": 0, "maximum": INT_MAX},
    "uuid": {"type": "string", "format": "uuid"},
    "path": {"type": "string", "minLength": 1},
}

_RATE_HEADERS = {
    "RateLimit-Limit": "Requests allowed in the current window",
    "RateLimit-Remaining": "Requests left in the current window",
    "RateLimit-Reset": "Seconds until the window starts again",
}

_ERROR_TEXT = {
    400: "Bad request or validation error (`details` lists every bad field)",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    412: "Precondition failed (`If-Match` names an older version)",
    413: "Payload too large",
    415: "Unsupported media type",
    416: "Range not satisfiable (see `Content-Range`)",
    429: "Rate limited (see `Retry-After`)",
    500: "Internal error",
    503: "Unavailable",
}


class SchemaBuilder:
    """Collects component schemas while translating types."""

    def __init__(self) -> None:
        self.components: dict[str, dict[str, Any]] = {}
        self._names: dict[tuple[type[Any], bool], str] = {}

    def ref(self, cls: type[Any], closed: bool = False) -> dict[str, Any]:
        """A reference to ``cls``'s schema; ``closed``: unknown properties refused (the
        body of a ``forbid_extra`` route), a component of its own."""
        name = self._names.get((cls, closed))
        if name is None:
            base = cls.__name__ + ("Strict" if closed else "")
            name, n = base, 2
            taken = set(self._names.values())
            while name in taken:
                name = f"{base}{n}"
                n += 1
            self._names[cls, closed] = name
            self.components[name] = {}  # placeholder for recursive types
            self.components[name] = self._object(cls, closed)
        return {"$ref": f"#/components/schemas/{name}"}

    def field_schema(self, a: Any, hint: Any, closed: bool = False) -> dict[str, Any]:
        """The schema of one attrs field: its type plus what its validators demand."""
        schema = self.schema(hint, closed)
        return constraints.merge(schema, constraints.schema_keywords(a.validator, schema))

    def _object(self, cls: type[Any], closed: bool) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for a in attrs.fields(cls):
            wire = camel(a.name)
            properties[wire] = self.field_schema(a, hints.get(a.name, Any), closed)
            if a.default is attrs.NOTHING:
                required.append(wire)
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        if closed:
            schema["additionalProperties"] = False
        doc = (cls.__doc__ or "").strip()
        if doc and not doc.startswith(cls.__name__ + "("):
            schema["description"] = doc
        return schema

    def schema(self, t: Any, closed: bool = False) -> dict[str, Any]:
        if t in _PRIMITIVES:
            return dict(_PRIMITIVES[t])
        if isinstance(t, type) and attrs.has(t):
            return self.ref(t, closed)
        if isinstance(t, type) and issubclass(t, enum.Enum):
            return {"enum": [m.value for m in t]}
        origin = get_origin(t)
        args = get_args(t)
        if origin is Literal:
            return {"enum": list(args)}
        if origin in (Union, types.UnionType):
            return {"anyOf": [self.schema(a, closed) for a in args]}
        if origin in (list, set, frozenset, Sequence, typing.Sequence):
            return {"type": "array", "items": self.schema(args[0], closed) if args else {}}
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return {"type": "array", "items": self.schema(args[0], closed)}
            return {
                "type": "array",
                "prefixItems": [self.schema(a, closed) for a in args],
                "minItems": len(args),
                "maxItems": len(args),
            }
        if origin in (dict, Mapping, typing.Mapping):
            return {
                "type": "object",
                "additionalProperties": self.schema(args[1], closed) if len(args) == 2 else {},
            }
        if t in (list, tuple):
            return {"type": "array"}
        if t is dict:
            return {"type": "object"}
        return {}


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["success", "error", "code", "requestId"],
        "properties": {
            "success": {"const": False},
            "error": {"type": "string", "description": "A sentence for humans."},
            "code": {"enum": sorted(STATUS_OF_CODE)},
            "requestId": {"type": "string"},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "message"],
                    "properties": {
                        "field": {"type": "string"},
                        "message": {"type": "string"},
                    },
                },
            },
        },
    }


def _response_schema(
    builder: SchemaBuilder, route: Route, response: Any, status: int
) -> dict[str, Any] | None:
    if status == 204:
        return None
    if not route.media_type.startswith("application/json"):
        return {"type": "string"}
    paged = isinstance(response, type) and issubclass(response, Paged)
    if get_origin(response) is Paged or paged:
        args = get_args(response)
        data = {"type": "array", "items": builder.schema(args[0]) if args else {}}
        return {
            "type": "object",
            "required": ["success", "data", "meta"],
            "properties": {
                "success": {"const": True},
                "data": data,
                "meta": {"$ref": "#/components/schemas/PageMeta"},
            },
        }
    data = builder.schema(response) if response is not None else {}
    if not route.envelope:
        return data
    return {
        "type": "object",
        "required": ["success", "data"],
        "properties": {"success": {"const": True}, "data": data},
    }


def _query_parameters(builder: SchemaBuilder, cls: type[Any]) -> list[dict[str, Any]]:
    hints = typing.get_type_hints(cls)
    return [
        {
            "name": camel(a.name),
            "in": "query",
            "required": a.default is attrs.NOTHING,
            "schema": builder.field_schema(a, hints.get(a.name, Any)),
        }
        for a in attrs.fields(cls)
    ]


def _path_parameters(route: Route) -> list[dict[str, Any]]:
    converters = dict(_CONVERTER.findall(route.path))
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": dict(_PATH_PARAMETER.get(converters.get(name), _PATH_PARAMETER[None])),
        }
        for name in route.params
    ]


def _error_statuses(route: Route, rate_limited: bool) -> set[int]:
    """Every error status the HTTP layer itself may answer this route with."""
    statuses = {doc.status for doc in route.errors} | {500}
    if route.params:
        # 404 for a value no resource has; 400 for a path that is not valid UTF-8.
        statuses |= {400, 404}
    if route.body is not None or route.query is not None:
        statuses |= {400}
    if route.body is not None:
        statuses |= {413, 415}
    if route.auth is not None:
        statuses |= {401, 403}
    if rate_limited and (route.rate_limit is not None or route.auth is not None):
        # Failed authentications are limited per client address, too.
        statuses |= {429}
    return statuses


def _operation(builder: SchemaBuilder, route: Route, rate_limited: bool) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": f"{route.operation_id}_{route.method.lower()}",
        "responses": {},
    }
    if route.summary:
        op["summary"] = route.summary
    if route.description:
        op["description"] = route.description
    if route.tags:
        op["tags"] = list(route.tags)
    params = _path_parameters(route)
    if route.query is not None:
        params.extend(_query_parameters(builder, route.query))
    params.extend({"name": name, "in": "header", **header}
                  for name, header in _headers(route.request_headers).items())
    if params:
        op["parameters"] = params
    if route.body is not None:
        body = builder.schema(route.body, closed=route.forbid_extra)
        op["requestBody"] = {
            "required": True,
            "content": {ct: {"schema": body} for ct in route.content_types},
        }
    limited = rate_limited and route.rate_limit is not None
    own = {doc.status: doc for doc in route.responses}
    main = own.pop(route.status, ResponseDoc(route.status))
    for doc in (attrs.evolve(main, body=route.response), *own.values()):
        op["responses"][str(doc.status)] = _answer(builder, route, doc, limited)
    for doc in route.errors:
        if doc.description or doc.headers:
            op["responses"][str(doc.status)] = _error_answer(doc)
    if route.auth is not None:
        op["security"] = [{"bearerAuth": []}]
        op["x-auth"] = route.auth
    if limited:
        op["x-rate-limit"] = route.rate_limit
    for status in sorted(_error_statuses(route, rate_limited)):
        op["responses"].setdefault(str(status), {"$ref": f"#/components/responses/E{status}"})
    return op


def _headers(docs: Sequence[HeaderDoc]) -> dict[str, Any]:
    return {h.name: {"description": h.description, "required": h.required,
                     "schema": dict(h.schema)} for h in docs}


def _answer(builder: SchemaBuilder, route: Route, doc: ResponseDoc,
            limited: bool) -> dict[str, Any]:
    """A response of the route with a body of its own (or none)."""
    default = "Success" if doc.status < 400 else "Failure"
    answer: dict[str, Any] = {"description": doc.description or default}
    schema = _response_schema(builder, route, doc.body, doc.status) if doc.has_body else None
    if schema is not None:
        answer["content"] = {route.media_type: {"schema": schema}}
    headers = _rate_headers(required=False) if limited else {}
    if doc.status < 300:
        headers.update(_headers(route.response_headers))
    headers.update(_headers(doc.headers))
    if headers:
        answer["headers"] = headers
    return answer


def _error_answer(doc: ResponseDoc) -> dict[str, Any]:
    """An error-envelope answer with a description or headers of the route's own."""
    answer: dict[str, Any] = {
        "description": doc.description or _ERROR_TEXT.get(doc.status, "Failure"),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if doc.headers:
        answer["headers"] = _headers(doc.headers)
    return answer


def _rate_headers(*, required: bool) -> dict[str, Any]:
    return {
        name: {"description": text, "required": required,
               "schema": {"type": "integer", "minimum": 0}}
        for name, text in _RATE_HEADERS.items()
    }


def _error_responses() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, text in _ERROR_TEXT.items():
        response: dict[str, Any] = {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        if status == 429:
            response["headers"] = {
                **_rate_headers(required=True),
                "Retry-After": {"description": "Seconds to wait before trying again",
                                "required": True,
                                "schema": {"type": "integer", "minimum": 1}},
            }
        elif status == 405:
            response["headers"] = {
                "Allow": {"description": "The methods this path answers", "required": True,
                          "schema": {"type": "string"}},
            }
        out[f"E{status}"] = response
    return out


def build_document(
    routes: Sequence[Route],
    *,
    title: str = "InstallSure API",
    version: str = "0",
    rate_limited: bool = True,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` (hidden routes left out)."""
    builder = SchemaBuilder()
    paths: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for route in routes:
        if route.hidden:
            continue
        operation = _operation(builder, route, rate_limited)
        # operationId must be unique; handlers of different modules may share a name.
        base, n = operation["operationId"], 2
        while operation["operationId"] in used:
            operation["operationId"] = f"{base}_{n}"
            n += 1
        used.add(operation["operationId"])
        paths.setdefault(route.openapi_path, {})[route.method.lower()] = operation
    components: dict[str, Any] = {
        "schemas": {
            **builder.components,
            "Error": _error_schema(),
            "PageMeta": {
                "type": "object",
                "required": ["page", "perPage", "total"],
                "properties": {
                    "page": {"type": "integer"},
                    "perPage": {"type": "integer"},
                    "total": {"type": "integer"},
                },
            },
        },
        "responses": _error_responses(),
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": components,
    }
