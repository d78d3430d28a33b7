"""The stages file: named stages, overrides, and every combination."""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path

import pytest

from conftest import CONFIG
from guessgame import compose, config
from guessgame.config import ConfigError, Layers
from harness import assert_config_rejects, config_with


def test_the_repository_file_and_the_packaged_default_agree() -> None:
    repo, packaged = (tomllib.loads(path.read_text()) for path in (CONFIG, config.PACKAGED))
    assert repo["stages"] == packaged["stages"]


def test_stages_run_from_all_threads_to_all_async_adding_one_layer_at_a_time() -> None:
    stages = list(config.load(str(CONFIG)).stages.values())
    assert stages[0] == Layers() and stages[-1] == Layers.parse("all")
    for before, after in itertools.pairwise(stages):
        assert set(before.names) < set(after.names)
        assert len(after.names) == len(before.names) + 1


def test_every_combination_is_distinct_and_labelled_uniquely() -> None:
    every = Layers.every()
    assert len(set(every)) == 16
    assert len({layers.label for layers in every}) == 16


def test_stage_and_async_override_the_file() -> None:
    assert config.load(str(CONFIG), stage="async-session").layers == Layers.parse(
        "connection,session")
    picked = config.load(str(CONFIG), layers="server,client")
    assert picked.layers == Layers(client=True, server=True)
    assert picked.stage == "custom"
    assert config.load(str(CONFIG), layers="all").stage == "all-async"
    assert config.load(str(CONFIG), layers="none").stage == "all-threads"


def test_switching_stage_is_one_value_in_the_file(tmp_path: Path) -> None:
    edited = tmp_path / "guessgame.toml"
    edited.write_text(CONFIG.read_text().replace('stage = "all-threads"', 'stage = "all-async"'))
    settings = config.load(str(edited))
    assert settings.stage == "all-async" and settings.layers == Layers.parse("all")
    assert settings.describe().startswith(f"config {edited}: stage all-async")


def test_config_is_found_by_flag_then_environment_then_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(config.CONFIG_ENV, raising=False)
    assert config.find_config(None) == config.PACKAGED
    (tmp_path / config.DEFAULT_NAME).write_text(CONFIG.read_text())
    assert config.find_config(None) == tmp_path / config.DEFAULT_NAME
    monkeypatch.setenv(config.CONFIG_ENV, "/elsewhere.toml")
    assert config.find_config(None) == Path("/elsewhere.toml")
    assert config.find_config("/given.toml") == Path("/given.toml")


def test_debug_turns_timeouts_off() -> None:
    settings = config.load(str(CONFIG))
    assert settings.effective_idle_timeout == settings.idle_timeout
    assert settings.with_options(debug=True).effective_idle_timeout is None


def test_unknown_layer_names_what_is_valid() -> None:
    with pytest.raises(ConfigError, match="unknown layer 'sessions'; valid layers are "
                                          "connection, session, client, server"):
        Layers.parse("connection,sessions")


@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
def test_limits_must_be_finite_and_non_negative(tmp_path: Path, value: str) -> None:
    assert_config_rejects(tmp_path, f"idle_timeout = {value}",
                          "idle_timeout must be a non-negative number")


def test_the_switch_interval_is_short_wherever_threads_read_the_sockets() -> None:
    settings = config.load(str(CONFIG))
    short, long = settings.switch_interval, settings.switch_interval_async_connections
    assert (short, long) == (0.001, 0.005)
    for names in itertools.product((False, True), repeat=4):
        layers = Layers(*names)
        expected = long if layers.connection else short
        assert compose.switch_interval(settings.with_options(layers=layers)) == expected, \
            layers.label
    # A rollout that leaves some connections threaded keeps the short interval.
    async_connections = settings.with_options(layers=Layers.parse("connection"))
    assert compose.switch_interval(
        async_connections.with_options(rollout={"connection": 0.5})) == short
    assert compose.switch_interval(settings.with_options(rollout={"connection": 1.0})) == long


@pytest.mark.parametrize("key", ["switch_interval", "switch_interval_async_connections"])
def test_a_switch_interval_must_be_positive(tmp_path: Path, key: str) -> None:
    assert_config_rejects(tmp_path, f"{key} = 0", f"{key} must be a positive number of seconds")
    assert getattr(config.load(str(config_with(tmp_path, f"{key} = 0.002"))), key) == 0.002
