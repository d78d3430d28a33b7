"""Bad input gets the same one-line answer at every layer combination.

Each expected reply is built here from the protocol's own constants, once; every
combination is compared with this one table, so the answers are identical across
combinations by construction of the test.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading

from guessgame.config import Settings
from guessgame.live.host import serving
from guessgame.protocol import BOUND_LIMIT, REFUSALS
from peers import PROBE_REPLY, Peer, eventually, peers
from timing import UNIT

# (what is wrong, lines that set the state up, the bad line, its one reply)
PROTOCOL_ERRORS: list[tuple[str, tuple[str, ...], bytes, str]] = [
    ("unknown command", (), b"HELLO", "ERROR unknown command 'HELLO'"),
    ("unknown command, lower case", (), b"params 1 5", "ERROR unknown command 'params'"),
    ("too few arguments", (), b"PARAMS 1", "ERROR PARAMS takes 2 argument(s), got 1"),
    ("too many arguments", (), b"PARAMS 1 2 3", "ERROR PARAMS takes 2 argument(s), got 3"),
    ("argument to NUMBER", ("PARAMS 1 5",), b"NUMBER 5",
     "ERROR NUMBER takes 0 argument(s), got 1"),
    ("REPORT without a word", (), b"REPORT", "ERROR REPORT takes 1 argument(s), got 0"),
    ("double space", (), b"PARAMS 1  5", "ERROR PARAMS takes 2 argument(s), got 3"),
    ("non-integer bound", (), b"PARAMS one 5", "ERROR bound 'one' is not an integer"),
    ("decimal bound", (), b"PARAMS 1 5.0", "ERROR bound '5.0' is not an integer"),
    ("underscored bound", (), b"PARAMS 1 1_0", "ERROR bound '1_0' is not an integer"),
    ("bound of many digits", (), b"PARAMS 1 " + b"9" * 4400,  # int() refuses > 4300
     f"ERROR bound {'9' * 40}... is outside -{BOUND_LIMIT}..{BOUND_LIMIT}"),
    ("bound with leading zeros", (), b"PARAMS 1 0000000000001000000001",
     f"ERROR bound {BOUND_LIMIT + 1} is outside -{BOUND_LIMIT}..{BOUND_LIMIT}"),
    ("lower > upper", (), b"PARAMS 5 1", "ERROR lower bound 5 is greater than upper bound 1"),
    # hi == lo - 1 is the empty range that clears a game; one further down means nothing.
    ("lower > upper + 1", (), b"PARAMS 0 -2", "ERROR lower bound 0 is greater than upper bound -2"),
    ("bound above the limit", (), f"PARAMS 1 {BOUND_LIMIT + 1}".encode(),
     f"ERROR bound {BOUND_LIMIT + 1} is outside -{BOUND_LIMIT}..{BOUND_LIMIT}"),
    ("bound below the limit", (), f"PARAMS {-BOUND_LIMIT - 1} 1".encode(),
     f"ERROR bound {-BOUND_LIMIT - 1} is outside -{BOUND_LIMIT}..{BOUND_LIMIT}"),
    ("NUMBER before PARAMS", (), b"NUMBER", f"ERROR {REFUSALS['NUMBER']}"),
    ("REPORT with no game", (), b"REPORT WARMER", f"ERROR {REFUSALS['REPORT']}"),
    ("REPORT before NUMBER", ("PARAMS 1 5",), b"REPORT WARMER", f"ERROR {REFUSALS['REPORT']}"),
    ("unknown decision", ("PARAMS 1 5", "NUMBER"), b"REPORT HOTTER",
     "ERROR unknown decision 'HOTTER'"),
    ("decision in no dialect's case", ("PARAMS 1 5", "NUMBER"), b"REPORT warmer",
     "ERROR unknown decision 'warmer'"),
    # The empty range draws no reply (else it would be read here) and ends the game.
    ("NUMBER after an empty range", ("PARAMS 1 5", "NUMBER", "PARAMS 0 -1"), b"NUMBER",
     f"ERROR {REFUSALS['NUMBER']}"),
    ("REPORT after an empty range", ("PARAMS 1 5", "NUMBER", "PARAMS 0 -1"), b"REPORT Correct",
     f"ERROR {REFUSALS['REPORT']}"),
    ("range used up", ("PARAMS 7 7", "NUMBER", "REPORT COLDER"), b"NUMBER",
     "ERROR every number from 7 to 7 has been guessed"),
    ("empty line", (), b"", "ERROR empty line"),
    ("blank line", (), b"  \t ", "ERROR empty line"),
    ("CRLF empty line", (), b"\r", "ERROR empty line"),
    ("not UTF-8", (), b"PARAMS \xff 5", "ERROR line is not valid UTF-8"),
    ("not UTF-8 in a game", ("PARAMS 1 5", "NUMBER"), b"REPORT \xc3",
     "ERROR line is not valid UTF-8"),
]
EXPECTED = [(name, reply, PROBE_REPLY) for name, _, _, reply in PROTOCOL_ERRORS]


def transcript(peer: Peer, *, dribble: bool) -> list[tuple[str, str, list[str]]]:
    """Each bad line's reply, and what a one-number game on the same connection gets next."""
    seen = []
    for name, setup, bad, _ in PROTOCOL_ERRORS:
        peer.exchange(setup)
        if dribble:
            peer.dribble(bad + b"\n")
        else:
            peer.send(bad + b"\n")
        seen.append((name, peer.line(), peer.probe()))
    return seen


