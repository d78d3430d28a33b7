"""Stopping a server with games in progress ends everything it started, at every stage."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from guessgame import cli
from guessgame.bridge import Bridge, loop_thread
from guessgame.config import SERVER_LAYERS, Layers, Settings
from guessgame.live.host import ServerHost
from peers import CONFIG, PROBE_REPLY, Peer, layers_arg, peers

SHUTDOWN_LIMIT = 2.0
"""The documented bound, in seconds, from the signal to the exit."""

NEVER_ON_STDERR = ("Traceback", "Task was destroyed", "Exception ignored", "ResourceWarning")


@contextmanager
def games_in_progress(port: int) -> Iterator[tuple[Peer, Peer, Peer]]:
    """Three peers: one waiting mid-game, one mid-line, one that never spoke."""
    with Peer(port) as playing, Peer(port) as typing, Peer(port) as silent:
        playing.send("PARAMS 1 5")
        assert playing.ask("NUMBER").isdigit()
        typing.send(b"PARAMS 1")
        yield playing, typing, silent


def test_a_signal_stops_the_command(layers: Layers) -> None:
    """`serve` never runs the client layer, so the 16 combinations are 8 servers twice:
    each server takes SIGINT once and SIGTERM once."""
    signum = signal.SIGINT if layers.client else signal.SIGTERM
    server = subprocess.Popen(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-m", "guessgame",
         "serve", "--port", "0", "--config", str(CONFIG), "--async", layers_arg(layers)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=os.environ | {"PYTHONWARNINGS": "error::ResourceWarning"},
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert first.startswith("listening on "), first
        port = int(first.rsplit(":", 1)[1])
        with games_in_progress(port) as peers:
            server.send_signal(signum)
            code = server.wait(timeout=SHUTDOWN_LIMIT)
            assert all(peer.closed_by_server() for peer in peers)
        out, err = server.communicate()
    finally:
        if server.poll() is None:  # only after a failed assertion: do not leave it behind
            server.kill()
            server.communicate()
    assert code == 0, err
    assert not [word for word in NEVER_ON_STDERR if word in err], err
    assert "server: new game 1..5" in out


# --- in process ----------------------------------------------------------------------


def server_threads(before: set[threading.Thread]) -> list[str]:
    """Threads started since `before`, other than the bridge's idle pool workers (the
    bridge, not the server, owns those; they end when it closes)."""
    return [thread.name for thread in threading.enumerate()
            if thread not in before and not thread.name.startswith("blocking-")]


async def tasks_but_this_one() -> list[str]:
    current = asyncio.current_task()
    return sorted(task.get_name() for task in asyncio.all_tasks() if task is not current)


def test_stop_from_a_thread_returns_after_everything_ended(settings: Settings) -> None:
    with loop_thread(settings, SERVER_LAYERS) as bridge:
        before = set(threading.enumerate())
        reports: list[str] = []
        server = ServerHost(settings, bridge, write=reports.append)
        server.start()
        with games_in_progress(server.port) as peers:
            server.stop()
            assert server_threads(before) == []
            if bridge is not None:
                assert bridge.run_in_loop(tasks_but_this_one()) == []
            assert all(peer.closed_by_server() for peer in peers)
        assert reports[0] == "server: new game 1..5"


def test_stop_from_a_coroutine_returns_after_everything_ended(settings: Settings) -> None:
    before = set(threading.enumerate())
    reports: list[str] = []

    async def main() -> tuple[list[str], list[str]]:
        bridge = Bridge.adopt_running_loop(settings.max_workers)
        try:
            server = ServerHost(settings, bridge, write=reports.append)
            await server.astart()
            # The peers are blocking sockets: drive them from a thread, not the loop.
            left = await asyncio.to_thread(play_then_stop, server, bridge)
            return left, await tasks_but_this_one()
        finally:
            bridge.shutdown_executors()

    def play_then_stop(server: ServerHost, bridge: Bridge) -> list[str]:
        with games_in_progress(server.port) as peers:
            bridge.run_in_loop(server.astop())
            left = server_threads(before | {threading.current_thread()})
            assert all(peer.closed_by_server() for peer in peers)
        return left

    threads_left, tasks_left = asyncio.run(main())
    assert (threads_left, tasks_left) == ([], [])
    assert reports[0] == "server: new game 1..5"


def test_stop_as_every_session_finishes(settings: Settings) -> None:
    """Every peer has played and left as the stop begins, so the session tasks finish
    while stop() waits. Since 3.12 gather() over finished tasks does not yield, and the
    asyncio server used to spin here for good, waiting for their done callbacks."""
    with loop_thread(settings, SERVER_LAYERS) as bridge:
        before = set(threading.enumerate())
        server = ServerHost(settings, bridge)
        server.start()
        with peers(server, 20) as finished:
            for peer in finished:
                assert peer.probe() == PROBE_REPLY
        server.stop()
        assert server_threads(before) == []
        if bridge is not None:
            assert bridge.run_in_loop(tasks_but_this_one()) == []


def test_serve_on_a_taken_port_fails_in_one_line(layers: Layers,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code = cli.main(["serve", "--port", str(port), "--config", str(CONFIG),
                         "--async", layers_arg(layers), "-q"])
    out, err = capsys.readouterr()
    assert (code, err, out) == (
        cli.EXIT_FAILED, f"guessgame: cannot serve on 127.0.0.1:{port}: Address already in use\n",
        "")
