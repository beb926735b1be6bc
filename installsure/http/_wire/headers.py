"""The application's header reads and writes straight in twisted.web's ``Headers`` dict.

``Headers.getRawHeaders`` and ``setRawHeaders`` encode and check the name and every
value on each call: about ten calls per response for headers whose names and values
are our own constants, or were checked once at start. These helpers read and write
the dict ``Headers`` keeps (:func:`installsure._compat.raw_headers`) instead, and fall
back to the public methods for headers kept any other way.

Only for canonical names (as :func:`~installsure.http._wire.head.canonical_name` gives)
and values known to hold no CR, LF or NUL: anything from a handler goes through
``setRawHeaders``, which sanitises it.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.web.http_headers import Headers

from installsure._compat import raw_headers


def first_values(headers: Headers, *names: tuple[bytes, bytes]) -> list[bytes | None]:
    """The first value of each header in ``names``, given as (canonical name, name),
    or None where the header is absent."""
    stored = raw_headers(headers)
    found: list[bytes | None] = []
    for key, name in names:
        values = stored.get(key) if stored is not None else headers.getRawHeaders(name)
        found.append(values[0] if values else None)
    return found


def set_trusted(
    headers: Headers, items: Iterable[tuple[bytes, list[bytes]]], remove: bytes | None = None
) -> None:
    """Set each (canonical name, values) of ``items``, replacing what was there, after
    removing the header of canonical name ``remove``."""
    stored = raw_headers(headers)
    if stored is None:
        if remove is not None:
            headers.removeHeader(remove)
        for name, values in items:
            headers.setRawHeaders(name, values)
        return
    if remove is not None:
        stored.pop(remove, None)
    stored.update(items)


def is_sane(value: bytes) -> bool:
    """Whether a header value from elsewhere (a handler's) may skip Headers' checks:
    it has no CR, LF or NUL, so it cannot end its header line early."""
    return b"\r" not in value and b"\n" not in value and b"\x00" not in value
