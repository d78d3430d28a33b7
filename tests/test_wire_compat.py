"""Wire compatibility with programs written like the original threaded and asyncio ones."""

from __future__ import annotations

import asyncio

import seedlike
from guessgame.config import Settings
from guessgame.live.host import serving
from guessgame.protocol import DECISION_WORDS, SEED_SCENARIO, Decision, Reported
from harness import play


def _server_rounds(printed: list[str]) -> list[str]:
    return [line for line in printed if not line.startswith("server: new game")]


def _check_seed_results(results: list[tuple[int, str]], printed: list[str]) -> None:
    # Both games are long enough to find the secret, since no guess repeats.
    decisions = [DECISION_WORDS[word] for _, word in results]
    assert decisions.count(Decision.CORRECT) == 2
    assert _server_rounds(printed) == [
        f"server: {number} is {DECISION_WORDS[word].value}" for number, word in results
    ]


def test_seed_threaded_client_plays_our_server(settings: Settings) -> None:
    printed: list[str] = []
    with serving(settings, write=printed.append) as server:
        results = seedlike.run_seed_client(server.port)
    _check_seed_results(results, printed)


def test_seed_async_client_plays_our_server(settings: Settings) -> None:
    printed: list[str] = []
    with serving(settings, write=printed.append) as server:
        results = asyncio.run(seedlike.run_seed_async_client(server.port))
    _check_seed_results(results, printed)


def _check_our_results(rounds: list[list[tuple[int, Decision]]], printed: list[str]) -> None:
    assert [game[-1][1] for game in rounds] == [Decision.CORRECT, Decision.CORRECT]
    flat = [Reported(guess, decision) for game in rounds for guess, decision in game]
    assert printed == [f"Server: {r.guess} is {r.decision.value}" for r in flat]


def test_our_client_plays_seed_threaded_server(settings: Settings) -> None:
    printed: list[str] = []
    with seedlike.seed_threaded_server(printed) as port:
        rounds = play(settings, port, SEED_SCENARIO)
    _check_our_results(rounds, printed)


def test_our_client_plays_seed_async_server(settings: Settings) -> None:
    printed: list[str] = []
    with seedlike.seed_async_server(printed) as port:
        rounds = play(settings, port, SEED_SCENARIO)
    _check_our_results(rounds, printed)
