"""Tests of installsure.http: middleware, envelope, validation, limits, OpenAPI."""
