"""Helpers the tests share: running the system's client side at any layer combination,
the arguments of `guessgame play`, and what tracebacks and breakpoints are checked by."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

from guessgame import cli, config
from guessgame.bridge import loop_thread
from guessgame.compose import Rounds, System
from guessgame.config import CLIENT_LAYERS, ConfigError, Layers, Settings
from guessgame.observe import trace
from guessgame.protocol import OURS, Game, Vocabulary
from peers import CONFIG, layers_arg


def play(settings: Settings, port: int, games: tuple[Game, ...], host: str = "127.0.0.1",
         words: Vocabulary = OURS) -> list[Rounds]:
    """Play `games` with the configured client and connection flavours, from this thread.

    A loop thread is started only if the client side has an async layer.
    """
    with loop_thread(settings, CLIENT_LAYERS) as bridge:
        return System(settings, bridge).play_in_thread(host, port, games, words)


def play_args(port: int, layers: Layers, *options: str, config: Path = CONFIG) -> list[str]:
    """`guessgame play` against `port` at `layers`, with `options` after."""
    return ["play", "--port", str(port), "--config", str(config), "--async", layers_arg(layers),
            *options]


def frames(error: BaseException) -> list[str]:
    """Function names in the tracebacks of `error` and everything chained to it,
    outermost first."""
    names: list[str] = []
    seen: BaseException | None = error
    while seen is not None:
        names += [frame.name for frame in traceback.extract_tb(seen.__traceback__)]
        seen = seen.__cause__ or seen.__context__
    return names


def fail_in_a_thread() -> NoReturn:
    """Raise an error naming the session the calling context belongs to."""
    raise ValueError(f"from a thread, for {trace.SESSION_ID.get()}")


def first_body_line(function: Callable[..., Any]) -> tuple[str, int]:
    """The file and first line of `function`'s body: where a breakpoint on it lands."""
    code = function.__code__
    line = min(line for *_, line in code.co_lines() if line and line > code.co_firstlineno)
    return os.path.realpath(code.co_filename), line


def config_with(tmp_path: Path, setting: str) -> Path:
    """A config file whose [guessgame] table holds `setting` ("key = value"), one stage."""
    path = tmp_path / "setting.toml"
    path.write_text(f"[guessgame]\n{setting}\n[stages]\nall-threads = []\n")
    return path


def assert_config_rejects(tmp_path: Path, setting: str, message: str) -> None:
    """A config holding `setting` fails to load with an error matching `message`."""
    with pytest.raises(ConfigError, match=message):
        config.load(str(config_with(tmp_path, setting)))


def watch_thresholds_in_demo(monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str], watch: type[Any],
                             path: Path, debug: bool) -> list[float]:
    """Play the demo at async-session with the config at `path` (under --debug if `debug`), which
    must end well; the threshold of each `watch` (a context manager) entered."""
    started: list[float] = []
    enter = watch.__enter__

    def recording(self: Any) -> Any:
        started.append(self.threshold)
        return enter(self)

    monkeypatch.setattr(watch, "__enter__", recording)
    argv = ["demo", "--config", str(path), "--stage", "async-session", "--seed", "1", "-q"]
    assert cli.main(argv + ["--debug"] * debug) == 0
    assert "client: 12 is CORRECT" in capsys.readouterr().out
    return started
