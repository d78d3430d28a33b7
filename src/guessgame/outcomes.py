"""What a game is and how it ended, as one row of results; no I/O.

A game starts with a PARAMS that opens a range, and ends at the first of:

- a `REPORT` of CORRECT: outcome `CORRECT`;
- another PARAMS, a new range or the empty one that clears it: `new-params`;
- the end of the session: `left` if the peer closed the connection, `stopped` if the
  server was stopping, `error` if a line closed the connection (a line too long, an
  idle timeout) or the session failed.

Its guesses are the NUMBER replies it drew. A PARAMS that opens no game (an empty
range) and a peer that leaves between games make no row.

Both session twins feed a `Scorekeeper` each Step that may start or end a game (the
core marks it, with the guesses it counted) and record the row it hands back, so they
cannot disagree on what a game was. Like protocol.py, this module reads no
clock: the time comes from the `now` it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from guessgame.protocol import GameStarted, Reported, Step

CORRECT: Final = "CORRECT"
NEW_PARAMS: Final = "new-params"
LEFT: Final = "left"
ERROR: Final = "error"
STOPPED: Final = "stopped"
OUTCOMES: Final = (CORRECT, NEW_PARAMS, LEFT, ERROR, STOPPED)


@dataclass(frozen=True)
class Played:
    """One finished game: a row of the `games` table."""

    peer: str
    stage: str
    """The layer label of the flavours that served it (`none`, `async-connection`...)."""
    lower: int
    upper: int
    guesses: int
    outcome: str
    started_at: str
    ended_at: str


class Scorekeeper:
    """The game in progress on one connection, turned into a row when it ends."""

    def __init__(self, peer: str, stage: str, now: Callable[[], str],
                 stopping: Callable[[], bool]) -> None:
        """`now` gives the time as a string; `stopping` says whether the server stops."""
        self._peer = peer
        self._stage = stage
        self._now = now
        self._stopping = stopping
        self._open: tuple[int, int, str] | None = None  # lower, upper, started_at

    def after(self, step: Step) -> Played | None:
        """The game the step ended, if it ended one. Only a step whose `game_guesses` is
        set can start or end a game, so the sessions pass no other."""
        guesses = step.game_guesses
        assert guesses is not None, "a step that starts or ends no game"
        event = step.event
        if type(event) is Reported:  # a CORRECT: the core sets game_guesses for no other
            return self._end(CORRECT, guesses)
        ended = self._end(NEW_PARAMS, guesses)
        if type(event) is GameStarted:
            self._open = (event.lower, event.upper, self._now())
        return ended

    def session_ended(self, how: str, guesses: int) -> Played | None:
        """The game the session's end cut short, after `guesses` NUMBER replies, if one
        was in progress; `how` is LEFT or ERROR, and STOPPED overrides it while the
        server stops."""
        return self._end(STOPPED if self._stopping() else how, guesses)

    def _end(self, outcome: str, guesses: int) -> Played | None:
        if self._open is None:
            return None
        (lower, upper, started), self._open = self._open, None
        return Played(self._peer, self._stage, lower, upper, guesses, outcome,
                      started, self._now())
