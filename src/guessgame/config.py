"""The migration stages and settings, read from a TOML file.

The file names the stages of the migration path and which layers are async at each,
and says which stage the system runs at now. Every error here is a ConfigError with
one line that names the file and says what would have been valid.
"""

from __future__ import annotations

import itertools
import math
import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from guessgame.protocol import MAX_LINE_BYTES

LAYERS: Final = ("connection", "session", "client", "server")
SERVER_LAYERS: Final = ("connection", "session", "server")
"""The layers a server process runs; the client layer is not among them."""
CLIENT_LAYERS: Final = ("connection", "client")
ROLLOUT_LAYERS: Final = ("connection", "session")
"""The layers a server picks anew for each connection, so they can be rolled out gradually;
the server layer is one acceptor, and the client layer is not the server's."""
CONFIG_ENV: Final = "GUESSGAME_CONFIG"
DEFAULT_NAME: Final = "guessgame.toml"
PACKAGED: Final = Path(__file__).with_name("default.toml")


class ConfigError(Exception):
    """A bad config file, stage or layer list. The CLI prints it and exits 2."""


@dataclass(frozen=True)
class Layers:
    """Which of the four layers are written with asyncio; the rest use threads."""

    connection: bool = False
    session: bool = False
    client: bool = False
    server: bool = False

    @classmethod
    def parse(cls, text: str, source: str = "--async") -> Layers:
        """`none`, `all`, or a comma-separated subset of the layer names."""
        words = [w.strip() for w in text.split(",") if w.strip()]
        if words == ["none"]:
            return cls()
        if words == ["all"]:
            return cls(True, True, True, True)
        return cls.of(words, source)

    @classmethod
    def of(cls, names: Any, source: str) -> Layers:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{source}: expected a list of layer names from {', '.join(LAYERS)}")
        unknown = sorted(set(names) - set(LAYERS))
        if unknown:
            raise ConfigError(
                f"{source}: unknown layer {unknown[0]!r}; valid layers are "
                f"{', '.join(LAYERS)}, or none or all"
            )
        return cls(**{name: True for name in names})

    @classmethod
    def every(cls) -> list[Layers]:
        """All 16 combinations, from all threads to all async."""
        return [cls(*bits) for bits in itertools.product((False, True), repeat=4)]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name in LAYERS if getattr(self, name))

    @property
    def label(self) -> str:
        """A readable id for test names: `none`, `all`, or `async-connection+session`."""
        if not self.names:
            return "none"
        return "async-" + "+".join(self.names) if len(self.names) < 4 else "all"

    @property
    def async_names(self) -> str:
        """`async: connection, session`, or `async: none`: how logs and listings say it."""
        return f"async: {', '.join(self.names) or 'none'}"

    @property
    def any_async(self) -> bool:
        return bool(self.names)

    def any_of(self, names: Iterable[str]) -> bool:
        return any(getattr(self, name) for name in names)


@dataclass(frozen=True)
class Settings:
    """Everything a run needs, whichever file or flag it came from."""

    layers: Layers = Layers()
    stage: str = "custom"
    source: str = "built-in defaults"
    max_line_bytes: int = MAX_LINE_BYTES
    idle_timeout: float | None = 60.0
    max_connections: int = 1000
    worker_idle_timeout: float = 10.0
    trace: bool = False
    debug: bool = False
    uvloop: bool = False
    stall_report: float = 5.0
    loop_block_report: float = 0.1
    """Seconds an event loop may go without turning before --debug prints the line
    holding it: asyncio's own slow_callback_duration."""
    switch_interval: float = 0.001
    """Seconds `serve` lets a thread hold the GIL while another waits for it, wherever
    threads read the sockets: a threaded acceptor's accept() waits for the GIL behind
    every session reading its socket, up to this long each time (docs/performance.md,
    "Switch interval")."""
    switch_interval_async_connections: float = 0.005
    """The same, once every connection is read on the event loop. Session threads then
    wait only on queues, so CPython's default holds the burst target at less CPU per
    round (docs/performance.md, "Switch interval")."""
    results: str | None = None
    """`serve`'s results database (`results` in [guessgame]); None: its default."""
    stages: dict[str, Layers] = field(default_factory=dict)
    rollout: dict[str, float] = field(default_factory=dict)
    """Layer -> fraction of new connections on which it runs async, overriding the
    stage's all-or-nothing for that layer (`rollout = { session = 0.25 }`)."""

    def may_be_async(self, name: str) -> bool:
        """Whether some connection may run layer `name` async at these settings."""
        if name in self.rollout:
            return self.rollout[name] > 0
        return bool(getattr(self.layers, name))

    def may_be_threaded(self, name: str) -> bool:
        """Whether some connection may run layer `name` threaded at these settings."""
        if name in self.rollout:
            return self.rollout[name] < 1
        return not getattr(self.layers, name)

    def needs_loop_for(self, names: Iterable[str]) -> bool:
        """Whether any of the layers `names` may need the event loop."""
        return any(self.may_be_async(name) for name in names)

    @property
    def timeouts_on(self) -> bool:
        # A user paused at a breakpoint must not make the other side give up.
        return not self.debug

    @property
    def max_workers(self) -> int:
        # One parked call per connection on each side of a demo, plus room for short
        # calls: a smaller pool would make one connection's read wait behind another's.
        return 2 * self.max_connections + 8

    @property
    def effective_idle_timeout(self) -> float | None:
        return self.idle_timeout if self.timeouts_on else None

    def describe(self) -> str:
        return f"config {self.source}: stage {self.stage} ({self.describe_layers()})"

    def describe_layers(self) -> str:
        """`async: connection`, and the rollout if there is one: `async: connection;
        rollout: session 0.25`."""
        text = self.layers.async_names
        if self.rollout:
            text += f"; rollout: {self.rollout_shares}"
        return text

    @property
    def rollout_shares(self) -> str:
        """`session 0.25`: each layer rolled out, with its fraction of new connections."""
        return ", ".join(f"{name} {share:g}" for name, share in self.rollout.items())

    def with_options(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def find_config(explicit: str | None) -> Path:
    """--config, then $GUESSGAME_CONFIG, then ./guessgame.toml, then the packaged default."""
    for candidate in (explicit, os.environ.get(CONFIG_ENV)):
        if candidate:
            return Path(candidate)
    local = Path.cwd() / DEFAULT_NAME
    return local if local.is_file() else PACKAGED


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config file; pass --config PATH or create {DEFAULT_NAME}"
        ) from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        # tomllib's message ends with "(at line N, column M)", except for an error at
        # the end of the file, which gets "(at end of document)": name that line too.
        message = str(error)
        if message.endswith("(at end of document)"):
            last = len(path.read_bytes().splitlines()) or 1
            message = message.removesuffix(")") + f", line {last})"
        raise ConfigError(f"{path}: malformed TOML: {message}") from None


