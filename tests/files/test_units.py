"""The pure parts of files: type signatures, names, Content-Disposition, ranges, and a
body replayed from what twisted.web buffered."""

from __future__ import annotations

import io
from urllib.parse import unquote

import pytest
import pytest_twisted
from twisted.internet import defer

from installsure.files.names import MAX_NAME_LENGTH, clean_filename, content_disposition
from installsure.files.types import ACCEPTED_EXTENSIONS, KINDS, kind_of
from installsure.http.incoming import from_content
from installsure.http.ranges import UNSATISFIABLE, ByteRange, none_match, parse_range


def test_every_accepted_extension_has_a_kind_and_names_decide_it() -> None:
    """The contract's 23 extensions are accepted, case-insensitively, by the last
    extension of the name; a name without an extension or a stem is not."""
    assert set(ACCEPTED_EXTENSIONS) == {
        "ifc", "dwg", "dxf", "rvt", "step", "stp", "obj", "gltf", "glb", "pdf", "jpg",
        "jpeg", "png", "webp", "tif", "tiff", "doc", "docx", "xls", "xlsx", "csv", "txt"}
    kind = kind_of("Plan.Final.PDF")
    assert kind is not None
    assert kind.extension == "pdf"
    assert kind_of("archive.tar.gz") is None
    assert kind_of(".png") is None
    assert kind_of("png") is None


@pytest.mark.parametrize(("extension", "good", "bad"), [
    ("png", b"\x89PNG\r\n\x1a\n....", b"\x89PNG\r\n"),
    ("jpg", b"\xff\xd8\xff\xe0", b"\xff\xd8\x00"),
    ("pdf", b"junk\n%PDF-1.4", b"PDF-1.4"),
    ("tif", b"MM\x00*", b"MM\x00\x00"),
    ("webp", b"RIFF\x00\x00\x00\x00WEBP", b"RIFF\x00\x00\x00\x00WAVE"),
    ("glb", b"glTF", b"gltf"),
    ("dwg", b"AC1015", b"AC2.10"),
    ("ifc", b"\r\n ISO-10303-21;", b"ISO-10303-2"),
    ("doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"PK\x03\x04"),
    ("xlsx", b"PK\x05\x06", b"\xd0\xcf\x11\xe0"),
])
def test_signatures_tell_the_format_from_a_pretender(extension: str, good: bytes,
                                                     bad: bytes) -> None:
    """Each signature accepts its format's leading bytes and refuses near misses."""
    assert KINDS[extension].matches(good)
    assert not KINDS[extension].matches(bad)


def test_formats_without_a_signature_take_anything() -> None:
    """DXF, OBJ, glTF, CSV and text have no signature: any leading bytes pass."""
    for extension in ("dxf", "obj", "gltf", "csv", "txt"):
        assert KINDS[extension].signature is None
        assert KINDS[extension].matches(b"\x00anything")


@pytest.mark.parametrize(("raw", "clean"), [
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\me\\plan.dwg", "plan.dwg"),
    ("  ..  spaced   out .pdf ", "spaced out .pdf"),
    ("e\u0301te\u0301.png", "\u00e9t\u00e9.png"),  # NFC
    ("invoice\u202egnp.exe", "invoicegnp.exe"),  # a right-to-left override
    ("zero\u200bwidth.txt", "zerowidth.txt"),
    ("nul\x00byte.png", "nulbyte.png"),
    ("line\nbreak.png", "linebreak.png"),
    ("/", ""),
])
def test_names_are_cleaned_for_display(raw: str, clean: str) -> None:
    """Only the last path segment stays, in NFC, without control or invisible
    characters, runs of spaces or leading dots."""
    assert clean_filename(raw) == clean


def test_long_names_keep_their_extension() -> None:
    """A name over 255 characters is cut in its stem; the extension survives."""
    cleaned = clean_filename("x" * 400 + ".step")
    assert len(cleaned) == MAX_NAME_LENGTH
    assert cleaned.endswith("x.step")


def test_content_disposition_has_an_ascii_fallback_and_the_real_name() -> None:
    """ASCII names go as filename="..."; others also as filename*=UTF-8''...
    (percent-encoded, decoding back to the name), with an ASCII stand-in that has no
    quote, backslash, percent or semicolon."""
    assert content_disposition("plan.pdf", "pdf") == 'attachment; filename="plan.pdf"'
    header = content_disposition('Grundriß "EG"; 50%.pdf', "pdf")
    fallback = header.split('filename="', 1)[1].split('"', 1)[0]
    assert all(ch not in fallback for ch in '"\\%;')
    assert fallback.isascii()
    assert unquote(header.split("filename*=UTF-8''", 1)[1]) == 'Grundriß "EG"; 50%.pdf'
    header = content_disposition("図面.dwg", "dwg")
    assert 'filename="download.dwg"' in header


@pytest.mark.parametrize(("header", "size", "expected"), [
    (None, 10, None),
    (b"bytes=0-4", 10, ByteRange(0, 4)),
    (b"bytes = 2 - ", 10, ByteRange(2, 9)),
    (b"BYTES=-3", 10, ByteRange(7, 9)),
    (b"bytes=8-100", 10, ByteRange(8, 9)),
    (b"bytes=10-", 10, UNSATISFIABLE),
    (b"bytes=-0", 10, UNSATISFIABLE),
    (b"bytes=-5", 0, UNSATISFIABLE),
    (b"bytes=5-2", 10, None),
    (b"bytes=0-1,3-4", 10, None),
    (b"lines=1-2", 10, None),
    (b"bytes=-", 10, None),
    (b"bytes=x-1", 10, None),
])
def test_parse_range(header: bytes | None, size: int, expected: object) -> None:
    """Single ranges (start-end, start-, -suffix) are read and cut to the size; ranges
    past the end are unsatisfiable; anything else is ignored."""
    assert parse_range(header, size) == expected


def test_none_match_compares_weakly() -> None:
    """If-None-Match matches the ETag as such, weak, among others, or as *."""
    etag = b'"abc"'
    assert none_match(b'"abc"', etag)
    assert none_match(b'W/"abc"', etag)
    assert none_match(b'"x", "abc"', etag)
    assert none_match(b"*", etag)
    assert not none_match(b'"abcd"', etag)
    assert not none_match(None, etag)


class Collecting:
    def __init__(self) -> None:
        self.data = b""
        self.ended: defer.Deferred[None] = defer.Deferred()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def body_ended(self) -> None:
        self.ended.callback(None)

    def body_lost(self, reason: str) -> None:
        self.ended.errback(RuntimeError(reason))


@pytest_twisted.ensureDeferred
async def test_a_buffered_body_is_replayed_through_the_same_interface() -> None:
    """A body twisted.web read whole (a request that could not be streamed) reaches
    the consumer chunk by chunk, read on a thread, then ends."""
    content = io.BytesIO(b"0123456789" * 1000)
    stream = from_content(content, chunk=999)
    consumer = Collecting()
    stream.attach(consumer)
    await consumer.ended
    assert consumer.data == b"0123456789" * 1000
