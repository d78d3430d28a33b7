"""The results store against faults and stops: another process locking the database, a
full disk, serve stopped by SIGTERM, reloaded by SIGHUP, killed by SIGKILL, and two
serve processes on one file. The clients are separate processes written the plain way."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guessgame import results
from guessgame.live import recording
from guessgame.outcomes import Played
from live import LiveServe, config_text, live_serve
from peers import DEADLINE, eventually
from timing import UNIT

STAGES = ("all-threads", "async-connection", "async-session", "async-server", "all-async")

CLIENT = r"""
import json, socket, sys, time
port, games, leave_open = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
played = guesses = 0
ended = []
with socket.create_connection(("127.0.0.1", port)) as sock:
    lines = sock.makefile("rw", encoding="utf-8", newline="\n")
    for _ in range(games):
        lines.write("PARAMS 1 3\n")
        while True:
            lines.write("NUMBER\n"); lines.flush()
            guess = int(lines.readline()); guesses += 1
            if guess == 2:
                lines.write("REPORT CORRECT\n"); lines.flush()
                break
            lines.write("REPORT UNSURE\n")
        played += 1
        ended.append(time.time())
    if leave_open:  # a game in progress, until the server stops
        lines.write("PARAMS 1 9\nNUMBER\n"); lines.flush()
        lines.readline()
        print(json.dumps({"played": played, "guesses": guesses, "ended": ended}), flush=True)
        lines.readline()  # the server's close
    else:
        print(json.dumps({"played": played, "guesses": guesses, "ended": ended}), flush=True)