def test_each_protocol_error_gets_one_line_and_the_session_goes_on(settings: Settings) -> None:
    roomy = settings.with_options(max_line_bytes=8192)  # room for the many-digit bound
    with serving(roomy) as server, Peer.to(server) as whole, Peer.to(server) as dribbled:
        assert transcript(whole, dribble=False) == EXPECTED
        assert transcript(dribbled, dribble=True) == EXPECTED


CORE_UNDER_O = """
import json, random, sys
from guessgame import protocol
for setup, bad in json.load(sys.stdin):
    guesser = protocol.Guesser(random.Random(0))
    for line in setup:
        guesser.handle(line)
    try:
        print(guesser.handle(protocol.decode(bytes.fromhex(bad) + b"\\n")).reply)
    except protocol.ProtocolError as error:
        print(guesser.refuse(error).reply)
"""


def test_python_O_answers_the_same() -> None:
    """Input is checked by code, not by assert, so `python -O` refuses it all the same."""
    cases = [(setup, bad.hex()) for _, setup, bad, _ in PROTOCOL_ERRORS]
    done = subprocess.run([sys.executable, "-O", "-c", CORE_UNDER_O], input=json.dumps(cases),
                          capture_output=True, text=True, timeout=4 * UNIT,
                          check=True)
    assert done.stdout.splitlines() == [reply for _, _, _, reply in PROTOCOL_ERRORS]


# --- limits: answer, then close ------------------------------------------------------


def too_long_reply(settings: Settings) -> str:
    return f"ERROR line longer than {settings.max_line_bytes} bytes"


def test_a_line_of_exactly_the_limit_is_served(settings: Settings) -> None:
    limit = settings.max_line_bytes
    head, tail = "PARAMS 1 ", "1"
    longest = head + "0" * (limit - len(head) - len(tail) - 1) + tail  # + newline = limit
    with serving(settings) as server, Peer.to(server) as peer:
        peer.send(longest)
        assert peer.ask("NUMBER") == "1"


def test_a_line_over_the_limit_is_answered_then_closed(settings: Settings) -> None:
    # One byte over: `limit` bytes and no newline yet. The server decides at that byte,
    # so a byte-by-byte sender is never cut off mid-send.
    head = b"PARAMS 1 "
    over = head + b"9" * (settings.max_line_bytes - len(head))
    with serving(settings) as server:
        for send in (Peer.send, Peer.dribble):
            with Peer.to(server) as peer:
                send(peer, over)
                assert peer.line() == too_long_reply(settings)
                assert peer.closed_by_server()
        with Peer.to(server) as other:
            assert other.probe() == PROBE_REPLY


def test_a_huge_line_is_not_buffered(settings: Settings) -> None:
    """The server stops reading at the limit and closes: a sender of 64 MiB gets an error
    long before it is done, whatever the socket buffers hold."""
    chunk, most = b"x" * 65536, 64 * 1024 * 1024
    failure: list[OSError] = []

    def flood(sock: socket.socket) -> None:
        try:
            for _ in range(most // len(chunk)):
                sock.sendall(chunk)
        except OSError as error:
            failure.append(error)

    with serving(settings) as server, Peer.to(server) as peer:
        sender = threading.Thread(target=flood, args=(peer.sock,), name="flood")
        sender.start()
        try:
            reply = peer.read_all()
        finally:
            sender.join()
        assert reply == (too_long_reply(settings) + "\n").encode()
        assert failure, "the server took all 64 MiB of one line"


def test_an_idle_connection_is_answered_then_closed(settings: Settings) -> None:
    idle = settings.with_options(idle_timeout=0.05)
    with serving(idle) as server:
        with Peer.to(server) as quiet, Peer.to(server) as busy:
            busy.send("PARAMS 1 1")  # a game in progress does not keep a quiet peer open
            assert quiet.line() == "ERROR no command for 0.05 seconds; closing the connection"
            assert quiet.closed_by_server()
        with Peer.to(server) as other:
            assert other.probe() == PROBE_REPLY


def test_debug_mode_turns_the_idle_timeout_off(settings: Settings) -> None:
    """A peer left idle past the timeout is still served when debug is on.

    The debugged server's peer connects first; once the other server has timed out
    its own, later peer, the first has been idle longer than the timeout.
    """
    idle = settings.with_options(idle_timeout=0.05)
    with (serving(idle.with_options(debug=True)) as debugged, serving(idle) as plain,
          Peer.to(debugged) as paused):
        with Peer.to(plain) as reference:
            assert reference.line().startswith("ERROR no command for")
        assert paused.probe() == PROBE_REPLY


def test_past_the_connection_limit_new_peers_are_refused(settings: Settings) -> None:
    limited = settings.with_options(max_connections=2)
    refusal = "ERROR server is full (2 connections); try again later"
    with serving(limited) as server, peers(server, 2) as (first, second):
        first.send("PARAMS 1 5")
        assert first.ask("NUMBER").isdigit()  # mid-game while others are refused
        assert second.probe() == PROBE_REPLY
        for _ in range(3):
            with Peer.to(server) as refused:
                assert refused.line() == refusal
                assert refused.closed_by_server()
        assert first.ask("NUMBER").isdigit()
        assert second.probe() == PROBE_REPLY
        second.close()
        eventually(lambda: server.open_sessions == 1, "the second session to end")
        with Peer.to(server) as third:
            assert third.probe() == PROBE_REPLY
