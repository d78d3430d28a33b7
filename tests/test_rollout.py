"""Rollout fractions: the config key, the per-connection choice, and seeded runs."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest

from guessgame import app, cli, config
from guessgame.config import ConfigError, Layers, Settings
from guessgame.live.flavour_stats import Histogram
from guessgame.live.rollout import Rollout, number_of
from live import config_text
from peers import CONFIG


@pytest.mark.parametrize("share", [0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("connections", [10, 200, 1000])
@pytest.mark.parametrize("first", [1, 4321])  # from the start, or after a reload
def test_the_async_share_is_the_fraction_to_within_two_connections(
        share: float, connections: int, first: int) -> None:
    rollout = Rollout(Layers(), {"session": share})
    picked = [rollout.choose(number) for number in range(first, first + connections)]
    async_sessions = sum(layers.session for layers in picked)
    assert abs(async_sessions - share * connections) <= 2
    assert not any(layers.connection or layers.server or layers.client for layers in picked)


def test_two_layers_rolled_out_are_chosen_independently() -> None:
    rollout = Rollout(Layers(server=True), {"connection": 0.5, "session": 0.5})
    pairs = Counter((layers.connection, layers.session)
                    for layers in map(rollout.choose, range(1, 1001)))
    assert all(230 <= count <= 270 for count in pairs.values()), pairs
    assert len(pairs) == 4


def test_a_rollout_overrides_only_its_layers_of_the_stage() -> None:
    stage = Layers(connection=True, session=True, server=True)
    rollout = Rollout(stage, {"session": 0.0})
    assert rollout.choose(7) == Layers(connection=True, server=True)
    assert Rollout(stage, {}).choose(7) is stage


def test_session_ids_number_the_choices() -> None:
    assert [number_of(s) for s in ("s1", "s42", "-")] == [1, 42, 0]


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "g.toml"
    path.write_text(text)
    return str(path)


def test_the_config_reads_a_rollout_beside_the_stage(tmp_path: Path) -> None:
    settings = config.load(write(tmp_path, config_text(
        "async-connection", "{ session = 0.25, connection = 1 }")))
    assert settings.rollout == {"connection": 1.0, "session": 0.25}
    assert settings.describe_layers() == "async: connection; rollout: connection 1, session 0.25"
    assert settings.needs_loop_for(["session"]) and not settings.needs_loop_for(["server"])
    assert config.load(str(CONFIG)).rollout == {}  # a config without one: as before


@pytest.mark.parametrize(("rollout", "error"), [
    ('"session"', "guessgame.rollout must be a table of layer = fraction, like "
                  "{ session = 0.25 }"),
    ("{ server = 0.5 }", "guessgame.rollout: 'server' cannot be rolled out per connection; "
                         "the layers chosen per connection are connection, session"),
    ("{ client = 0.5 }", "'client' cannot be rolled out per connection"),
    ("{ session = 1.5 }", "guessgame.rollout.session must be a fraction from 0 to 1, got 1.5"),
    ("{ session = -0.1 }", "must be a fraction from 0 to 1, got -0.1"),
    ("{ session = true }", "must be a fraction from 0 to 1, got True"),
    ("{ session = nan }", "must be a fraction from 0 to 1, got nan"),
])
def test_a_bad_rollout_is_one_line_naming_the_file(tmp_path: Path, rollout: str,
                                                   error: str) -> None:
    path = write(tmp_path, config_text("all-threads", rollout))
    with pytest.raises(ConfigError) as raised:
        config.load(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert error in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_zero_share_needs_no_loop_even_at_an_async_stage() -> None:
    settings = Settings(layers=Layers(connection=True), rollout={"connection": 0.0})
    assert not settings.needs_loop_for(config.SERVER_LAYERS)


def test_demo_with_a_rollout_prints_the_same_transcript_at_every_combination(
        settings: Settings) -> None:
    plain = io.StringIO()
    app.demo(config.load(str(CONFIG)), seed=5, out=plain)
    rolled = io.StringIO()
    app.demo(settings.with_options(rollout={"connection": 0.5, "session": 0.5}), seed=5,
             out=rolled)
    assert rolled.getvalue() == plain.getvalue()


def test_percentiles_come_from_a_fixed_number_of_buckets() -> None:
    histogram = Histogram()
    for micros in range(1, 1001):
        histogram.add(micros * 1e-6)
    size = len(histogram.counts)
    for _ in range(10_000):
        histogram.add(0.0005)
    assert len(histogram.counts) == size
    p50, p99 = histogram.percentile(0.5), histogram.percentile(0.99)
    assert p50 is not None and p99 is not None
    assert 0.0005 <= p50 <= 0.0005 * 1.1  # the upper edge of its bucket, within 9%
    assert 0.0005 <= p99 <= 0.001 * 1.1
    assert Histogram().percentile(0.5) is None


def test_stages_shows_the_rollout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, config_text("async-connection", "{ session = 0.25 }"))
    assert cli.main(["stages", "--config", path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "* async-connection     async: connection"
    assert out[-1] == "  rollout: async session 0.25 of new connections, whatever the stage"
