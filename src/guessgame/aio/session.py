"""The server side of the protocol for one connection, in a task."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from guessgame import outcomes, protocol
from guessgame.aio.connection import Lines
from guessgame.observe import trace
from guessgame.outcomes import Played, Scorekeeper
from guessgame.protocol import Event, Guesser, PeerClosed, ProtocolError

log = logging.getLogger("guessgame.session")

TURN_LINES = 16
"""Lines a session serves before it lets the other tasks run, whether or not it had to
wait for any of them."""


class Session:
    """Feeds each received line to the guesser and carries out the step it returns."""

    def __init__(self, connection: Lines, guesser: Guesser,
                 report: Callable[[Event], None] | None = None,
                 timed: Callable[[float, str], None] | None = None,
                 games: Scorekeeper | None = None,
                 record: Callable[[Played], Awaitable[None]] | None = None) -> None:
        """`report` gets each game event; `timed`, after each reply is sent, the
        time.perf_counter() at which the line it answers was received (0.0 for a line
        that could not be read), and the reply; `games` turns the steps into finished
        games, which go to `record`."""
        self._connection = connection
        self._guesser = guesser
        self._report = report
        self._timed = timed
        self._games = games
        self._record = record
        self._served = 0

    async def run(self) -> None:
        """Serve until the peer leaves or a line forces the connection closed."""
        how = outcomes.ERROR
        try:
            while await self._serve_line():
                pass
        except PeerClosed as gone:
            how = outcomes.LEFT
            log.info("%s: %s", self._connection.peer, protocol.farewell(self._guesser, gone))
        finally:
            if self._games is not None and (game := self._games.session_ended(
                    how, self._guesser.guesses)):
                # Shielded: a second cancel leaves the record to finish, not lost.
                await asyncio.shield(self._record_last(game))

    async def _record_last(self, game: Played) -> None:
        """Record the game the session's end cut short. A failure is logged in one line,
        not raised: in a `finally`, it would replace the session's own exception."""
        assert self._record is not None  # given together; not input validation
        try:
            await self._record(game)
        except Exception as error:
            log.warning("%s: game not recorded: %s", self._connection.peer, error)

    async def _serve_line(self) -> bool:
        asked = 0.0  # when the line was received, if it was and the replies are timed
        try:
            line = await self._connection.receive()
        except ProtocolError as error:
            step = self._guesser.refuse(error)
        else:
            if self._timed is not None:
                asked = time.perf_counter()
            step = self._guesser.handle(line)
        if step.event is not None:
            if trace.enabled:
                trace.event("session", protocol.describe(step.event))
            if self._report is not None:
                self._report(step.event)
        if step.game_guesses is not None and self._games is not None and (
                game := self._games.after(step)):
            assert self._record is not None
            await self._record(game)
        if step.reply is not None:
            await self._connection.send(step.reply)
            if self._timed is not None:
                self._timed(asked, step.reply)
        # A line read from the buffer and a reply that fits the socket's buffer
        # complete without suspending, so a peer that sends many lines at once would
        # keep the loop from everyone else; since 3.12 more awaits complete eagerly.
        # Yielding after every line cost a loop turn per line; a peer that waits for
        # each reply yields in receive() anyway, so a turn every TURN_LINES is enough.
        self._served += 1
        if self._served % TURN_LINES == 0:
            await asyncio.sleep(0)
        if step.close:
            log.info("%s: closing: %s", self._connection.peer, step.reply)
        return not step.close
