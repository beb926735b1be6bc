"""The auth and users routes in the served OpenAPI document: bodies, responses, auth."""

from __future__ import annotations

import pytest_twisted

from tests.auth.conftest import MakeStack

PUBLIC = {("post", "/api/auth/register"), ("post", "/api/auth/login"),
          ("post", "/api/auth/refresh")}
ADMIN = {("get", "/api/users"), ("post", "/api/users"), ("get", "/api/users/{id}"),
         ("patch", "/api/users/{id}")}
USER = {("post", "/api/auth/logout"), ("get", "/api/auth/me"), ("get", "/api/auth/verify"),
        ("post", "/api/auth/change-password")}


@pytest_twisted.ensureDeferred
async def test_every_account_route_is_documented_with_schemas_and_auth(
    make_stack: MakeStack,
) -> None:
    """Each auth/users operation is in /openapi.json with its success response schema;
    public ones have no security, the others bearer auth with their requirement
    (user or admin); bodies are documented, and the new-password fields state the
    configured minimum length (12 here)."""
    stack = await make_stack(password_min_length=12)
    document = (await stack.call("GET", "/openapi.json")).body
    paths = document["paths"]
    found = {(method, path) for path, ops in paths.items() for method in ops
             if path.startswith(("/api/auth", "/api/users"))}
    assert found == PUBLIC | ADMIN | USER
    schemas = document["components"]["schemas"]
    for method, path in found:
        operation = paths[path][method]
        success = next(code for code in operation["responses"] if code.startswith("2"))
        assert "schema" in operation["responses"][success]["content"]["application/json"]
        if (method, path) in PUBLIC:
            assert "security" not in operation, path
        else:
            assert operation["security"] == [{"bearerAuth": []}], path
            assert operation["x-auth"] == ("admin" if (method, path) in ADMIN else "user")
            assert {"401", "403"} <= set(operation["responses"]), path
        if method in ("post", "patch") and path != "/api/auth/logout":
            assert "requestBody" in operation, path
    assert paths["/api/auth/register"]["post"]["responses"]["201"]
    # Closed schemas (unknown fields refused, so a role cannot be slipped in).
    assert schemas["RegisterRequestStrict"]["additionalProperties"] is False
    assert schemas["RegisterRequestStrict"]["properties"]["password"]["minLength"] == 12
    assert schemas["ChangePasswordRequestStrict"]["properties"]["newPassword"]["minLength"] == 12
    assert set(schemas["UserView"]["properties"]) == {
        "id", "email", "name", "role", "isActive", "createdAt", "lastLoginAt"}
    assert schemas["UserView"]["properties"]["role"]["enum"] == [
        "admin", "manager", "member", "viewer"]
