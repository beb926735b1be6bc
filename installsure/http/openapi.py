"""OpenAPI 3.1 document generated from the route declarations.

attrs classes become ``components/schemas`` (camelCase properties, required = fields
without defaults); every response is shown inside the envelope of API.md.
"""

from __future__ import annotations

import datetime as dt
import enum
import types
import typing
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union, get_args, get_origin

import attrs

from installsure.http.errors import STATUS_OF_CODE
from installsure.http.routing import Paged, Route
from installsure.http.validation import camel

_PRIMITIVES: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    bytes: {"type": "string", "contentEncoding": "base64"},
    dt.datetime: {"type": "string", "format": "date-time"},
    dt.date: {"type": "string", "format": "date"},
    uuid.UUID: {"type": "string", "format": "uuid"},
    type(None): {"type": "null"},
    Any: {},
    object: {},
}

_ERROR_TEXT = {
    400: "Bad request or validation error (`details` lists every bad field)",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    429: "Rate limited (see `Retry-After`)",
    500: "Internal error",
    503: "Unavailable",
}


class SchemaBuilder:
    """Collects component schemas while translating types."""

    def __init__(self) -> None:
        self.components: dict[str, dict[str, Any]] = {}
        self._names: dict[type[Any], str] = {}

    def ref(self, cls: type[Any]) -> dict[str, Any]:
        name = self._names.get(cls)
        if name is None:
            name = cls.__name__
            taken = set(self._names.values())
            n = 2
            while name in taken:
                name = f"{cls.__name__}{n}"
                n += 1
            self._names[cls] = name
            self.components[name] = {}  # placeholder for recursive types
            self.components[name] = self._object(cls)
        return {"$ref": f"#/components/schemas/{name}"}

    def _object(self, cls: type[Any]) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for a in attrs.fields(cls):
            wire = camel(a.name)
            properties[wire] = self.schema(hints.get(a.name, Any))
            if a.default is attrs.NOTHING:
                required.append(wire)
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        doc = (cls.__doc__ or "").strip()
        if doc and not doc.startswith(cls.__name__ + "("):
            schema["description"] = doc
        return schema

    def schema(self, t: Any) -> dict[str, Any]:
        if t in _PRIMITIVES:
            return dict(_PRIMITIVES[t])
        if isinstance(t, type) and attrs.has(t):
            return self.ref(t)
        if isinstance(t, type) and issubclass(t, enum.Enum):
            return {"enum": [m.value for m in t]}
        origin = get_origin(t)
        args = get_args(t)
        if origin is Literal:
            return {"enum": list(args)}
        if origin in (Union, types.UnionType):
            return {"anyOf": [self.schema(a) for a in args]}
        if origin in (list, set, frozenset, Sequence, typing.Sequence):
            return {"type": "array", "items": self.schema(args[0]) if args else {}}
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return {"type": "array", "items": self.schema(args[0])}
            return {"type": "array", "prefixItems": [self.schema(a) for a in args]}
        if origin in (dict, Mapping, typing.Mapping):
            return {
                "type": "object",
                "additionalProperties": self.schema(args[1]) if len(args) == 2 else {},
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


def _response_schema(builder: SchemaBuilder, route: Route) -> dict[str, Any] | None:
    if route.status == 204:
        return None
    response = route.response
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
    out = []
    for a in attrs.fields(cls):
        out.append(
            {
                "name": camel(a.name),
                "in": "query",
                "required": a.default is attrs.NOTHING,
                "schema": builder.schema(hints.get(a.name, Any)),
            }
        )
    return out


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
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in route.params
    ]
    if route.query is not None:
        params.extend(_query_parameters(builder, route.query))
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {ct: {"schema": builder.schema(route.body)} for ct in route.content_types},
        }
    ok = _response_schema(builder, route)
    success: dict[str, Any] = {"description": "Success"}
    if ok is not None:
        success["content"] = {"application/json": {"schema": ok}}
    op["responses"][str(route.status)] = success
    statuses = set(route.errors) | {500}
    if route.body is not None or route.query is not None:
        statuses |= {400}
    if route.body is not None:
        statuses |= {413, 415}
    if route.params:
        statuses |= {404}
    if route.auth is not None:
        statuses |= {401, 403}
        op["security"] = [{"bearerAuth": []}]
        op["x-auth"] = route.auth
    if rate_limited and route.rate_limit is not None:
        statuses |= {429}
        op["x-rate-limit"] = route.rate_limit
    for status in sorted(statuses):
        op["responses"][str(status)] = {"$ref": f"#/components/responses/E{status}"}
    return op


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
        "responses": {
            f"E{status}": {
                "description": text,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
            for status, text in _ERROR_TEXT.items()
        },
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": components,
    }
