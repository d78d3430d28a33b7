"""The results store: the row a game makes, the store's buffer and writer, the command
that reads it, and the bridge async sessions reach it through."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from guessgame import app, cli, config, outcomes, results
from guessgame.aio import session as aio_session
from guessgame.bridge import Bridge
from guessgame.config import Layers, Settings
from guessgame.live.host import ServerHost
from guessgame.outcomes import Played, Scorekeeper
from guessgame.protocol import Guesser
from guessgame.threaded import session as threaded_session
from harness import assert_config_rejects
from peers import CONFIG, DEADLINE, eventually
from timing import UNIT


def game(n: int = 0, outcome: str = outcomes.CORRECT) -> Played:
    return Played(f"127.0.0.1:{n}", "none", 1, 5, 3, outcome, "t0", "t1")


def rows(path: Path | str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as connection:
        found = connection.execute(
            f"SELECT {', '.join(results.COLUMNS)} FROM games ORDER BY id").fetchall()
    connection.close()
    return found


@pytest.fixture
def store_path(tmp_path: Path) -> str:
    path = str(tmp_path / "results.sqlite3")
    results.prepare(path)
    return path


@pytest.fixture
def store(store_path: str) -> Iterator[results.Store]:
    opened = results.Store(store_path, idle_timeout=0.2)
    yield opened
    opened.close()


# --- the row: what a game is and how it ended ----------------------------------------


def steps(keeper: Scorekeeper, *lines: str) -> tuple[list[Played], Guesser]:
    """Feed the keeper what a session feeds it: the steps that may start or end a game."""
    guesser = Guesser(random.Random(1))
    ended = []
    for line in lines:
        step = guesser.handle(line)
        if step.game_guesses is not None and (played := keeper.after(step)) is not None:
            ended.append(played)
    return ended, guesser


def test_a_game_ends_at_correct_or_new_params_and_counts_number_replies() -> None:
    keeper = Scorekeeper("p", "none", lambda: "t", lambda: False)
    ended, guesser = steps(keeper, "PARAMS 1 1", "NUMBER", "REPORT CORRECT",  # one guess
                           "NUMBER",  # refused: no game, no guess
                           "PARAMS 1 9", "NUMBER", "REPORT WARMER", "NUMBER", "PARAMS 3 4",
                           "NUMBER", "PARAMS 0 -1")
    assert [(g.lower, g.upper, g.guesses, g.outcome) for g in ended] == [
        (1, 1, 1, "CORRECT"), (1, 9, 2, "new-params"), (3, 4, 1, "new-params")]
    assert keeper.session_ended(outcomes.LEFT, guesser.guesses) is None  # between games


def test_only_a_params_or_a_correct_may_start_or_end_a_game() -> None:
    """The sessions skip the keeper on every other line: the core must mark each line
    that may matter to it, and count the guesses that the skipped lines drew."""
    guesser = Guesser(random.Random(1))
    lines = ("PARAMS 1 9", "NUMBER", "REPORT WARMER", "NUMBER", "REPORT UNSURE", "NUMBER",
             "NUMBER", "REPORT CORRECT", "PARAMS 0 -1", "PARAMS 1 3", "NUMBER", "PARAMS 1 3")
    marked = [guesser.handle(line).game_guesses for line in lines]
    # A NUMBER after a NUMBER draws again; a CORRECT does not start the count again.
    assert marked == [0, None, None, None, None, None, None, 4, 4, 0, None, 1]
    assert guesser.guesses == 0


def test_the_end_of_a_session_ends_its_game_as_left_error_or_stopped() -> None:
    stopping = False
    for how, expected in ((outcomes.LEFT, "left"), (outcomes.ERROR, "error")):
        keeper = Scorekeeper("p", "none", lambda: "t", lambda: stopping)
        _, guesser = steps(keeper, "PARAMS 1 5", "NUMBER")
        ended = keeper.session_ended(how, guesser.guesses)
        assert ended is not None and (ended.guesses, ended.outcome) == (1, expected)
    stopping = True
    keeper = Scorekeeper("p", "none", lambda: "t", lambda: stopping)
    _, guesser = steps(keeper, "PARAMS 1 5")
    assert keeper.session_ended(outcomes.LEFT, guesser.guesses) == Played(
        "p", "none", 1, 5, 0, "stopped", "t", "t")


# --- the store -----------------------------------------------------------------------


def test_a_new_file_gets_the_schema_and_utc_iso_times(store: results.Store,
                                                      store_path: str) -> None:
    with sqlite3.connect(store_path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert connection.execute("PRAGMA user_version").fetchone() == (1,)
    connection.close()
    stamp = results.utc_now()
    assert stamp.endswith("+00:00") and "T" in stamp
    results.prepare(store_path)  # an existing results database is fine


@pytest.mark.parametrize("seconds", [0.0, 1_765_000_000.0, 1_765_000_000.0005,
                                     1_765_000_000.9994999, 1_765_000_000.9999996,
                                     1_765_000_059.123456, 2_000_000_000.999])
def test_times_read_as_datetime_writes_them(seconds: float) -> None:
    written = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    assert results.utc_iso(seconds) == written.isoformat(timespec="milliseconds")
    assert results.utc_iso(seconds) == results.utc_iso(seconds)  # and from the cache


def test_games_are_written_in_one_transaction_per_flush_interval(
        store: results.Store, store_path: str) -> None:
    commits = []
    original = store._write

    def counting(connection: sqlite3.Connection, batch: list[Played]) -> bool:
        commits.append(len(batch))
        return original(connection, batch)

    store._write = counting  # type: ignore[method-assign]
    for n in range(50):
        store.record(game(n))
    assert store.flush(DEADLINE)
    assert len(rows(store_path)) == 50
    assert commits == [50]  # gathered for the flush interval, written at once


def test_a_batch_goes_in_a_few_multi_row_statements(store_path: str) -> None:
    """sqlite3 lets go of the GIL around each statement: a statement per game would hand
    the GIL to the writer and back once per game."""
    statements: list[str] = []

    class Tracing(results.Store):
        def _connect(self) -> sqlite3.Connection:
            connection = super()._connect()
            connection.set_trace_callback(statements.append)
            return connection

    store = Tracing(store_path, idle_timeout=0.2)
    try:
        store.record_all([game(n) for n in range(300)])
        assert store.flush(DEADLINE)
    finally:
        store.close()
    assert len(rows(store_path)) == 300
    inserts = [text for text in statements if text.startswith("INSERT")]
    assert len(inserts) == -(-300 // results.ROWS_PER_INSERT) == 3


def test_a_game_recorded_while_the_writer_idles_is_written_within_the_flush_interval(
        store_path: str) -> None:
    """Not at the end of the writer's idle timeout: the first game wakes it."""
    store = results.Store(store_path, idle_timeout=60.0)
    try:
        store.record(game(1))
        eventually(lambda: store.written == 1, "the first game written")
        store.record(game(2))  # the writer now waits for a game, up to 60 s
        eventually(lambda: store.written == 2, "the second game written",
                   deadline=results.FLUSH_INTERVAL + UNIT / 10)
    finally:
        store.close()


