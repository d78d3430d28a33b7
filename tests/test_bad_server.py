"""`guessgame play` against a server that breaks the protocol: one line, exit 1."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from guessgame import cli
from guessgame.config import Layers
from harness import play_args
from peers import CONFIG, one_connection_server
from timing import UNIT

Behaviour = Callable[[socket.socket], None]


def read_until_number(conn: socket.socket) -> None:
    """Read what the client sends until it asks for a guess."""
    received = b""
    while b"NUMBER\n" not in received:
        chunk = conn.recv(1024)
        if not chunk:
            return
        received += chunk


def answer(data: bytes, then_close: bool = False) -> Behaviour:
    def behave(conn: socket.socket) -> None:
        read_until_number(conn)
        conn.sendall(data)
        if then_close:
            return
        while conn.recv(1024):  # until the client gives up and closes
            pass
    return behave


def close_early(conn: socket.socket) -> None:
    read_until_number(conn)


def close_at_once(conn: socket.socket) -> None:
    pass


BAD_SERVERS: dict[str, tuple[Behaviour, str]] = {
    # what the server does: (behaviour, the client's one line on stderr)
    "not a number": (answer(b"banana\n"), "guessgame: server sent 'banana', which is not a number"),
    "ERROR": (answer(b"ERROR go away\n"), "guessgame: server answered 'ERROR go away'"),
    "out of range": (answer(b"99\n"), "guessgame: server guessed 99, outside 1..5"),
    "not UTF-8": (answer(b"\xff\n"), "guessgame: server sent a line that is not valid UTF-8"),
    "line too long": (answer(b"7" * 2000 + b"\n"),
                      "guessgame: server sent a line longer than 1024 bytes"),
    "closes mid-line": (answer(b"4", then_close=True),
                        "guessgame: server closed the connection in the middle of a line"),
    "closes early": (close_early, "guessgame: server closed the connection"),
    "closes at once": (close_at_once, "guessgame: server closed the connection"),
}


def fake_server(behave: Behaviour) -> contextlib.AbstractContextManager[int]:
    """A one-connection server in a thread of this test, doing `behave` to its peer."""

    def handle(conn: socket.socket) -> None:
        # The client may reset us as it leaves; that is not under test.
        with contextlib.suppress(OSError):
            behave(conn)

    return one_connection_server(handle, "fake server")


def test_play_against_a_bad_server_prints_one_line(layers: Layers,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    outcomes, expected = {}, {}
    for bad, (behave, line) in BAD_SERVERS.items():
        with fake_server(behave) as port:
            code = cli.main(play_args(port, layers, "-q"))
        out, err = capsys.readouterr()
        outcomes[bad] = (code, err, out)
        expected[bad] = (cli.EXIT_FAILED, line + "\n", "")
    assert outcomes == expected


def test_play_against_a_silent_server_gives_up(layers: Layers, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    quick = tmp_path / "guessgame.toml"
    quick.write_text(CONFIG.read_text().replace("idle_timeout = 60.0", "idle_timeout = 0.05"))
    with fake_server(answer(b"")) as port:
        code = cli.main(play_args(port, layers, "-q", config=quick))
    out, err = capsys.readouterr()
    assert (code, err, out) == (
        cli.EXIT_FAILED, "guessgame: server sent nothing for 0.05 seconds\n", "")


def test_play_with_no_server_prints_one_line(layers: Layers,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as unused:
        port = unused.getsockname()[1]
    code = cli.main(play_args(port, layers, "-q"))
    out, err = capsys.readouterr()
    assert (code, err, out) == (
        cli.EXIT_FAILED, "guessgame: cannot reach the server: Connection refused\n", "")


@pytest.mark.parametrize("stage", [Layers(), Layers(True, True, True, True)],
                         ids=["none", "all"])
def test_the_command_fails_the_same_way(stage: Layers) -> None:
    """The real command, with leaks shown: stderr is the same one line, and nothing else."""
    behave, expected = BAD_SERVERS["not a number"]
    with fake_server(behave) as port:
        done = subprocess.run(
            [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-m", "guessgame",
             *play_args(port, stage, "-q")],
            capture_output=True, text=True, timeout=4 * UNIT,
            env=os.environ | {"PYTHONWARNINGS": "error::ResourceWarning"},
        )
    assert (done.returncode, done.stderr, done.stdout) == (cli.EXIT_FAILED, expected + "\n", "")
