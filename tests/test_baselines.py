"""The bench's minimal servers play the same game as the system, to peers it did not write.

A yardstick that played a different game, or dropped a peer, would make every ratio
`guessgame bench` reports wrong. Each baseline runs as the bench runs it, in its own
process, and is played by a client that behaves like the book's and by a plain one.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import booklike
from peers import DEADLINE
from timing import UNIT

KINDS = ("threads", "streams", "mixed")


@contextmanager
def baseline(kind: str) -> Iterator[int]:
    server = subprocess.Popen(
        [sys.executable, "-m", "guessgame.bench.baselines", kind, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert server.stdout is not None
        first = server.stdout.readline().decode()
        assert first.startswith("listening on "), first
        yield int(first.rsplit(":", 1)[1])
    finally:
        server.terminate()
        _, err = server.communicate(timeout=UNIT)
        assert b"Traceback" not in err, err.decode()


def plain_game(sock: socket.socket, lines: list[str]) -> list[str]:
    """Send each line as a plain client would, one write each, and read a reply for
    every NUMBER and for the line expected to be refused."""
    replies = []
    with sock.makefile("rb") as file:
        for line in lines:
            sock.sendall(line.encode() + b"\n")
            if line == "NUMBER" or not line.startswith(("PARAMS", "REPORT")):
                replies.append(file.readline().decode().rstrip("\n"))
    return replies


@pytest.mark.parametrize("kind", KINDS)
def test_a_baseline_plays_the_books_client_to_the_end(kind: str) -> None:
    with baseline(kind) as port:
        results = booklike.run_book_client(port)
    assert len(results) == len(booklike.GAMES)
    for (lower, upper, secret), game in zip(booklike.GAMES, results, strict=True):
        guesses = [number for number, _ in game]
        assert len(set(guesses)) == len(guesses), f"a guess repeated in {game}"
        assert all(lower <= number <= upper for number in guesses), game
        words = [word for _, word in game]
        assert (booklike.CORRECT in words) == (secret in guesses), game


@pytest.mark.parametrize("kind", KINDS)
def test_a_baseline_answers_bad_lines_and_outlives_a_peer_that_vanishes(kind: str) -> None:
    with baseline(kind) as port:
        # One peer leaves in the middle of a game, one line half sent.
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as gone:
            assert plain_game(gone, ["PARAMS 1 3", "NUMBER"])[0] in {"1", "2", "3"}
            gone.sendall(b"REPO")
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
            replies = plain_game(sock, ["HELLO", "PARAMS 1 3", "NUMBER", "REPORT UNSURE",
                                        "NUMBER", "REPORT UNSURE", "NUMBER"])
    assert replies[0] == "ERROR unknown command 'HELLO'"
    assert sorted(replies[1:]) == ["1", "2", "3"], "three numbers, none repeated"