"""


def game(n: int) -> Played:
    return Played(f"p{n}", "none", 1, 5, 2, "CORRECT", "t0", "t1")


def count(path: Path | str, where: str = "1") -> int:
    connection = sqlite3.connect(path)
    try:
        found: int = connection.execute(f"SELECT COUNT(*) FROM games WHERE {where}").fetchone()[0]
        return found
    finally:
        connection.close()


def clients(port: int, processes: int, games: int, leave_open: bool = False
            ) -> list[subprocess.Popen[str]]:
    return [subprocess.Popen([sys.executable, "-c", CLIENT, str(port), str(games),
                              "1" if leave_open else "0"], stdout=subprocess.PIPE, text=True)
            for _ in range(processes)]


def played(client: subprocess.Popen[str]) -> dict[str, object]:
    assert client.stdout is not None
    line = client.stdout.readline()
    assert line, "the client printed nothing"
    result: dict[str, object] = json.loads(line)
    return result


# --- faults while running ------------------------------------------------------------

LOCKER = r"""
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
connection.execute("COMMIT")
"""


def test_a_database_locked_by_another_process_delays_the_games_and_loses_none(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = str(tmp_path / "r.sqlite3")
    results.prepare(path)
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, path], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert locker.stdout is not None and locker.stdin is not None
    assert locker.stdout.readline() == "locked\n"
    store = results.Store(path, idle_timeout=0.2, bound=20)
    try:
        started = time.monotonic()
        for n in range(25):
            store.record(game(n))
        # RECORD_WAIT in all once the buffer is full, not per game, whatever the lock.
        assert time.monotonic() - started < 2 * results.RECORD_WAIT + UNIT / 10
        assert store.dropped == 5
        eventually(lambda: "database is locked" in caplog.text, "the failed write's warning")
        assert not store.flush(0.1)  # still locked
        locker.stdin.write("\n")
        locker.stdin.flush()
        assert locker.wait(timeout=DEADLINE) == 0
        assert store.flush(DEADLINE)
    finally:
        store.close()
        if locker.poll() is None:
            locker.kill()
            locker.wait()
        for stream in (locker.stdin, locker.stdout):
            stream.close()
    assert count(path) == 20
    assert "Traceback" not in caplog.text


class FullDisk(results.Store):
    """A store whose file may grow to `pages` pages: a disk that fills up."""

    pages = 1

    def _connect(self) -> sqlite3.Connection:
        connection = super()._connect()
        connection.execute(f"PRAGMA max_page_count = {self.pages}")
        return connection


def test_a_full_disk_keeps_the_games_buffered_until_there_is_room(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = str(tmp_path / "r.sqlite3")
    results.prepare(path)
    store = FullDisk(path, idle_timeout=0.2)
    store.pages = 2  # the schema's pages: not one more
    try:
        for n in range(300):
            store.record(game(n))
        eventually(lambda: "database or disk is full" in caplog.text, "the disk-full warning")
        assert count(path) == 0
        store.pages = 1000  # room again: the next try, on a fresh connection, succeeds
        assert store.flush(DEADLINE)
    finally:
        store.close()
    assert count(path) == 300 and store.dropped == 0


# --- serve: stops, reloads, kills ----------------------------------------------------


# The last: a threaded server whose sessions a rollout made async, each of whose last
# games waits on the loop's side when the server stops, as at the async-session stages.
@pytest.mark.parametrize(("stage", "rollout"), [*((stage, None) for stage in STAGES),
                                                ("all-threads", "{ session = 1.0 }")],
                         ids=[*STAGES, "all-threads+rollout-session"])
def test_sigterm_leaves_exactly_the_games_played(tmp_path: Path, stage: str,
                                                 rollout: str | None) -> None:
    path = tmp_path / "r.sqlite3"
    with live_serve(tmp_path / "g.toml", config_text(stage, rollout), "--results", str(path),
                    "--no-reports") as server:
        finished = clients(server.port, 3, 4)
        open_game = clients(server.port, 1, 1, leave_open=True)
        done = [played(client) for client in finished + open_game]
        for client in finished:
            assert client.wait(timeout=DEADLINE) == 0
    for client in open_game:
        assert client.wait(timeout=DEADLINE) == 0
    for client in finished + open_game:
        assert client.stdout is not None
        client.stdout.close()
    assert count(path, "outcome = 'CORRECT'") == sum(int(str(d["played"])) for d in done) == 13
    assert count(path, "outcome = 'stopped'") == 1
    assert count(path) == 14
    guesses = sum(int(str(d["guesses"])) for d in done)
    connection = sqlite3.connect(path)
    try:
        recorded = connection.execute(
            "SELECT SUM(guesses) FROM games WHERE outcome = 'CORRECT'").fetchone()[0]
        cut = connection.execute(
            "SELECT lower, upper, guesses FROM games WHERE outcome = 'stopped'").fetchall()
        stages = {row[0] for row in connection.execute("SELECT DISTINCT stage FROM games")}
    finally:
        connection.close()
    assert recorded == guesses
    assert cut == [(1, 9, 1)]  # the game in progress: one guess drawn when it stopped
    assert len(stages) == 1


def test_every_game_is_recorded_once_through_reloads(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    total = 0
    with live_serve(tmp_path / "g.toml", config_text(STAGES[0]), "--results", str(path),
                    "--no-reports") as server:
        for stage in (*STAGES[1:], STAGES[0]):
            batch = clients(server.port, 2, 3)
            server.reload(config_text(stage))
            total += sum(int(str(played(client)["played"])) for client in batch)
            for client in batch:
                assert client.wait(timeout=DEADLINE) == 0
                assert client.stdout is not None
                client.stdout.close()
        before = len(server.log())
        server.flavours()  # SIGUSR2: the store's line follows the flavour table
        shown = server.wait_for_line(lambda line: line.startswith("guessgame: results "),
                                     "the store's line", before)
        written, waiting, dropped = (int(word) for word in shown.split() if word.isdigit())
        assert (written + waiting, dropped) == (30, 0), shown
    assert count(path) == count(path, "outcome = 'CORRECT'") == total == 30


def test_two_serve_processes_on_one_file_both_record_everything(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    with live_serve(tmp_path / "a.toml", config_text("all-threads"), "--results", str(path),
                    "--no-reports") as first, \
            live_serve(tmp_path / "b.toml", config_text("all-async"), "--results", str(path),
                       "--no-reports") as second:
        batch = clients(first.port, 3, 5) + clients(second.port, 3, 5)
        for client in batch:
            played(client)
            assert client.wait(timeout=DEADLINE) == 0
            assert client.stdout is not None
            client.stdout.close()
    assert count(path, "stage = 'none'") == count(path, "stage = 'all'") == 15


def test_kill_9_loses_at_most_the_games_of_the_last_flush_interval(tmp_path: Path) -> None:
    """Measured: every game that ended more than HANDOFF_DELAY (async sessions gather
    their games on the loop's side) plus FLUSH_INTERVAL, plus the time a write takes,
    before SIGKILL is in the database; `-s` prints the figure."""
    path = tmp_path / "r.sqlite3"
    server = LiveServe(_written(tmp_path / "k.toml", config_text("async-session")),
                       "--results", str(path), "--no-reports")
    try:
        batch = clients(server.port, 2, 40)
        ended = [float(t) for client in batch
                 for t in played(client)["ended"]]  # type: ignore[attr-defined]
        server.process.send_signal(signal.SIGKILL)
        killed = time.time()
        server.process.wait(timeout=DEADLINE)
    finally:
        server.stop()
        for client in batch:
            client.wait(timeout=DEADLINE)
            assert client.stdout is not None
            client.stdout.close()
    recorded = count(path)
    missing = sorted(ended)[recorded:]  # written in the order they ended, oldest first
    oldest_lost = killed - missing[0] if missing else 0.0
    print(f"kill -9: {len(missing)} of {len(ended)} games lost, the oldest ended "
          f"{oldest_lost * 1000:.0f} ms before the kill")
    # Besides the interval: the write in progress, and the server reading the last lines
    # after the client sent them, which a loaded machine stretches.
    assert oldest_lost <= recording.HANDOFF_DELAY + results.FLUSH_INTERVAL + UNIT / 10


def _written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


RECONNECTING = r"""
import json, socket, sys, threading
port, players = int(sys.argv[1]), int(sys.argv[2])
stop, played, errors = threading.Event(), [0] * players, []
def play(me):
    try:
        while not stop.is_set():  # one game per connection
            with socket.create_connection(("127.0.0.1", port)) as sock:
                lines = sock.makefile("rw", encoding="utf-8", newline="\n")
                lines.write("PARAMS 1 3\n")
                while True:
                    lines.write("NUMBER\n"); lines.flush()
                    if int(lines.readline()) == 2:
                        break
                    lines.write("REPORT UNSURE\n")
                lines.write("REPORT CORRECT\n"); lines.flush()
                played[me] += 1
    except Exception as error:
        errors.append(repr(error))
threads = [threading.Thread(target=play, args=(me,)) for me in range(players)]
for thread in threads:
    thread.start()
print("playing", flush=True)
sys.stdin.readline()
stop.set()
for thread in threads:
    thread.join()
print(json.dumps({"played": sum(played), "errors": errors}), flush=True)
"""


def test_20_reloads_through_every_stage_with_40_clients_reconnecting_record_each_game_once(
        tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    cycle = [*STAGES, *STAGES[-2:0:-1]]  # all-threads ... all-async ... async-connection
    with live_serve(tmp_path / "g.toml", config_text(STAGES[0]), "--results", str(path),
                    "--no-reports") as server:
        players = subprocess.Popen([sys.executable, "-c", RECONNECTING, str(server.port), "40"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert players.stdin is not None and players.stdout is not None
        try:
            assert players.stdout.readline() == "playing\n"
            for step in range(1, 21):
                server.reload(config_text(cycle[step % len(cycle)]))
            players.stdin.write("\n")
            players.stdin.flush()
            outcome = json.loads(players.stdout.readline())
            assert players.wait(timeout=DEADLINE) == 0
        finally:
            if players.poll() is None:
                players.kill()
                players.wait()
            players.stdin.close()
            players.stdout.close()
    assert outcome["errors"] == []
    assert outcome["played"] > 40
    assert count(path) == count(path, "outcome = 'CORRECT'") == outcome["played"]
    connection = sqlite3.connect(path)
    try:
        stages = connection.execute("SELECT COUNT(DISTINCT stage) FROM games").fetchone()[0]
    finally:
        connection.close()
    assert stages == len(STAGES)  # each generation served some of the games
