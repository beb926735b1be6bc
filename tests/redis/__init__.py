"""Tests of installsure.redis."""
