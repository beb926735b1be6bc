"""The HTTP layer's own routes: the OpenAPI document, its Swagger UI and metrics."""

from installsure.http.builtin import _ASSETS
from tests.authz.matrix import Entry, public

ENTRIES = [
    Entry("GET", "/openapi.json", public()),
    Entry("GET", "/docs", public()),
    Entry("GET", "/docs/init.js", public()),
    *(Entry("GET", f"/docs/{name}", public()) for name in _ASSETS),
    # Without http.metrics_token the metrics are public (the matrix site sets none).
    Entry("GET", "/metrics", public()),
]
