"""The client side of the protocol, with blocking calls."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from guessgame import protocol
from guessgame.observe import trace
from guessgame.protocol import OURS, Decision, Game, Judge, Vocabulary
from guessgame.threaded.connection import Lines


class Client:
    """Plays games over one connection: `game()`, then `guesses()` and `report()`."""

    def __init__(self, connection: Lines, vocabulary: Vocabulary = OURS) -> None:
        self._connection = connection
        self._vocabulary = vocabulary
        self._judge: Judge | None = None

    @contextlib.contextmanager
    def game(self, game: Game) -> Iterator[Judge]:
        """Start a game on the server; the judge holds the rounds played so far."""
        if trace.enabled:
            trace.event("client", f"game {game.lower}..{game.upper}")
        self._connection.send(game.params_line)
        self._judge = Judge(game, self._vocabulary)
        try:
            yield self._judge
        finally:
            self._judge = None

    def guesses(self) -> Iterator[int]:
        """Ask for guesses until the game's count runs out or one is correct."""
        judge = self._current()
        for _ in range(judge.game.guesses):
            self._connection.send(protocol.NUMBER_REQUEST)
            yield judge.read_guess(self._connection.receive())
            if judge.solved:
                return

    def report(self, guess: int) -> Decision:
        judge = self._current()
        decision = judge.judge(guess)
        if trace.enabled:
            trace.event("client", f"report {guess} {decision.value}")
        self._connection.send(judge.report_line(decision))
        return decision

    def play(self, game: Game) -> list[tuple[int, Decision]]:
        with self.game(game) as judge:
            for guess in self.guesses():
                self.report(guess)
        return judge.rounds

    def _current(self) -> Judge:
        if self._judge is None:
            raise RuntimeError("no game in progress: use `with client.game(...)` first")
        return self._judge
