"""File names as clients send them, made safe to keep, show and send back.

The stored object's key is generated (``installsure.storage``), so a name is never
used as a path; it is still cleaned, because it is shown to other users and sent in
``Content-Disposition``: the last path segment only (``../../etc/passwd`` is
``passwd``), Unicode NFC, no control characters (NUL, line breaks, bidi overrides), no
leading dots or spaces, and at most 255 characters with the extension kept.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

MAX_NAME_LENGTH = 255
# Characters that are invisible, reorder text or end lines: shown names must not
# disguise themselves (e.g. "photo\u202egnp.exe" displayed as "photoexe.png").
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def clean_filename(raw: str) -> str:
    """The name to keep and show for a client's ``raw`` file name ("" if nothing is left)."""
    name = unicodedata.normalize("NFC", raw)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(
        " " if unicodedata.category(ch) in ("Zs",) and ch != " " else ch
        for ch in name
        if unicodedata.category(ch) not in _HIDDEN_CATEGORIES
    )
    name = " ".join(name.split())  # runs of spaces, and spaces at either end
    name = name.lstrip(". ")
    if len(name) > MAX_NAME_LENGTH:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            name = stem[: MAX_NAME_LENGTH - len(extension) - 1].rstrip(" .") + "." + extension
        else:
            name = name[:MAX_NAME_LENGTH]
    return name


def _ascii_fallback(name: str, extension: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    text = "".join(
        ch if (" " <= ch <= "~" and ch not in '"\\%;') else ("" if ord(ch) > 127 else "_")
        for ch in decomposed
        if not unicodedata.combining(ch)
    ).strip()
    stem = text.rpartition(".")[0] if "." in text else text
    if not stem.strip("_ ."):
        return f"download.{extension}" if extension else "download"
    return text


def content_disposition(name: str, extension: str, disposition: str = "attachment") -> str:
    """``attachment; filename="<ASCII>"; filename*=UTF-8''<name>`` (RFC 6266 / 8187):
    clients that read ``filename*`` get the name as it was, older ones an ASCII one."""
    fallback = _ascii_fallback(name, extension)
    encoded = quote(name, safe="!#$&+-.^_`|~")
    if fallback == name:
        return f'{disposition}; filename="{fallback}"'
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
