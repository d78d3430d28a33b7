"""Bridge misuse fails with a sentence, never a hang; errors cross with their traceback."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import threading
import warnings

import pytest

from guessgame.adapters import BlockingFace
from guessgame.bridge import Bridge, BridgeError
from guessgame.config import Settings
from guessgame.live.host import serving
from harness import fail_in_a_thread, frames
from peers import PROBE_REPLY, Peer, eventually, peers
from timing import UNIT

WORKERS = 4


async def nothing() -> None:
    pass


def test_a_blocking_call_from_the_loop_thread_raises(bridge: Bridge) -> None:
    async def misuse() -> None:
        with pytest.raises(BridgeError, match="cannot be called from the event loop thread"):
            bridge.run_in_loop(nothing())  # would wait for the loop it is blocking

    bridge.run_in_loop(misuse())


def test_a_blocking_call_from_an_adopted_loop_raises() -> None:
    async def main() -> None:
        bridge = Bridge.adopt_running_loop(WORKERS)
        with pytest.raises(BridgeError, match="cannot be called from the event loop thread"):
            bridge.run_in_loop(nothing())

    asyncio.run(main())


def test_a_call_to_a_closed_loop_raises() -> None:
    bridge = Bridge.start_loop_thread(WORKERS)
    bridge.close()
    with pytest.raises(BridgeError, match="event loop is closed"):
        bridge.run_in_loop(nothing())


def test_a_call_to_a_stopped_loop_raises(bridge: Bridge) -> None:
    bridge.loop.call_soon_threadsafe(bridge.loop.stop)  # stopped by someone else
    eventually(lambda: not bridge.loop.is_running(), "the loop to stop")
    with pytest.raises(BridgeError, match="event loop"):
        bridge.run_in_loop(nothing())


def test_a_call_waiting_when_the_loop_stops_fails(caplog: pytest.LogCaptureFixture) -> None:
    bridge = Bridge.start_loop_thread(WORKERS)
    started = threading.Event()
    outcome: list[BaseException] = []

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    def caller() -> None:
        try:
            bridge.run_in_loop(forever())
        except BaseException as error:  # whatever it is, the test reports it
            outcome.append(error)

    waiting = threading.Thread(target=caller, name="waiting caller")
    waiting.start()
    started.wait()
    bridge.close()
    waiting.join()
    assert len(outcome) == 1 and isinstance(outcome[0], BridgeError), outcome
    assert str(outcome[0]) == "the event loop stopped before the call ended"
    assert not [record.getMessage() for record in caplog.records]  # asyncio saw no error


# --- exceptions cross with their traceback -------------------------------------------


class Boom(Exception):
    pass


def test_a_loop_exception_reaches_the_thread_with_its_traceback(bridge: Bridge) -> None:
    async def fail_on_the_loop() -> None:
        raise Boom("on the loop")

    with pytest.raises(Boom, match="on the loop") as caught:
        bridge.run_in_loop(fail_on_the_loop())
    assert "fail_on_the_loop" in frames(caught.value)


def test_a_thread_exception_reaches_the_loop_with_its_traceback(bridge: Bridge) -> None:
    async def call() -> None:
        await bridge.run_in_thread("test", fail_in_a_thread)

    with pytest.raises(ValueError, match="from a thread") as caught:
        bridge.run_in_loop(call())
    assert {"fail_in_a_thread", "call"} <= set(frames(caught.value))


# --- parked reads do not queue each other --------------------------------------------

DEFAULT_POOL = min(32, (os.cpu_count() or 1) + 4)
"""The size of asyncio's default executor: a pool this small would starve."""


def test_parked_reads_do_not_keep_a_new_peer_waiting(settings: Settings) -> None:
    """More idle peers than asyncio's default pool has workers, each with a read parked;
    one more peer is still served. (A starved pool would hang it: the test's timeout.)"""
    parked = DEFAULT_POOL + 4
    with serving(settings) as server, peers(server, parked) as idle:
        for peer in idle:
            assert peer.probe() == PROBE_REPLY  # served once: now parked in its next read
        eventually(lambda: server.open_sessions == parked, f"{parked} sessions")
        with Peer.to(server) as newcomer:
            assert newcomer.probe() == PROBE_REPLY
        assert idle[0].probe() == PROBE_REPLY


def test_closing_an_adopted_loop_fails_a_worker_still_waiting_on_it() -> None:
    """close() runs on the adopted loop's own thread (as `serve` does on its way out):
    a worker still in run_in_loop gets a BridgeError instead of being joined while it
    waits for that loop, which would deadlock both."""
    async def main() -> None:
        bridge = Bridge.adopt_running_loop(WORKERS)
        entered = asyncio.Event()
        never = asyncio.Event()

        async def parked() -> None:
            entered.set()
            await never.wait()

        call = asyncio.ensure_future(bridge.run_in_thread(
            "stranded", lambda: bridge.run_in_loop(parked())))
        await entered.wait()
        bridge.close()
        with pytest.raises(BridgeError, match="the event loop stopped before the call ended"):
            await call

    asyncio.run(main())


def test_closing_a_face_after_its_loop_stopped_leaves_the_callers_own_error() -> None:
    """A threaded session closes its connection in a `finally`. If the loop stopped
    under it (an interrupted stop), that close must not replace the session's own
    exception with a BridgeError; the peer still sees the end of the stream."""
    bridge = Bridge.start_loop_thread(WORKERS)
    ours, theirs = socket.socketpair()
    face = bridge.run_in_loop(BlockingFace.open(bridge, ours, 1024, None))
    bridge.close()
    with pytest.raises(LookupError, match="the session's own"):
        try:
            raise LookupError("the session's own")
        finally:
            face.close()
    theirs.settimeout(UNIT)
    assert theirs.recv(16) == b""
    theirs.close()
    with warnings.catch_warnings():  # the stopped loop never closed the transport
        warnings.simplefilter("ignore", ResourceWarning)
        del face
        gc.collect()