_NUMBERS: Final = {
    "max_line_bytes": int,
    "idle_timeout": float,
    "max_connections": int,
    "worker_idle_timeout": float,
    "stall_report": float,
    "loop_block_report": float,
    "switch_interval": float,
    "switch_interval_async_connections": float,
}
_FLAGS: Final = ("trace", "debug", "uvloop")


def _settings_from(table: dict[str, Any], path: Path) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, kind in _NUMBERS.items():
        if key in table:
            value = table[key]
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value < 0):
                raise ConfigError(f"{path}: {key} must be a non-negative number, got {value!r}")
            values[key] = kind(value) if value or key != "idle_timeout" else None
    for key in _FLAGS:
        if key in table:
            if not isinstance(table[key], bool):
                raise ConfigError(f"{path}: {key} must be true or false, got {table[key]!r}")
            values[key] = table[key]
    for key in ("stall_report", "loop_block_report", "switch_interval",
                "switch_interval_async_connections"):
        if values.get(key, 1.0) <= 0:
            raise ConfigError(f"{path}: {key} must be a positive number of seconds")
    if values.get("max_line_bytes", MAX_LINE_BYTES) < 16:
        raise ConfigError(f"{path}: max_line_bytes must be at least 16")
    if "results" in table:
        if not isinstance(table["results"], str) or not table["results"]:
            raise ConfigError(f"{path}: results must be a file path or \"none\", "
                              f"got {table['results']!r}")
        values["results"] = table["results"]
    if "rollout" in table:
        values["rollout"] = _rollout_from(table["rollout"], path)
    return values


def _rollout_from(table: Any, path: Path) -> dict[str, float]:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: guessgame.rollout must be a table of layer = fraction, "
                          f"like {{ session = 0.25 }}")
    rollout = {}
    for name, share in table.items():
        if name not in ROLLOUT_LAYERS:
            raise ConfigError(
                f"{path}: guessgame.rollout: {name!r} cannot be rolled out per connection; "
                f"the layers chosen per connection are {', '.join(ROLLOUT_LAYERS)}")
        if (isinstance(share, bool) or not isinstance(share, (int, float))
                or not 0 <= share <= 1):
            raise ConfigError(
                f"{path}: guessgame.rollout.{name} must be a fraction from 0 to 1, got {share!r}")
        rollout[name] = float(share)
    # In the layers' own order, so that logs and traces read the same whatever the file's.
    return {name: rollout[name] for name in ROLLOUT_LAYERS if name in rollout}


def load(
    config: str | None = None,
    stage: str | None = None,
    layers: str | None = None,
) -> Settings:
    """Read the config file, then apply --stage or --async on top of it."""
    path = find_config(config)
    data = _read(path)
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, dict) or not raw_stages:
        raise ConfigError(f"{path}: needs a [stages] table mapping stage names to layer lists")
    stages = {name: Layers.of(names, f"{path}: stage {name!r}")
              for name, names in raw_stages.items()}
    table = data.get("guessgame", {})
    chosen = stage or table.get("stage")
    if chosen is None:
        chosen = next(iter(stages))
    if chosen not in stages:
        where = "--stage" if stage else f"{path}: guessgame.stage"
        raise ConfigError(
            f"{where}: unknown stage {chosen!r}; stages in {path} are {', '.join(stages)}"
        )
    values = _settings_from(table, path)
    settings = Settings(
        layers=stages[chosen], stage=chosen, source=str(path), stages=stages, **values
    )
    if layers is not None:
        picked = Layers.parse(layers)
        named = [name for name, value in stages.items() if value == picked]
        settings = replace(settings, layers=picked, stage=named[0] if named else "custom")
    return settings
