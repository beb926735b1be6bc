"""Freezing the start-up heap: done once the database is ready, not before."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from installsure.heap import freeze_once_started


class Node:
    itself: object


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    # The test process must not keep its objects out of the collector's reach.
    gc.unfreeze()


@pytest_twisted.ensureDeferred
async def test_the_heap_is_frozen_once_start_up_is_done(unfrozen: None) -> None:
    """Nothing is frozen while start-up is under way; once the start-up Deferred fires
    the objects then alive are out of the collector's way, and collected garbage is
    not among them."""
    started: defer.Deferred[None] = defer.Deferred()
    freeze_once_started(reactor, started)
    await task.deferLater(reactor, 0.01, lambda: None)
    assert gc.get_freeze_count() == 0
    garbage = Node()
    garbage.itself = garbage  # a cycle only the collector frees
    gone = weakref.ref(garbage)
    del garbage
    started.callback(None)
    assert gc.get_freeze_count() > 1000
    assert gone() is None