def test_the_writer_exits_when_idle_and_the_next_record_starts_another(
        store: results.Store, store_path: str) -> None:
    store.record(game(1))
    eventually(lambda: store._writer is None and results.WRITER_NAME not in
               [t.name for t in threading.enumerate()], "the idle writer to exit")
    store.record(game(2))
    assert store.flush(DEADLINE)
    assert [row[0] for row in rows(store_path)] == ["127.0.0.1:1", "127.0.0.1:2"]


def test_records_from_many_threads_go_through_the_one_writer_connection(
        store: results.Store, store_path: str) -> None:
    """Pitfall: a sqlite3 connection used from a thread other than its maker's raises
    ProgrammingError; the writer thread makes and alone uses the connection."""
    shared = sqlite3.connect(store_path)
    failure: list[BaseException] = []

    def elsewhere() -> None:
        try:
            shared.execute("SELECT 1")
        except sqlite3.ProgrammingError as error:
            failure.append(error)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    shared.close()
    assert failure and "same thread" in str(failure[0])

    callers = [threading.Thread(target=lambda i=i: [store.record(game(i * 10 + k))
                                                      for k in range(10)]) for i in range(8)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert store.flush(DEADLINE)
    assert len(rows(store_path)) == 80


def test_a_full_buffer_waits_a_bounded_time_then_drops_and_counts(
        store_path: str, caplog: pytest.LogCaptureFixture) -> None:
    store = results.Store(store_path, idle_timeout=0.2, bound=3, flush_interval=10 * UNIT)
    try:
        started = time.monotonic()
        for n in range(5):  # the writer gathers for its flush interval: the buffer fills
            store.record(game(n))
        assert store.dropped == 2
        # The second drop does not wait again: RECORD_WAIT counts from the buffer filling.
        assert time.monotonic() - started < 2 * results.RECORD_WAIT
        assert "results: 1 games not recorded" in caplog.text  # the first drop, at once
        assert "results: 2 games" not in caplog.text  # the next, not within 5 s
        assert store.status().endswith("0 games written, 3 waiting, 2 dropped")
        assert store.flush(DEADLINE)
    finally:
        store.close()
    assert len(rows(store_path)) == 3


def test_close_tells_the_drops_held_back_and_a_record_after_it_that_the_store_is_closed(
        store_path: str, caplog: pytest.LogCaptureFixture) -> None:
    store = results.Store(store_path, idle_timeout=0.2, bound=1, flush_interval=10 * UNIT)
    for n in range(3):  # one buffered; one dropped and told; one dropped and held back
        store.record(game(n))
    store.close()
    store.record(game(3))
    assert store.dropped == 3
    assert [record.getMessage() for record in caplog.records] == [
        f"results: 1 games not recorded: {store_path} is not keeping up",
        f"results: 1 games not recorded: {store_path} is not keeping up",  # by close()
        f"results: 1 games not recorded: {store_path} is closed"]
    assert len(rows(store_path)) == 1


def _writer_start(monkeypatch: pytest.MonkeyPatch,
                  before: Callable[[], None]) -> None:
    """Call `before` in the store's writer's Thread.start(), before it starts."""
    original = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        if thread.name == results.WRITER_NAME:
            before()
        original(thread)

    monkeypatch.setattr(threading.Thread, "start", start)


def test_the_writer_is_started_with_the_lock_free(
        store: results.Store, store_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Thread.start() waits for the new thread to run: under the store's lock, every
    caller would wait for it too."""
    free: list[bool] = []

    def lock_is_free() -> None:
        free.append(store._lock.acquire(blocking=False))
        if free[-1]:
            store._lock.release()

    _writer_start(monkeypatch, lock_is_free)
    store.record(game(1))
    assert free == [True]
    assert store.flush(DEADLINE)
    assert len(rows(store_path)) == 1


def test_a_writer_that_cannot_start_is_told_and_the_next_record_starts_one(
        store: results.Store, store_path: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    refusals = [RuntimeError("can't start new thread")]

    def refuse() -> None:
        if refusals:
            raise refusals.pop()

    _writer_start(monkeypatch, refuse)
    store.record(game(1))  # buffered, with no writer to write it
    assert store._writer is None
    assert caplog.messages == [f"results: cannot start the writer of {store_path}: "
                               "can't start new thread; 1 games wait"]
    store.record(game(2))
    assert store.flush(DEADLINE)
    assert [row[0] for row in rows(store_path)] == ["127.0.0.1:1", "127.0.0.1:2"]


class Defective(results.Store):
    """A store whose first write meets a defect of the code, not a database error."""

    defects = 1

    def _write(self, connection: sqlite3.Connection, batch: list[Played]) -> bool:
        if self.defects:
            self.defects -= 1
            raise ValueError("a defect")
        return super()._write(connection, batch)


def test_a_writer_stopped_by_a_defect_says_so_in_one_line_and_the_next_writes_its_games(
        store_path: str, caplog: pytest.LogCaptureFixture) -> None:
    store = Defective(store_path, idle_timeout=0.2, flush_interval=10 * UNIT)
    try:
        store.record(game(1))  # the writer gathers until a flush hurries it
        assert not store.flush(DEADLINE)  # returns as the writer stops, game 1 unwritten
        assert store._writer is None
        assert caplog.messages == [f"results: cannot write to {store_path}: unexpected "
                                   "ValueError: a defect; 1 games wait"]
        assert store.flush(DEADLINE)  # a new writer
        store.record(game(2))
        assert store.flush(DEADLINE)
    finally:
        store.close()
    assert [row[0] for row in rows(store_path)] == ["127.0.0.1:1", "127.0.0.1:2"]
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("content", ["directory", "text", "other schema", "no folder"])
def test_a_path_that_cannot_hold_results_is_refused_in_one_line(tmp_path: Path,
                                                                content: str) -> None:
    path = tmp_path / "x.sqlite3"
    if content == "directory":
        path.mkdir()
    elif content == "text":
        path.write_text("not a database, but long enough to be read as a header at all\n")
    elif content == "other schema":
        with sqlite3.connect(path) as connection:
            connection.execute("CREATE TABLE games (a)")
        connection.close()
    else:
        path = tmp_path / "missing" / "x.sqlite3"
    with pytest.raises(results.ResultsError) as refused:
        results.prepare(str(path))
    assert "\n" not in str(refused.value) and str(path) in str(refused.value)


def test_serve_refuses_a_bad_results_path_with_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("not a database\n" * 10)
    done = subprocess.run([sys.executable, "-m", "guessgame", "serve", "--config", str(CONFIG),
                           "--results", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=2 * UNIT)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"guessgame: results {tmp_path / 'x'}: not a results database: file is not a database"]


# --- the command ---------------------------------------------------------------------


def test_the_results_command_summarises_per_stage_then_lists_the_last_games(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "r.sqlite3")
    for stage in ("all-threads", "all-async"):
        assert cli.main(["demo", "--seed", "1", "-q", "--config", str(CONFIG), "--stage", stage,
                         "--results", path]) == 0
    capsys.readouterr()
    assert cli.main(["results", "--results", path, "--config", str(CONFIG)]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == f"results in {path}: 4 games"
    assert shown[2].split() == ["none", "2", "2", "3.00"]
    assert shown[3].split() == ["all", "2", "2", "3.00"]
    assert shown[4] == "last 4 games, newest first:"
    assert shown[5].split()[1:] == ["all", shown[5].split()[2], "10..15", "1", "guesses",
                                    "CORRECT"]
    assert cli.main(["results", "--results", path, "--json", "--config", str(CONFIG)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["stages"][0] == {"stage": "none", "games": 2, "correct": 2,
                                 "mean_guesses": 3.0}
    assert [g["guesses"] for g in data["last"]] == [1, 5, 1, 5]


def test_the_results_command_on_a_missing_or_corrupt_file_says_so_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corrupt = tmp_path / "corrupt"
    corrupt.write_bytes(bytes(range(256)) * 20)
    for path, reason in ((tmp_path / "missing", "no such file"),
                         (corrupt, "not a results database: file is not a database")):
        assert cli.main(["results", "--results", str(path), "--config", str(CONFIG)]) == 2
        assert capsys.readouterr().err == f"guessgame: results {path}: {reason}\n"


def test_demo_leaves_nothing_behind_by_default(tmp_path: Path) -> None:
    assert app.demo(Settings(), seed=1, out=io.StringIO()) == 0
    assert list(tmp_path.iterdir()) == []


# --- reaching the store from the loop ------------------------------------------------


def test_async_sessions_reach_a_stuck_store_in_a_worker_and_the_loop_serves_on(
        store: results.Store, store_path: str) -> None:
    """Pitfall: called straight from an async session, a store that waits (here, on its
    lock) stops the loop and every connection on it. Through run_in_thread, on the
    store's own pool, only that session waits."""
    settings = Settings(layers=Layers(connection=True, session=True, server=True))

    async def play(port: int, lines: list[str]) -> list[str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        replies = []
        for line in lines:
            writer.write(line.encode() + b"\n")
            if line == "NUMBER":
                replies.append((await reader.readline()).decode().strip())
        writer.close()
        await writer.wait_closed()
        return replies

    async def main() -> list[str]:
        bridge = Bridge.adopt_running_loop(8, worker_idle_timeout=0.2)
        host = ServerHost(settings, bridge, results=store)
        await host.astart()
        try:
            with store._lock:  # the store is stuck: the first game's record waits
                await play(host.port, ["PARAMS 1 1", "NUMBER", "REPORT CORRECT"])
                # The loop turns: another connection is served meanwhile.
                return await asyncio.wait_for(play(host.port, ["PARAMS 1 1", "NUMBER"]),
                                              DEADLINE)
        finally:
            await host.astop()
            bridge.close()

    assert asyncio.run(main()) == ["1"]
    assert store.flush(DEADLINE)
    # Both games waited for the lock in workers of their own: either may be written first.
    first, second = sorted(row[5] for row in rows(store_path))
    assert first == "CORRECT" and second in ("left", "stopped")


class TellingLock:
    """A lock that says when a caller has to wait for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.waited = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(False):
            return True
        if not blocking:
            return False
        self.waited.set()
        return self._lock.acquire(True, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()


def test_a_direct_call_from_the_loop_would_stall_it(store: results.Store) -> None:
    """What the worker saves: the same call made on the loop's thread holds the loop for
    as long as the store waits, and no other callback runs meanwhile."""
    lock = TellingLock()
    store._lock = threading.Condition(lock)  # type: ignore[arg-type]
    held = threading.Event()

    def hold() -> None:
        with store._lock:
            held.set()
            lock.waited.wait(DEADLINE)  # the store is stuck until the loop's thread waits

    async def main() -> None:
        turned = asyncio.Event()
        asyncio.get_running_loop().call_soon(turned.set)
        holder = threading.Thread(target=hold)
        holder.start()
        held.wait(DEADLINE)
        store.record(game())  # on the loop's thread: nothing else runs until it returns
        assert lock.waited.is_set()
        assert not turned.is_set()  # ready all along, still not run
        await asyncio.wait_for(turned.wait(), DEADLINE)
        holder.join()

    asyncio.run(main())


# --- the game a session's end cuts short ---------------------------------------------


class ResettingPeer:
    """Lines from a peer that opens a game, asks for a number and resets the connection
    before the reply."""

    peer = "127.0.0.1:1"

    def __init__(self) -> None:
        self.incoming = ["PARAMS 1 5", "NUMBER"]

    def receive(self) -> str:
        return self.incoming.pop(0)

    def send(self, line: str) -> None:
        raise ConnectionResetError("reset by peer")

    def close(self) -> None:
        pass


class AsyncResettingPeer(ResettingPeer):
    async def receive(self) -> str:  # type: ignore[override]
        return ResettingPeer.receive(self)

    async def send(self, line: str) -> None:  # type: ignore[override]
        ResettingPeer.send(self, line)


def _closed_pool(played: Played) -> None:
    raise RuntimeError("cannot schedule new futures after shutdown")


async def _closed_pool_from_loop(played: Played) -> None:
    _closed_pool(played)


def test_a_failed_record_of_the_last_game_is_told_and_the_session_error_propagates(
        caplog: pytest.LogCaptureFixture) -> None:
    """The record runs in the session's `finally`: raised, its error would replace the
    session's own."""
    def keeper() -> Scorekeeper:
        return Scorekeeper("127.0.0.1:1", "none", lambda: "t", lambda: False)

    with pytest.raises(ConnectionResetError):
        threaded_session.Session(ResettingPeer(), Guesser(random.Random(1)),
                                 games=keeper(), record=_closed_pool).run()
    with pytest.raises(ConnectionResetError):
        asyncio.run(aio_session.Session(AsyncResettingPeer(), Guesser(random.Random(1)),
                                        games=keeper(), record=_closed_pool_from_loop).run())
    assert caplog.messages == ["127.0.0.1:1: game not recorded: cannot schedule new "
                               "futures after shutdown"] * 2


class ParkedPeer:
    """Lines from a peer that opens a game and then sends nothing."""

    peer = "127.0.0.1:1"

    def __init__(self) -> None:
        self.parked = asyncio.Event()
        self.sent = False

    async def receive(self) -> str:
        if not self.sent:
            self.sent = True
            return "PARAMS 1 5"
        self.parked.set()
        await asyncio.Event().wait()
        raise AssertionError("never set")

    async def send(self, line: str) -> None:
        pass

    async def close(self) -> None:
        pass


def test_a_second_cancel_while_an_async_session_records_its_last_game_loses_nothing() -> None:
    async def main() -> list[Played]:
        recorded: list[Played] = []
        recording, release, done = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def record(played: Played) -> None:
            recording.set()
            await release.wait()  # the store's worker is slow to take the call
            recorded.append(played)
            done.set()

        peer = ParkedPeer()
        session = aio_session.Session(
            peer, Guesser(random.Random(1)), record=record,
            games=Scorekeeper(peer.peer, "all", lambda: "t", lambda: False))
        task = asyncio.create_task(session.run())
        await asyncio.wait_for(peer.parked.wait(), DEADLINE)
        task.cancel()  # the server stops its sessions
        await asyncio.wait_for(recording.wait(), DEADLINE)
        task.cancel()  # and, impatient, once more
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        await asyncio.wait_for(done.wait(), DEADLINE)
        return recorded

    assert asyncio.run(main()) == [Played("127.0.0.1:1", "all", 1, 5, 0, "error", "t", "t")]


def test_the_store_runs_on_a_pool_of_its_own_that_retires_when_idle(tmp_path: Path) -> None:
    """Pitfall: on the loop's default executor, the store's calls would queue behind (or
    hold up) the host name lookups, and its threads would never leave. On its own pool,
    the worker is `blocking-results_N` and is gone once idle, as is the writer."""
    path = str(tmp_path / "r.sqlite3")
    settings = Settings(layers=Layers(True, True, True, True), worker_idle_timeout=0.2)
    seen: set[str] = set()
    original = results.Store.record_all

    def watching(self: results.Store, played: Sequence[Played]) -> None:
        seen.add(threading.current_thread().name)
        original(self, played)

    results.Store.record_all = watching  # type: ignore[method-assign]
    try:
        assert app.demo(settings, seed=1, out=io.StringIO(), results_path=path,
                        throwaway_results=False) == 0
    finally:
        results.Store.record_all = original  # type: ignore[method-assign]
    assert seen == {"blocking-results_0"}
    # The demo joined its pool and the writer (and the suite checks no thread leaked).
    assert not [t for t in threading.enumerate()
                if t.name.startswith(("blocking-", results.WRITER_NAME))]
    assert len(rows(path)) == 2


@pytest.mark.parametrize("stage", ["all-threads", "async-connection", "async-session",
                                   "async-server", "all-async"])
def test_demo_trace_shows_the_store_reached_through_run_in_executor_once_sessions_are_async(
        stage: str) -> None:
    done = subprocess.run([sys.executable, "-m", "guessgame", "demo", "--seed", "1", "-q",
                           "--trace", "--config", str(CONFIG), "--stage", stage],
                          capture_output=True, text=True, timeout=2 * UNIT)
    assert done.returncode == 0, done.stderr
    crossings = [line.split("\t")[-1] for line in done.stderr.splitlines()
                 if "Store.record" in line]
    async_sessions = stage in ("async-session", "async-server", "all-async")
    # The demo's two games cross in one batch, or in two if they end further apart
    # than recording.HANDOFF_DELAY.
    assert set(crossings) == ({"run_in_executor loop->thread Store.record_all"}
                              if async_sessions else set())
    assert len(crossings) <= 2


@pytest.mark.parametrize("value", ["5", '""', "true"])
def test_the_results_key_must_be_a_path(tmp_path: Path, value: str) -> None:
    assert_config_rejects(tmp_path, f"results = {value}", 'results must be a file path or "none"')


def test_serve_takes_the_results_path_from_the_flag_then_the_config_then_the_default(
        tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('[guessgame]\nresults = "kept.sqlite3"\n[stages]\nall-threads = []\n')
    configured = config.load(str(path))
    parser = cli.build_parser()
    pick = cli.results_path
    assert pick(parser.parse_args(["serve"]), Settings()) == results.DEFAULT_PATH
    assert pick(parser.parse_args(["serve"]), configured) == "kept.sqlite3"
    assert pick(parser.parse_args(["serve", "--results", "x"]), configured) == "x"
    assert pick(parser.parse_args(["serve", "--results", "none"]), configured) is None
    assert pick(parser.parse_args(["demo"]), configured) is None  # a throwaway store
    assert pick(parser.parse_args(["results"]), configured) == "kept.sqlite3"
