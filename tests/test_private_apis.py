"""The private attributes of other libraries that crossing.py reads still exist and
still mean what it relies on."""

from __future__ import annotations

import asyncio
import gc
import weakref

import janus

from guessgame import crossing


def test_asyncio_still_tells_the_running_loop_without_raising() -> None:
    assert crossing.running_loop() is None

    async def inside() -> asyncio.AbstractEventLoop | None:
        return crossing.running_loop()

    with asyncio.Runner() as runner:
        assert runner.run(inside()) is runner.get_loop()


def test_janus_still_holds_its_ends_where_unlinking_looks() -> None:
    async def closed_queue() -> weakref.ref[janus.Queue[int]]:
        queue: janus.Queue[int] = janus.Queue(1)
        assert set(crossing.JANUS_ENDS) <= set(vars(queue)), sorted(vars(queue))
        queue.shutdown()
        await queue.aclose()
        crossing.unlink_janus(queue)
        return weakref.ref(queue)

    gc.disable()
    try:
        freed = asyncio.run(closed_queue())
        assert freed() is None, "an unlinked janus queue is freed without the collector"
    finally:
        gc.enable()


def test_janus_faces_still_lead_back_to_their_queue() -> None:
    async def faces() -> None:
        queue: janus.Queue[int] = janus.Queue(1)
        try:
            assert crossing.janus_queue_of(queue.sync_q) is queue
            assert crossing.janus_queue_of(queue.async_q) is queue
        finally:
            queue.shutdown()
            await queue.aclose()

    asyncio.run(faces())
