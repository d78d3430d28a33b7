"""Arbitrary lines and bytes: the server answers or closes as documented, and survives.

The expected replies come from the I/O-free core, fed the same bytes: framing, decoding
and the guesser decide every reply, so a stage whose layers add, drop or reorder a
line disagrees with it. Guesses are random, so a guess is compared as "some number in
the game's range"; every ERROR line is compared exactly.
"""

from __future__ import annotations

import random
import re

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from guessgame import protocol
from guessgame.config import Settings
from guessgame.live.host import ServerHost, serving
from guessgame.protocol import Guesser, ProtocolError
from peers import PROBE_REPLY, Peer

WORDS = ["PARAMS", "NUMBER", "REPORT", *protocol.DECISION_WORDS, "-1", "0", "1", "5",
         str(protocol.BOUND_LIMIT), str(protocol.BOUND_LIMIT + 1), "x", "", " "]

# Mostly lines near the grammar, where the state machine is; some raw bytes; now and
# then a line around the length limit. No newline inside a line: the list is the lines.
grammar_lines = st.lists(st.sampled_from(WORDS), max_size=4).map(lambda ws: " ".join(ws).encode())
raw_lines = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b""))
long_lines = st.integers(-3, 3).map(lambda delta: b"9" * (1023 + delta))
lines = st.one_of(grammar_lines, grammar_lines, raw_lines, long_lines)
inputs = st.tuples(st.lists(lines, max_size=12), st.one_of(st.just(b""), raw_lines))

NUMBER = re.compile(r"-?[0-9]+")


def expected_replies(sent: list[bytes], tail: bytes, limit: int) -> list[str | None]:
    """The core's replies to `sent` and then an unfinished `tail`; None stands for a guess."""
    guesser = Guesser(random.Random(0))
    replies: list[str | None] = []
    for raw in sent:
        try:
            # As the servers read: at most `limit` bytes at a time.
            bounded = (raw + b"\n")[:limit]
            step = guesser.handle(protocol.decode(protocol.frame(bounded, limit)))
        except ProtocolError as error:
            step = guesser.refuse(error)
        if step.reply is not None:
            replies.append(None if NUMBER.fullmatch(step.reply) else step.reply)
        if step.close:
            return replies
    if len(tail) >= limit:  # still too long even without its newline
        replies.append(protocol.error_line(protocol.LineTooLong(limit)))
    return replies  # a shorter unfinished line: the peer left mid-line, no reply


def check(server: ServerHost, sent: list[bytes], tail: bytes, limit: int) -> None:
    with Peer.to(server) as peer:
        peer.send(b"".join(line + b"\n" for line in sent) + tail)
        peer.half_close()  # ... and then the server must close: it has nothing more to read
        got = peer.read_all().decode().splitlines()
    expected = expected_replies(sent, tail, limit)
    assert len(got) == len(expected), (got, expected)
    for reply, wanted in zip(got, expected, strict=True):
        if wanted is None:
            assert NUMBER.fullmatch(reply), reply
        else:
            assert reply == wanted


def test_arbitrary_input_is_answered_as_documented(settings: Settings) -> None:
    with serving(settings) as server:

        @hypothesis_settings(max_examples=25, deadline=None, derandomize=True, database=None,
                             suppress_health_check=[HealthCheck.too_slow])
        @given(inputs)
        def fuzz(case: tuple[list[bytes], bytes]) -> None:
            check(server, *case, limit=settings.max_line_bytes)

        fuzz()
        with Peer.to(server) as peer:  # a well-formed game still works afterwards
            peer.send("PARAMS 1 3")
            guesses = {int(peer.ask("NUMBER")) for _ in range(3)}
            assert guesses == {1, 2, 3}
            assert peer.ask("NUMBER") == "ERROR every number from 1 to 3 has been guessed"
            assert peer.probe() == PROBE_REPLY
