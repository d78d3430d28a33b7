"""Which flavours each new connection gets, and serving it on them.

A stage says which layers are async. `rollout = { session = 0.25 }` beside it, in the
`[guessgame]` table, gives a layer to a fraction of new connections instead: here a
quarter of them get the async session, the rest the threaded one. The choice is made
once, when the connection is accepted, and holds until it closes, so a game never
changes flavour halfway.

The choice is a function of the session's number alone: connection n gets a layer
async when frac(n * a) < fraction, with a different irrational `a` for each layer.
That spreads the async connections evenly (over any n connections the count is within
a few of n * fraction, not just on average) and keeps the layers independent of each
other. Two runs that accept connections in the same order choose the same flavours,
and a seeded run's transcript never depends on a flavour anyway.
"""

from __future__ import annotations

import dataclasses
import math
import socket
from typing import Final

from guessgame.bridge import Bridge
from guessgame.compose import System
from guessgame.config import ROLLOUT_LAYERS, Layers, Settings
from guessgame.live.flavour_stats import FlavourStats, Meter
from guessgame.live.recording import Recording
from guessgame.observe import trace
from guessgame.reports import Reports

STEPS: Final = {"connection": (math.sqrt(5) - 1) / 2, "session": math.sqrt(2) - 1}
"""Each layer's step through [0, 1); 1, phi and sqrt(2) are rationally independent."""


class Rollout:
    """Picks each connection's layers from a stage and its rollout fractions."""

    def __init__(self, layers: Layers, shares: dict[str, float]) -> None:
        unknown = set(shares) - set(ROLLOUT_LAYERS)
        if unknown:
            raise ValueError(f"layer {sorted(unknown)[0]!r} is not chosen per connection")
        self.layers = layers
        self.shares = shares

    @classmethod
    def of(cls, settings: Settings) -> Rollout:
        return cls(settings.layers, settings.rollout)

    def choose(self, number: int) -> Layers:
        """The layers of the `number`th connection (counting from 1)."""
        if not self.shares:
            return self.layers
        picked = {name: (number * STEPS[name]) % 1.0 < share
                  for name, share in self.shares.items()}
        return dataclasses.replace(self.layers, **picked)


def number_of(session_id: str) -> int:
    """The servers number their sessions `s1`, `s2`...; the number orders the choices."""
    digits = session_id.lstrip("s")
    return int(digits) if digits.isdigit() else 0


class PerConnection:
    """The function a server calls for each accepted socket: choose that connection's
    layers, count it for its flavours, and serve it on a System of those layers."""

    def __init__(self, settings: Settings, bridge: Bridge | None, reports: Reports | None,
                 seed: int | None, stats: FlavourStats | None,
                 recording: Recording | None = None) -> None:
        self._settings = settings
        self._recording = recording
        self._bridge = bridge
        self._reports = reports
        self._seed = seed
        self._stats = stats
        self._rollout = Rollout.of(settings)

    def _system(self, session_id: str) -> tuple[System, Meter | None]:
        layers = self._rollout.choose(number_of(session_id))
        trace.SESSION_ID.set(session_id)
        if trace.enabled and self._rollout.shares:
            trace.event("rollout", f"{session_id} runs {layers.label}")
        meter = None if self._stats is None else self._stats.session_started(layers)
        system = System(self._settings, self._bridge, self._reports, self._seed, layers, meter,
                        self._recording)
        return system, meter

    def serve_in_thread(self, sock: socket.socket, session_id: str) -> None:
        system, meter = self._system(session_id)
        try:
            system.serve_in_thread(sock, session_id)
        except Exception:  # the server logs it; count it against these flavours too
            if meter is not None:
                meter.failed()
            raise

    async def serve_in_task(self, sock: socket.socket, session_id: str) -> None:
        system, meter = self._system(session_id)
        try:
            await system.serve_in_task(sock, session_id)
        except Exception:
            if meter is not None:
                meter.failed()
            raise
