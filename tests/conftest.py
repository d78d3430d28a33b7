"""Run every stage-dependent test at every layer combination.

A test that takes the `layers` fixture runs once per combination, all 16 by default,
with the combination in its id. `pytest --stage NAME` or `pytest --async LAYERS` picks
one. The stages are read from the repository's guessgame.toml.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from guessgame import config, observe
from guessgame.bridge import Bridge
from guessgame.config import Layers, Settings
from hang_watch import pytest_timeout_cancel_timer, pytest_timeout_set_timer
from timing import SCALE

# The suite sees the crossings as the commands do: task names and the wait graph attached.
observe.attach_defaults()

__all__ = ["pytest_timeout_cancel_timer", "pytest_timeout_set_timer"]  # hooks, used by name

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "guessgame.toml"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """pytest-timeout's limit per test scales with every other deadline (timing.py)."""
    if SCALE != 1 and config.getoption("timeout", None) is None:
        config.option.timeout = float(config.getini("timeout")) * SCALE


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("guessgame")
    group.addoption("--stage", metavar="NAME", help="run stage tests only at this named stage")
    group.addoption("--async", dest="async_layers", metavar="LAYERS",
                    help="run stage tests only at this combination (e.g. connection,session)")


def selected_layers(pytest_config: pytest.Config) -> list[Layers]:
    stage = pytest_config.getoption("stage")
    layers = pytest_config.getoption("async_layers")
    if stage or layers:
        return [config.load(str(CONFIG), stage, layers).layers]
    return Layers.every()


def pytest_report_header(config: pytest.Config) -> str:
    picked = selected_layers(config)
    return f"guessgame: {CONFIG}, {len(picked)} layer combination(s)"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "layers" in metafunc.fixturenames:
        picked = selected_layers(metafunc.config)
        metafunc.parametrize("layers", picked, ids=[layers.label for layers in picked])


@pytest.fixture
def settings(layers: Layers) -> Settings:
    """The repository's config, at the combination under test, with short timeouts."""
    return config.load(str(CONFIG)).with_options(layers=layers, stage=layers.label)


UVLOOP = importlib.util.find_spec("uvloop") is not None
LOOPS = [pytest.param(False, id="asyncio"),
         pytest.param(True, id="uvloop",
                      marks=pytest.mark.skipif(not UVLOOP, reason="uvloop is not installed"))]
"""asyncio's event loop, and uvloop's where it is installed."""


@pytest.fixture(params=LOOPS)
def bridge(request: pytest.FixtureRequest) -> Iterator[Bridge]:
    """A loop thread with a small worker pool, on each event loop, closed after the test."""
    bridge = Bridge.start_loop_thread(max_workers=4, uvloop=request.param)
    yield bridge
    bridge.close()


@pytest.fixture(autouse=True)
def in_own_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in a directory of its own, and so does every process it starts:
    `serve` records its games in ./guessgame-results.sqlite3 unless told otherwise."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every thread a test's system started must have ended when the test ends."""
    before = set(threading.enumerate())
    yield
    leaked = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not leaked, f"threads still running after the test: {leaked}"
