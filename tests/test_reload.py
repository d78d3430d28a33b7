"""A running server moves between stages on SIGHUP, rolls layers out to a fraction of
connections, and shows each flavour's counts on SIGUSR2; nothing is dropped meanwhile."""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import threading
import time
from pathlib import Path

import pytest

from guessgame import config
from live import config_text, fresh_shape, live_serve, stage_line
from peers import CONFIG, PROBE_REPLY, Peer, eventually

STAGES = list(config.load(str(CONFIG)).stages)
"""The five named stages, from all threads to all async."""

RELOAD_EVERY = 1.0
"""The load test reloads once a second, as an operator stepping through might."""


def test_sighup_logs_the_change_in_one_line_and_keeps_the_pid(tmp_path: Path) -> None:
    with live_serve(tmp_path / "g.toml", config_text("all-threads")) as server:
        pid = server.pid
        answer = server.reload(config_text("async-connection"))
        assert answer == ["guessgame: stage all-threads -> async-connection (async: connection)"]
        with Peer(server.port) as peer:
            assert peer.probe() == PROBE_REPLY
        assert server.pid == pid and server.process.poll() is None


@pytest.mark.parametrize(("old", "new"), [
    ("all-threads", "async-connection"),
    ("all-threads", "async-server"),
    ("async-session", "async-server"),
    ("all-async", "all-threads"),
    ("async-server", "async-session"),
])
def test_a_game_in_progress_finishes_on_its_flavours_and_new_ones_get_the_new(
        tmp_path: Path, old: str, new: str) -> None:
    before, after = (config.load(str(CONFIG), stage).layers for stage in (old, new))
    # Shapes compare exactly without the results store, whose writer and workers run
    # while games end and retire when idle.
    fresh = fresh_shape(tmp_path, new, "--results", "none")
    with live_serve(tmp_path / "g.toml", config_text(old), "--results", "none") as server, \
            Peer(server.port) as playing:
        playing.send("PARAMS 1 5")
        first = playing.ask("NUMBER")
        assert server.reload(config_text(new)) == [stage_line(old, new)]
        with Peer(server.port) as newcomer:
            assert newcomer.probe() == PROBE_REPLY
            # The old game goes on where it was, on the server that accepted it.
            playing.send("REPORT COLDER")
            second = playing.ask("NUMBER")
            assert {first, second} <= {"1", "2", "3", "4", "5"} and first != second
            assert playing.probe() == PROBE_REPLY
            counts = server.flavours()
        for layer in ("connection", "session", "server"):
            was, now = getattr(before, layer), getattr(after, layer)
            assert (counts.sessions(layer, "asyncio"), counts.sessions(layer, "threads")) == (
                was + now, 2 - was - now), counts.lines
        playing.close()
        server.wait_for_shape(fresh, f"once the {old} server has drained, as in a fresh "
                                     f"start at {new}")


@pytest.mark.parametrize(("broken", "error"), [
    (config_text("async-session") + "[guessgame\n", "malformed TOML"),
    (config_text("all-sync"), "unknown stage 'all-sync'"),
    (config_text("async-session", "{ server = 0.5 }"),
     "'server' cannot be rolled out per connection"),
], ids=["malformed", "unknown-stage", "bad-rollout"])
def test_a_config_that_does_not_load_leaves_the_stage_as_it_was(
        tmp_path: Path, broken: str, error: str) -> None:
    with live_serve(tmp_path / "g.toml", config_text("async-connection")) as server:
        answer = server.reload(broken)
        assert len(answer) == 1 and answer[0].startswith(f"guessgame: {server.config}: "), answer
        assert error in answer[0]
        with Peer(server.port) as peer:
            assert peer.probe() == PROBE_REPLY
        counts = server.flavours()
        assert counts.sessions("connection", "asyncio") == 1
        assert counts.sessions("session", "threads") == 1  # still async-connection
        # Fixed, the same file loads, from the stage the server kept.
        fixed = server.reload(config_text("async-session"))
        assert fixed == [stage_line("async-connection", "async-session")]


def test_a_rollout_of_half_the_sessions_over_200_connections(tmp_path: Path) -> None:
    with live_serve(tmp_path / "g.toml", config_text("async-connection"), "--no-reports") \
            as server:
        server.reload(config_text("async-connection", "{ session = 0.5 }"))
        for _ in range(200):
            with Peer(server.port) as peer:
                assert peer.probe() == PROBE_REPLY
        counts = server.flavours()
    async_sessions = counts.sessions("session", "asyncio")
    assert 80 <= async_sessions <= 120, counts.lines
    assert async_sessions + counts.sessions("session", "threads") == 200
    assert counts.sessions("connection", "asyncio") == 200
    for flavour in ("threads", "asyncio"):  # side by side, both measured
        assert counts.replies("session", flavour) == counts.sessions("session", flavour)
        assert counts.errors("session", flavour) == 0
        p50, p99 = counts.latency("session", flavour)
        assert 0 < float(p50) <= float(p99), counts.lines


