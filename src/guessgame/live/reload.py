"""Reading the config again on SIGHUP, and saying in one line what changed.

A reload changes the stage, the rollout and the limits (which apply to connections
accepted from then on). The process-wide options stay as they were at start: trace,
debug and uvloop shape the event loop and the sinks, which live as long as the process,
and so does the results store.
"""

from __future__ import annotations

import logging

from guessgame import config
from guessgame.config import ConfigError, Settings

log = logging.getLogger("guessgame")


def reread(current: Settings) -> Settings | None:
    """The settings in `current`'s config file now; or None, after logging the one-line
    error, when the file does not load, in which case the caller keeps `current`.

    The caller logs `change(current, new)` once the new stage serves, so that every
    connection made after that line is served at the new stage."""
    try:
        loaded = config.load(current.source)
    except ConfigError as error:
        log.error("%s", error)
        return None
    return loaded.with_options(trace=current.trace, debug=current.debug,
                               uvloop=current.uvloop)


def change(old: Settings, new: Settings) -> str:
    """`stage all-threads -> async-connection (async: connection)`."""
    return f"stage {old.stage} -> {new.stage} ({new.describe_layers()})"
