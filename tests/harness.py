"""Running the system's client side from a test, at any layer combination."""

from __future__ import annotations

from guessgame.bridge import Bridge
from guessgame.compose import Rounds, System
from guessgame.config import Settings
from guessgame.protocol import Game


def play(settings: Settings, port: int, games: tuple[Game, ...]) -> list[Rounds]:
    """Play `games` with the configured client and connection flavours, from this thread.

    A loop thread is started only if the client side has an async layer.
    """
    layers = settings.layers
    bridge = (Bridge.start_loop_thread(settings.max_workers)
              if layers.client or layers.connection else None)
    try:
        return System(settings, bridge).play_in_thread("127.0.0.1", port, games)
    finally:
        if bridge is not None:
            bridge.close()
