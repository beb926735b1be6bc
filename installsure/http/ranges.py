"""Conditional and partial GETs (RFC 9110 sections 13 and 14), for downloads.

* ``Range: bytes=...`` with one range is answered 206 with that range; a range that
  starts past the end (or asks for the last 0 bytes, or any range of an empty file) is
  unsatisfiable, 416 with ``Content-Range: bytes */<size>``. Several ranges, another
  unit or a malformed header are ignored (the whole file, 200), as RFC 9110 allows.
* ``If-Range`` with the current ETag keeps the range; anything else (another ETag, a
  date: no Last-Modified is served) sends the whole file.
* ``If-None-Match`` with the current ETag (or ``*``) is answered 304; weak comparison.
"""

from __future__ import annotations

from attrs import frozen


@frozen
class ByteRange:
    """Bytes ``start`` to ``end`` of a representation, both inclusive."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> bytes:
        return b"bytes %d-%d/%d" % (self.start, self.end, size)


#: The answer to a Range header no byte of the representation can satisfy.
UNSATISFIABLE = "unsatisfiable"


def parse_range(header: bytes | None, size: int) -> ByteRange | str | None:
    """The single range ``header`` asks of ``size`` bytes; None to send them all;
    :data:`UNSATISFIABLE` for a 416."""
    if header is None:
        return None
    unit, equals, spec = header.strip().partition(b"=")
    if not equals or unit.strip().lower() != b"bytes" or b"," in spec:
        return None
    first, dash, last = spec.strip().partition(b"-")
    first, last = first.strip(), last.strip()
    if not dash or (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # not a valid range-spec: ignored
    if start >= size:
        return UNSATISFIABLE
    return ByteRange(start, min(end, size - 1))


def _tags(header: bytes) -> list[bytes]:
    return [tag.strip() for tag in header.split(b",") if tag.strip()]


def _opaque(tag: bytes) -> bytes:
    return tag[2:] if tag.startswith(b"W/") else tag


def none_match(header: bytes | None, etag: bytes) -> bool:
    """Whether ``If-None-Match: header`` matches ``etag`` (so the answer is 304)."""
    if header is None:
        return False
    tags = _tags(header)
    return b"*" in tags or _opaque(etag) in {_opaque(tag) for tag in tags}


def range_still_valid(if_range: bytes | None, etag: bytes) -> bool:
    """Whether ``If-Range: if_range`` lets the Range apply (strong comparison)."""
    if if_range is None:
        return True
    tag = if_range.strip()
    return not tag.startswith(b"W/") and tag == etag
