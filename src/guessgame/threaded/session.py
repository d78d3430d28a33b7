"""The server side of the protocol for one connection, in a thread."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from guessgame import outcomes, protocol
from guessgame.observe import trace
from guessgame.outcomes import Played, Scorekeeper
from guessgame.protocol import Event, Guesser, PeerClosed, ProtocolError
from guessgame.threaded.connection import Lines

log = logging.getLogger("guessgame.session")


class Session:
    """Feeds each received line to the guesser and carries out the step it returns."""

    def __init__(self, connection: Lines, guesser: Guesser,
                 report: Callable[[Event], None] | None = None,
                 timed: Callable[[float, str], None] | None = None,
                 games: Scorekeeper | None = None,
                 record: Callable[[Played], None] | None = None) -> None:
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

    def run(self) -> None:
        """Serve until the peer leaves or a line forces the connection closed."""
        how = outcomes.ERROR
        try:
            while self._serve_line():
                pass
        except PeerClosed as gone:
            how = outcomes.LEFT
            log.info("%s: %s", self._connection.peer, protocol.farewell(self._guesser, gone))
        finally:
            if self._games is not None and (game := self._games.session_ended(
                    how, self._guesser.guesses)):
                self._record_last(game)

    def _record_last(self, game: Played) -> None:
        """Record the game the session's end cut short. A failure is logged in one line,
        not raised: in a `finally`, it would replace the session's own exception."""
        assert self._record is not None  # given together; not input validation
        try:
            self._record(game)
        except Exception as error:
            log.warning("%s: game not recorded: %s", self._connection.peer, error)

    def _serve_line(self) -> bool:
        asked = 0.0  # when the line was received, if it was and the replies are timed
        try:
            line = self._connection.receive()
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
            self._record(game)
        if step.reply is not None:
            self._connection.send(step.reply)
            if self._timed is not None:
                self._timed(asked, step.reply)
        if step.close:
            log.info("%s: closing: %s", self._connection.peer, step.reply)
        return not step.close
