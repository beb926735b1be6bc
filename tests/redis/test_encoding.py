"""Command encoding (in memory): the RESP bytes our protocol writes."""

from __future__ import annotations

import enum

import pytest
import txredisapi

from installsure.redis._protocol import _Protocol


class Color(str, enum.Enum):  # noqa: UP042 - str() is "Color.RED" here, not the value
    RED = "red"


def test_same_bytes_as_txredisapi_for_plain_values() -> None:
    """For str, bytes and int our faster encoder writes exactly what txredisapi would."""
    args = ("EVALSHA", "é" * 3, b"\x00\xffraw", 0, -12, 10**20, "", "x y\r\n")
    assert _Protocol()._build_command(*args) == txredisapi.RedisProtocol()._build_command(*args)


def test_floats_enums_and_bytearrays() -> None:
    """Floats keep full precision, str enums send their value, bytearrays their bytes."""
    command = _Protocol()._build_command("SET", 1e-12, Color.RED, bytearray(b"ab"))
    assert command == b"*4\r\n$3\r\nSET\r\n$5\r\n1e-12\r\n$3\r\nred\r\n$2\r\nab\r\n"


@pytest.mark.parametrize(
    ("value", "error", "fragment"),
    [
        (None, TypeError, "not NoneType"),
        (True, TypeError, "cannot be bool"),
        ({"a": 1}, TypeError, "not dict"),
        ("\udc80", ValueError, "not valid Unicode"),
        (float("nan"), ValueError, "NaN"),
    ],
)
def test_values_that_are_refused(value: object, error: type[Exception], fragment: str) -> None:
    """Values Redis has no faithful form for are refused, naming the problem."""
    with pytest.raises(error, match=fragment):
        _Protocol()._build_command("SET", "k", value)
