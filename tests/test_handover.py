"""One server hands its listening socket to the next: the backlog and the old games stay."""

from __future__ import annotations

import asyncio
import threading

import pytest

from guessgame import config
from guessgame.bridge import Bridge
from guessgame.config import Layers
from guessgame.live.host import ServerHost
from guessgame.live.server import LiveServer
from peers import (
    CONFIG,
    PROBE_REPLY,
    Peer,
    eventually,
    is_idle_session_thread,
    thread_names,
    wait_until_idle,
)

WAITING = 5


@pytest.mark.parametrize("old_is_async", [False, True], ids=["threads->asyncio",
                                                             "asyncio->threads"])
def test_the_next_server_accepts_what_waited_in_the_backlog(old_is_async: bool) -> None:
    base = config.load(str(CONFIG))
    old_settings = base.with_options(layers=Layers(server=old_is_async))
    new_settings = base.with_options(layers=Layers(server=not old_is_async))
    bridge = Bridge.start_loop_thread(base.max_workers)
    try:
        old = ServerHost(old_settings, bridge)
        old.start()
        with Peer(old.port) as staying:
            staying.send("PARAMS 1 5")
            first = staying.ask("NUMBER")
            listener = old.hand_over()
            # Nobody accepts now: the kernel completes these connections into the backlog.
            waiting = [Peer(old.port) for _ in range(WAITING)]
            new = ServerHost(new_settings, bridge, listener=listener)
            new.start()
            try:
                assert [peer.probe() for peer in waiting] == [PROBE_REPLY] * WAITING
                # The game that began before the handover goes on, on the old server.
                staying.send("REPORT COLDER")
                assert staying.ask("NUMBER") not in (first, "")
                assert (old.open_sessions, new.open_sessions) == (1, WAITING)
            finally:
                for peer in waiting:
                    peer.close()
                wait_until_idle(new, "the new sessions to end")
                new.stop()
        wait_until_idle(old, "the old game to end")
        old.stop()
    finally:
        bridge.close()


def _idle_session_threads() -> list[str]:
    return [name for name in thread_names() if is_idle_session_thread(name)]


def test_a_threaded_server_that_hands_over_lets_its_idle_session_threads_go() -> None:
    """No arrival can reach them any more, so they go now, not after
    worker_idle_timeout: a reload every second would otherwise keep one idle pool per
    server of the last 10 s."""
    settings = config.load(str(CONFIG)).with_options(layers=Layers())
    assert settings.worker_idle_timeout >= 10
    old = ServerHost(settings, None)
    old.start()
    try:
        finished = [Peer(old.port) for _ in range(3)]  # three sessions at once: 3 threads
        assert [peer.probe() for peer in finished] == [PROBE_REPLY] * 3
        for peer in finished:
            peer.close()
        wait_until_idle(old, "the finished sessions to end")
        with Peer(old.port) as staying:
            staying.send("PARAMS 1 5")
            first = staying.ask("NUMBER")
            assert _idle_session_threads(), "the finished sessions' threads wait for work"
            old.hand_over().close()
            eventually(lambda: not _idle_session_threads(),
                       lambda: f"the idle session threads to exit: {_idle_session_threads()}")
            staying.send("REPORT COLDER")  # the game that was on goes on
            assert staying.ask("NUMBER") not in (first, "")
        wait_until_idle(old, "the last game to end")
    finally:
        old.stop()


@pytest.mark.parametrize("threaded_layers", [Layers(), Layers(connection=True)],
                         ids=["all-threads", "async-connection"])
def test_a_reload_to_a_threaded_stage_starts_its_threads_off_the_loop(
        monkeypatch: pytest.MonkeyPatch, threaded_layers: Layers) -> None:
    """Thread.start() waits until the new thread runs, which under load means waiting
    for the GIL behind every busy thread: a threaded generation that a reload starts
    while the loop runs must start its acceptor and printer from another thread, whether
    or not its sessions use the loop."""
    started_on_loop: dict[str, bool] = {}
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        started_on_loop[thread.name] = asyncio._get_running_loop() is not None
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    base = config.load(str(CONFIG))
    on_loop, threaded = (base.with_options(layers=Layers(server=True)),
                         base.with_options(layers=threaded_layers))
    server = LiveServer(on_loop, "127.0.0.1", 0, write=[].append)

    async def reload_once() -> None:
        server._bridge = Bridge.adopt_running_loop(base.max_workers)
        try:
            await server._advance_on_loop(on_loop)
            await server._advance_on_loop(threaded)
            with Peer(int(server.address.rsplit(":", 1)[1])) as peer:
                assert await asyncio.to_thread(peer.probe) == PROBE_REPLY
        finally:
            await server._stop_all_on_loop()
            server._bridge.close()

    asyncio.run(reload_once())
    assert started_on_loop["acceptor"] is False
    assert started_on_loop["reports"] is False