def test_the_rollout_is_shown_in_the_trace(tmp_path: Path) -> None:
    with live_serve(tmp_path / "g.toml",
                    config_text("all-threads", "{ connection = 1.0, session = 0.0 }"),
                    "--trace") as server:
        with Peer(server.port) as peer:
            assert peer.probe() == PROBE_REPLY
        eventually(lambda: any("\trollout\ts1 runs async-connection" in line
                               for line in server.err), "the rollout's trace line")


# --- 100 clients playing through a reload a second ---------------------------------


class Players:
    """Clients that play without pause, each reconnecting after every game, written
    as someone would with asyncio streams. Each checks every round it plays."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.games = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._all(),),
                                        name="players")

    def __enter__(self) -> Players:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    async def _all(self) -> None:
        await asyncio.gather(*(self._play(number) for number in range(self.count)))

    async def _play(self, number: int) -> None:
        rng = random.Random(number)
        while not self._stop.is_set():
            try:
                async with asyncio.timeout(10):
                    problem = await self._game(rng)
            except (OSError, EOFError, TimeoutError) as error:
                problem = f"{type(error).__name__}: {error}"
            if problem:
                self.failures.append(problem)
            else:
                self.games += 1

    async def _game(self, rng: random.Random) -> str | None:
        lower = rng.randint(-20, 20)
        upper = lower + rng.randint(0, 9)
        secret = rng.randint(lower, upper)
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(f"PARAMS {lower} {upper}\n".encode())
            guessed: list[int] = []
            while True:
                writer.write(b"NUMBER\n")
                line = await reader.readline()
                if not line.endswith(b"\n"):
                    raise EOFError(f"closed after {guessed} in {lower}..{upper}")
                text = line.decode().strip()
                if not re.fullmatch(r"-?\d+", text) or not lower <= int(text) <= upper \
                        or int(text) in guessed:
                    return f"invalid round: {text!r} after {guessed} in {lower}..{upper}"
                guessed.append(int(text))
                if int(text) == secret:
                    writer.write(b"REPORT CORRECT\n")
                    await writer.drain()
                    return None
                writer.write(rng.choice((b"REPORT WARMER\n", b"REPORT COLDER\n")))
        finally:
            writer.close()
            await writer.wait_closed()

    def play_until(self, moment: float) -> None:
        """Let the clients play until `moment` (time.monotonic()): pace, not
        synchronisation; it ends at once if the clients were stopped."""
        self._stop.wait(max(0.0, moment - time.monotonic()))

    def wait_for_games(self, more: int) -> None:
        mark = self.games
        eventually(lambda: self.games >= mark + more or bool(self.failures),
                   f"{more} more games")


def test_100_clients_play_on_while_the_server_goes_through_every_stage_and_back(
        tmp_path: Path) -> None:
    path = STAGES + STAGES[-2::-1]  # all-threads ... all-async ... all-threads
    single = {stage: fresh_shape(tmp_path, stage).threads
              for stage in ("async-server", "all-async")}
    # Thread counts are exact without the results store's worker and writer, which run
    # while games end (test_results_faults.py records games through reloads).
    with live_serve(tmp_path / "g.toml", config_text(path[0]), "--results", "none") as server:
        at_start = server.shape()
        with Players(server.port, 100) as players:
            players.wait_for_games(100)
            for old, new in itertools.pairwise(path):
                reloaded = time.monotonic()
                assert server.reload(config_text(new)) == [stage_line(old, new)]
                if new in single:  # no thread per connection here: the count is exact
                    server.wait_for_threads(single[new], f"at {new} once {old} has drained")
                players.wait_for_games(100)
                players.play_until(reloaded + RELOAD_EVERY)  # one reload a second
                assert players.failures == []
        assert players.failures == []
        assert players.games > 100 * len(path)
        server.wait_for_shape(at_start, "back at all-threads once every game has ended")
        counts = server.flavours()
        refused = [line for line in server.err if "refused" in line]
        assert refused == []
    for layer in ("connection", "session", "server"):  # every flavour took its share
        for flavour in ("threads", "asyncio"):
            assert counts.sessions(layer, flavour) > 100, counts.lines
            assert counts.errors(layer, flavour) == 0, counts.lines
