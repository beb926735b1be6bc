"""The fast HTTP wire (``http.wire = "fast"``): every override of twisted.web internals.

Nothing else in InstallSure subclasses or reaches into twisted.web's HTTP machinery;
the stock wire (``http.wire = "stock"``) serves with twisted.web's own ``HTTPChannel``
and ``server.Request`` and is the fallback when a Twisted release breaks this package.
This package imports nothing of the application: what it needs (body limits, request
ids, the error envelope, the access log) comes from the site as
:class:`~installsure.http.refusal.WireHooks`.

What it overrides, and where:

* :mod:`.channel`, ``ApiChannel(twisted.web.http.HTTPChannel)``: ``dataReceived``
  (one-pass parsing of simple heads, see :mod:`.head`), ``requestDone`` (a short path
  for the usual case), ``setTimeout``/``resetTimeout`` (in :mod:`.idle`) and
  ``connectionLost`` (one idle DelayedCall per connection), ``checkPersistence`` (in
  :mod:`.draining`: no keep-alive while the server drains), ``getHost``/``getPeer``
  (asked once),
  ``writeHeaders``/``write``/``writeSequence``/``loseConnection`` (head and body in one
  ``send``), ``_respondToBadRequestAndDisconnect`` and ``lineLengthExceeded`` (the
  parser's refusals, answered in the envelope: 400, or 431 for a head over its limits),
  and adds ``refuse``, which answers a request the application never sees, and the
  deadlines of a request read over several reads (:mod:`installsure.http.deadlines`).
* :mod:`.request`, ``ApiRequest(twisted.web.server.Request)``: ``__init__`` (one step),
  ``gotLength``/``handleContentChunk`` (the body limit while reading),
  ``requestReceived``/``process`` (no form parsing outside POST, no ``Server`` header,
  the application resource called directly), ``write`` and ``respond`` (one-step
  responses).
* :mod:`.headers`: the application's reads and writes straight in ``Headers``' dict.

The private names these rely on are listed, with the reason, in
:data:`installsure._compat.PRIVATE_NAMES` (tests/test_compat.py checks each one), and
tests/http/test_channel.py compares every shortcut with what twisted.web's own code
does with the same bytes.

Checked against Twisted 25.5.0 (the floor, ``.ci/lowest-constraints.txt``) and 26.10.0.
"""

from __future__ import annotations

from installsure.http._wire.channel import ApiChannel
from installsure.http._wire.request import ApiRequest

__all__ = ["ApiChannel", "ApiRequest"]
