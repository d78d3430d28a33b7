"""The client side of the protocol, with coroutines."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from guessgame import protocol
from guessgame.aio.connection import Lines
from guessgame.observe import trace
from guessgame.protocol import OURS, Decision, Game, Judge, Vocabulary


class Client:
    """Plays games over one connection: `game()`, then `guesses()` and `report()`."""

    def __init__(self, connection: Lines, vocabulary: Vocabulary = OURS) -> None:
        self._connection = connection
        self._vocabulary = vocabulary
        self._judge: Judge | None = None

    @contextlib.asynccontextmanager
    async def game(self, game: Game) -> AsyncIterator[Judge]:
        """Start a game on the server; the judge holds the rounds played so far."""
        if trace.enabled:
            trace.event("client", f"game {game.lower}..{game.upper}")
        await self._connection.send(game.params_line)
        self._judge = Judge(game, self._vocabulary)
        try:
            yield self._judge
        finally:
            self._judge = None

    async def guesses(self) -> AsyncIterator[int]:
        """Ask for guesses until the game's count runs out or one is correct."""
        judge = self._current()
        for _ in range(judge.game.guesses):
            await self._connection.send(protocol.NUMBER_REQUEST)
            yield judge.read_guess(await self._connection.receive())
            if judge.solved:
                return

    async def report(self, guess: int) -> Decision:
        judge = self._current()
        decision = judge.judge(guess)
        if trace.enabled:
            trace.event("client", f"report {guess} {decision.value}")
        await self._connection.send(judge.report_line(decision))
        return decision

    async def play(self, game: Game) -> list[tuple[int, Decision]]:
        async with self.game(game) as judge:
            async for guess in self.guesses():
                await self.report(guess)
        return judge.rounds

    def _current(self) -> Judge:
        if self._judge is None:
            raise RuntimeError("no game in progress: use `async with client.game(...)` first")
        return self._judge
