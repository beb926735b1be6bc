"""Health, readiness and information routes: public, the same for everyone."""

from tests.authz.matrix import Entry, public

ENTRIES = [
    Entry("GET", path, public())
    for path in ("/livez", "/live", "/readyz", "/ready", "/api/health", "/health",
                 "/health/detailed", "/info")
]
