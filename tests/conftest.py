"""Fixtures shared by the whole suite; each lives in ``tests/fixtures``."""

pytest_plugins = [
    "tests.fixtures.redis",
    "tests.fixtures.postgres",
    "tests.fixtures.http_wire",
]
