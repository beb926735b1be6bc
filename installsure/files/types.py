"""Which files are accepted: by extension, checked against the file's leading bytes.

The client's Content-Type is not believed (browsers guess it from the name too): the
extension decides the kind, and where the format has a signature, the first bytes
must carry it, so a ``.png`` that is not a PNG is refused. The stored MIME type comes
from this table, never from the client. Formats without a signature (DXF, OBJ, glTF,
CSV, text) are taken by their extension.
"""

from __future__ import annotations

from collections.abc import Callable

from attrs import frozen

#: Bytes of a file needed to judge its signature (PDF allows junk before ``%PDF-``).
SNIFF_SIZE = 1024

_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or an empty archive
_TIFF = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF


def _starts(*prefixes: bytes) -> Callable[[bytes], bool]:
    return lambda head: head.startswith(prefixes)


def _webp(head: bytes) -> bool:
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def _pdf(head: bytes) -> bool:
    # ISO 32000 wants %PDF- first; readers accept it within the first 1024 bytes.
    return b"%PDF-" in head[:SNIFF_SIZE]


def _step(head: bytes) -> bool:
    # ISO 10303-21 files open with "ISO-10303-21;" (a UTF-8 BOM or blank lines seen
    # in exports are tolerated).
    return head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n").startswith(b"ISO-10303-21")


def _dwg(head: bytes) -> bool:
    # "AC10" and two digits: AC1012 (R13) to AC1032 (2018+).
    return len(head) >= 6 and head.startswith(b"AC10") and head[4:6].isdigit()


@frozen
class FileKind:
    """One accepted extension."""

    extension: str
    mime_type: str
    #: Whether the first bytes are what this kind's files start with; None: no signature.
    signature: Callable[[bytes], bool] | None
    #: How many leading bytes the check needs before it can answer.
    needs: int = 16

    def matches(self, head: bytes) -> bool:
        return self.signature is None or self.signature(head)


_KINDS = (
    FileKind("ifc", "application/x-step", _step, 64),
    FileKind("step", "model/step", _step, 64),
    FileKind("stp", "model/step", _step, 64),
    FileKind("dwg", "image/vnd.dwg", _dwg),
    FileKind("dxf", "image/vnd.dxf", None),
    FileKind("rvt", "application/vnd.autodesk.revit", _starts(_OLE)),
    FileKind("obj", "model/obj", None),
    FileKind("gltf", "model/gltf+json", None),
    FileKind("glb", "model/gltf-binary", _starts(b"glTF")),
    FileKind("pdf", "application/pdf", _pdf, SNIFF_SIZE),
    FileKind("jpg", "image/jpeg", _starts(b"\xff\xd8\xff")),
    FileKind("jpeg", "image/jpeg", _starts(b"\xff\xd8\xff")),
    FileKind("png", "image/png", _starts(b"\x89PNG\r\n\x1a\n")),
    FileKind("webp", "image/webp", _webp),
    FileKind("tif", "image/tiff", _starts(*_TIFF)),
    FileKind("tiff", "image/tiff", _starts(*_TIFF)),
    FileKind("doc", "application/msword", _starts(_OLE)),
    FileKind("docx",
             "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
             _starts(*_ZIP)),
    FileKind("xls", "application/vnd.ms-excel", _starts(_OLE)),
    FileKind("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
             _starts(*_ZIP)),
    FileKind("csv", "text/csv", None),
    FileKind("txt", "text/plain", None),
)

#: Every accepted kind by its extension (lower case, no dot).
KINDS: dict[str, FileKind] = {kind.extension: kind for kind in _KINDS}
ACCEPTED_EXTENSIONS: tuple[str, ...] = tuple(KINDS)


def kind_of(filename: str) -> FileKind | None:
    """The kind a file name's extension says, or None when it is not accepted."""
    stem, dot, extension = filename.rpartition(".")
    if not dot or not stem:
        return None
    return KINDS.get(extension.lower())


def accepted_list() -> str:
    return " ".join(f".{extension}" for extension in ACCEPTED_EXTENSIONS)
