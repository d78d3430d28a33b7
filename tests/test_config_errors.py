"""A bad config, stage or layer name: one line naming the file and what is valid; exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from guessgame import cli
from peers import CONFIG
from timing import UNIT

STAGES = "all-threads, async-connection, async-session, async-server, all-async"
LAYERS = "connection, session, client, server, or none or all"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "guessgame.toml"
    path.write_text(text)
    return path


def fails_with(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert (code, out) == (cli.EXIT_USAGE, "")
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.rstrip("\n")


def test_unknown_stage(capsys: pytest.CaptureFixture[str]) -> None:
    line = fails_with(["demo", "--config", str(CONFIG), "--stage", "nope"], capsys)
    assert line == f"guessgame: --stage: unknown stage 'nope'; stages in {CONFIG} are {STAGES}"


def test_unknown_stage_in_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[guessgame]\nstage = "half"\n[stages]\nall-threads = []\n')
    line = fails_with(["demo", "--config", str(path)], capsys)
    assert line == (f"guessgame: {path}: guessgame.stage: unknown stage 'half'; "
                    f"stages in {path} are all-threads")


def test_unknown_layer_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    line = fails_with(["demo", "--config", str(CONFIG), "--async", "connection,sesion"], capsys)
    assert line == f"guessgame: --async: unknown layer 'sesion'; valid layers are {LAYERS}"


def test_unknown_layer_in_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[stages]\nfirst = ["conection"]\n')
    line = fails_with(["demo", "--config", str(path)], capsys)
    assert line == (f"guessgame: {path}: stage 'first': unknown layer 'conection'; "
                    f"valid layers are {LAYERS}")


def test_malformed_toml_names_the_line(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[stages]\nall-threads = []\nasync-connection = ["connection"\n')
    line = fails_with(["demo", "--config", str(path)], capsys)
    assert line.startswith(f"guessgame: {path}: malformed TOML: ")
    assert line.endswith("line 3)"), line


def test_malformed_toml_mid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[stages]\nall-threads = [\n[guessgame]\nstage = 1\n')
    line = fails_with(["demo", "--config", str(path)], capsys)
    assert line.startswith(f"guessgame: {path}: malformed TOML: ")
    assert "(at line 3, column " in line, line


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "absent.toml"
    line = fails_with(["demo", "--config", str(path)], capsys)
    assert line == (f"guessgame: {path}: no such config file; "
                    "pass --config PATH or create guessgame.toml")


def test_the_command_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    done = subprocess.run([sys.executable, "-m", "guessgame", "serve", "--config", str(path)],
                          capture_output=True, text=True, timeout=4 * UNIT)
    assert (done.returncode, done.stdout) == (cli.EXIT_USAGE, "")
    assert done.stderr.splitlines() == [
        f"guessgame: {path}: no such config file; pass --config PATH or create guessgame.toml"]
