"""Every attribute of another library that this package reads although its name is
private, each with the reason no public way serves, in one place.

tests/test_private_apis.py fails if a release of the library changes one of them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import janus


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, or None.

    `asyncio.get_running_loop()` raises outside a loop, and catching that costs more
    than the answer on the paths that ask (every crossing, every meter record). asyncio
    exports `_get_running_loop` for loop implementations; it is the same test
    get_running_loop() makes, without the exception.
    """
    return asyncio._get_running_loop()


JANUS_ENDS = ("_sync_queue", "_async_queue")
"""The attributes of a janus.Queue that hold its two ends."""


def unlink_janus(queue: janus.Queue[Any]) -> None:
    """Break the reference cycle a closed janus queue leaves: the queue and its two
    ends refer to each other, so a closed queue would otherwise wait for the cycle
    collector's next full collection, which a busy server runs rarely, and memory
    grows with the connections served meanwhile (docs/performance.md). janus offers
    no public way to let go of its ends. Should a release rename them, closing still
    works; the cycle is left, and the tests say so."""
    for end in JANUS_ENDS:
        vars(queue).pop(end, None)
