"""Recognise a whole HTTP/1.1 request head in one pass, for the common case only.

twisted.web's ``HTTPChannel`` reads a request line by line through ``LineReceiver`` and
a per-line state machine, about fifty Python-level steps per header line. Nearly every
request an API sees is simpler than what that machinery is for: it arrives in one
read, has no body, and uses none of HTTP/1.1's rarer features.

:func:`parse_simple_head` accepts exactly that case, with a few regular expressions
over the whole head (C speed, however many headers), and answers ``None`` for anything
else, so the general parser keeps every decision about unusual, malformed and
body-carrying requests (including their 400s). It may only agree with twisted.web's
parser, never disagree: tests hold the two to the same result.
"""

from __future__ import annotations

import re
from operator import itemgetter
from typing import TypeAlias

from twisted.web.http_headers import Headers

#: RFC 9110 ``tchar``: what a method and a header name are made of.
_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
#: Method, target as twisted.web accepts it (no controls, no space, nothing above 0xB0),
#: and the two versions twisted.web speaks.
_REQUEST_LINE = re.compile(rb"([%s]+) ([\x21-\xb0]+) (HTTP/1\.[01])\r\n" % _TCHAR)
#: One header line; the value without the spaces and tabs before it (and, see below,
#: after it), as twisted.web strips them. Anchored at line starts, so a line that does
#: not match is not skipped over but counted missing. (A lazy ``(.*?)[ \t]*`` would
#: strip both ends at once but costs the engine a retry at every byte of every value.)
_HEADER_LINE = re.compile(rb"^([%s]+):[ \t]*([^\r\n]*)\r\n" % _TCHAR, re.MULTILINE)
_TRAILING_BLANKS = (b" \r\n", b"\t\r\n")
#: Headers that give a request a body or ask for an interim response: the general
#: parser owns those requests.
_GENERAL_ONLY = frozenset({b"content-length", b"transfer-encoding", b"expect"})
_name_of = itemgetter(0)
_CRLF = b"\r\n"
_END = b"\r\n\r\n"
_CR_LF_NUL = b"\x00\r\n"

#: ``(method, target, version, [(name, value), ...])``: names as sent, values stripped.
SimpleHead: TypeAlias = tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]]


def parse_simple_head(data: bytes, *, max_size: int, max_headers: int) -> SimpleHead | None:
    """The head of the one body-less request that ``data`` holds exactly, else ``None``.

    ``None`` means "let the general parser decide": a partial head, several pipelined
    requests, a body, ``Expect``, folded header lines, stray CR/LF/NUL, anything that
    is not a token where one is due, a head over ``max_size`` bytes or with more than
    ``max_headers`` headers.
    """
    if len(data) > max_size or not data.endswith(_END):
        return None
    request_line = _REQUEST_LINE.match(data)
    if request_line is None:
        return None
    # The header lines, each with its CRLF (empty when there are none).
    block = data[request_line.end() : -2]
    line_count = block.count(_CRLF)
    # No CR, LF or NUL but the line ends: each CR and LF removed pairs up with the other.
    if len(block.translate(None, _CR_LF_NUL)) != len(block) - 2 * line_count:
        return None
    headers: list[tuple[bytes, bytes]] = _HEADER_LINE.findall(block)
    if len(headers) != line_count or line_count > max_headers:
        return None
    if line_count:
        if not _GENERAL_ONLY.isdisjoint(map(bytes.lower, map(_name_of, headers))):
            return None
        if any(map(block.__contains__, _TRAILING_BLANKS)):
            headers = [(name, value.rstrip(b" \t")) for name, value in headers]
    method, target, version = request_line.groups()
    return method, target, version, headers


_canonical_names: dict[bytes, bytes] = {}
#: Enough for every header name real clients send; random names from a hostile client
#: are canonicalised without being remembered.
_MAX_REMEMBERED_NAMES = 1000


def canonical_name(name: bytes) -> bytes:
    """The key twisted.web's ``Headers`` stores the header ``name`` under."""
    canonical = _canonical_names.get(name)
    if canonical is None:
        probe = Headers()
        probe.addRawHeader(name, b"")
        canonical = next(iter(probe.getAllRawHeaders()))[0]
        if len(_canonical_names) < _MAX_REMEMBERED_NAMES:
            _canonical_names[name] = canonical
    return canonical
