"""The PostgreSQL test fixture itself: each test gets an empty, private place to write."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from installsure.db import parse_database_url


@pytest.mark.postgres
def test_postgres_url_is_an_empty_private_schema(postgres_url: str) -> None:
    """Unqualified tables land in the test's own schema, which starts empty."""
    engine = create_engine(parse_database_url(postgres_url).url)
    try:
        with engine.begin() as connection:
            schema = connection.execute(text("SELECT current_schema()")).scalar_one()
            assert schema.startswith("is_test_")
            assert inspect(connection).get_table_names() == []
            connection.execute(text("CREATE TABLE scratch (id integer)"))
            where = connection.execute(
                text("SELECT table_schema FROM information_schema.tables "
                     "WHERE table_name = 'scratch'")
            ).scalars().all()
            assert where == [schema]
    finally:
        engine.dispose()
