"""The command line: stages, demo, play, help."""

from __future__ import annotations

import io
import socket
import subprocess
import sys

import pytest

from conftest import CONFIG
from guessgame import app, cli, config
from guessgame.config import Settings
from guessgame.live.host import serving
from guessgame.protocol import DECISION_WORDS, VOCABULARIES, Decision
from peers import layers_arg, wait_until_idle
from timing import UNIT


def test_stages_lists_every_stage_and_marks_the_current_one(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["stages", "--config", str(CONFIG), "--stage", "async-session"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"stages in {CONFIG}:"
    marked = [line for line in out if line.startswith("*")]
    assert marked == ["* async-session        async: connection, session"]
    assert len(out) == 1 + len(config.load(str(CONFIG)).stages)


def test_a_leading_separator_is_ignored_so_one_pdb_command_fits_every_python(
        capsys: pytest.CaptureFixture[str]) -> None:
    # 3.13.0's pdb needs `python -m pdb -m guessgame -- demo ...`; 3.11 and 3.12 pass
    # the `--` on to us.
    assert cli.main(["--", "stages", "--config", str(CONFIG)]) == 0
    assert capsys.readouterr().out.startswith(f"stages in {CONFIG}:")


def test_stages_marks_a_custom_combination(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["stages", "--config", str(CONFIG), "--async", "client"])
    assert capsys.readouterr().out.splitlines()[-1] == "* (--async)            async: client"


@pytest.mark.parametrize("picked", ["none", "connection,server"])
def test_demo_from_the_command_line_prints_the_in_process_transcript(picked: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "guessgame", "demo", "--seed", "11", "--async", picked,
         "--config", str(CONFIG)], capture_output=True, text=True, timeout=4 * UNIT,
        check=False)
    expected = io.StringIO()
    app.demo(config.load(str(CONFIG), layers=picked), 11, expected)
    assert done.returncode == 0
    assert done.stdout == expected.getvalue()
    first = done.stderr.splitlines()[0]
    assert first.startswith(f"guessgame: config {CONFIG}: stage ")


def test_play_prints_each_guess_and_its_outcome(settings: Settings,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with serving(settings) as server:
        code = cli.main(["play", "--port", str(server.port), "--async",
                         ",".join(settings.layers.names) or "none", "--config", str(CONFIG),
                         "--lower", "1", "--upper", "4", "--secret", "4", "--guesses", "4"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0] == "client: game 1..4, secret 4"
    assert out[-1] == "client: 4 is CORRECT"


@pytest.mark.parametrize("command", ["demo", "serve", "play", "stages"])
def test_every_subcommand_explains_the_stage_options(command: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--stage NAME", "--async LAYERS", "--config PATH", "--trace", "--debug"):
        assert option in text


def test_play_refuses_a_secret_outside_the_range(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["play", "--port", "1", "--secret", "9", "--config", str(CONFIG)])
    assert exit_.value.code == cli.EXIT_USAGE
    assert "secret 9 is outside 1..5" in capsys.readouterr().err


def test_a_failed_name_lookup_reads_as_a_sentence() -> None:
    args = cli.build_parser().parse_args(["play", "--port", "1", "--host", "nosuch.invalid"])
    error = socket.gaierror(-2, "Name or service not known")
    assert cli.describe_failure(error, args) == "cannot reach the server: Name or service not known"


def test_play_reports_in_each_dialect(settings: Settings,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`--words` changes only the words on the wire: our server reads each dialect back
    into the decisions the client made (the book's Unsure standing in for SAME)."""
    printed: list[str] = []
    played: dict[str, list[tuple[int, Decision]]] = {}
    with serving(settings, seed=5, write=printed.append) as server:
        for words in VOCABULARIES:
            code = cli.main(["play", "--port", str(server.port), "--words", words,
                             "--async", layers_arg(settings.layers), "--config", str(CONFIG),
                             "--lower", "1", "--upper", "6", "--secret", "3", "--guesses", "6"])
            assert code == 0
            out = capsys.readouterr().out.splitlines()
            played[words] = [parse_round(line) for line in out[1:]]
            # The last REPORT gets no reply: the session may still be reading it when
            # play returns, so the next game waits for it, to keep the reports in order.
            wait_until_idle(server)
    heard = [line for line in printed if not line.startswith("server: new game")]
    assert heard == [f"server: {guess} is {DECISION_WORDS[VOCABULARIES[words].word(d)].value}"
                     for words, rounds in played.items() for guess, d in rounds]
    assert all(rounds[-1][1] is Decision.CORRECT for rounds in played.values())


def parse_round(line: str) -> tuple[int, Decision]:
    """`client: 4 is WARMER` -> (4, Decision.WARMER)."""
    guess, decision = line.removeprefix("client: ").split(" is ")
    return int(guess), Decision[decision]


def test_play_refuses_an_unknown_dialect(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["play", "--port", "1", "--words", "klingon", "--config", str(CONFIG)])
    assert exit_.value.code == cli.EXIT_USAGE
    assert "--words: invalid choice: 'klingon'" in capsys.readouterr().err
