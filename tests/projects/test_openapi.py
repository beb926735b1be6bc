"""The project routes as the OpenAPI document describes them."""

from __future__ import annotations

from typing import Any

from installsure.api.projects import projects_router
from installsure.auth.membership import MembershipSignals
from installsure.db import Database
from installsure.events import RecordingDomainEventPublisher
from installsure.http.openapi import build_document


def _document(tmp_path: Any) -> dict[str, Any]:
    database = Database(f"sqlite:///{tmp_path / 'doc.db'}", auto_migrate=True)
    router = projects_router(database, events=RecordingDomainEventPublisher(),
                             signals=MembershipSignals(None))
    return build_document(router.routes)


def test_every_project_route_is_documented_with_schemas_and_auth(tmp_path: Any) -> None:
    """Each operation needs a bearer token, says its success and error answers with
    schemas, and those with a body document it; the list is paged."""
    doc = _document(tmp_path)
    operations = [(path, method, op) for path, methods in doc["paths"].items()
                  for method, op in methods.items()]
    assert len(operations) == 11
    for path, method, op in operations:
        assert op["security"] == [{"bearerAuth": []}], (path, method)
        assert op["x-auth"] == "user"
        success = next(code for code in op["responses"] if code.startswith("2"))
        schema = op["responses"][success]["content"]["application/json"]["schema"]
        assert schema["properties"]["success"] == {"const": True}, (path, method)
        for code in ("401", "403", "500"):
            assert code in op["responses"], (path, method, code)
        if method in ("post", "put", "patch"):
            assert "requestBody" in op, (path, method)
    listing = doc["paths"]["/api/projects"]["get"]
    assert "meta" in listing["responses"]["200"]["content"]["application/json"]["schema"][
        "properties"]
    assert {p["name"] for p in listing["parameters"]} == {"page", "perPage", "status", "q",
                                                          "sort"}
    project = doc["components"]["schemas"]["Project"]
    assert set(project["properties"]) == {
        "id", "name", "description", "status", "progress", "budget", "startDate", "endDate",
        "contractor", "location", "createdBy", "createdAt", "updatedAt", "fileCount"}


def test_etag_and_if_match_are_documented(tmp_path: Any) -> None:
    """Reads and writes of one project send ETag; PUT, PATCH and DELETE take If-Match
    and list 412 among their answers; POST sends Location too."""
    paths = _document(tmp_path)["paths"]
    one = paths["/api/projects/{id}"]
    for method in ("get", "put", "patch"):
        assert one[method]["responses"]["200"]["headers"]["ETag"]["required"] is True
    assert set(paths["/api/projects"]["post"]["responses"]["201"]["headers"]) >= {
        "ETag", "Location"}
    for method in ("put", "patch", "delete"):
        header = next(p for p in one[method]["parameters"] if p["in"] == "header")
        assert (header["name"], header["required"]) == ("If-Match", False)
        assert "pattern" in header["schema"]
        assert "412" in one[method]["responses"]


def test_the_rules_of_the_fields_are_in_the_schema(tmp_path: Any) -> None:
    """Name length and visibility, the status enum, progress bounds, budget bounds and
    text limits are JSON Schema keywords of the create body."""
    body = _document(tmp_path)["components"]["schemas"]["ProjectFields"]
    props = body["properties"]
    assert body["required"] == ["name"]
    assert (props["name"]["minLength"], props["name"]["maxLength"]) == (1, 255)
    assert "pattern" in props["name"]
    assert (props["progress"]["minimum"], props["progress"]["maximum"]) == (0, 100)
    # Beside anyOf: a keyword of numbers (strings) applies to the number (string) branch.
    assert (props["budget"]["minimum"], props["budget"]["maximum"]) == (0, 999999999999.99)
    assert props["description"]["maxLength"] == 5000
    assert props["contractor"]["maxLength"] == props["location"]["maxLength"] == 255
    status = props["status"]
    assert set(status["enum"]) == {"planning", "active", "on_hold", "completed", "cancelled"}
