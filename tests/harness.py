"""Running the system's client side from a test, at any layer combination."""

from __future__ import annotations

from guessgame.bridge import loop_thread
from guessgame.compose import Rounds, System
from guessgame.config import CLIENT_LAYERS, Settings
from guessgame.protocol import OURS, Game, Vocabulary


def play(settings: Settings, port: int, games: tuple[Game, ...], host: str = "127.0.0.1",
         words: Vocabulary = OURS) -> list[Rounds]:
    """Play `games` with the configured client and connection flavours, from this thread.

    A loop thread is started only if the client side has an async layer.
    """
    with loop_thread(settings, CLIENT_LAYERS) as bridge:
        return System(settings, bridge).play_in_thread(host, port, games, words)
