"""Wire compatibility with Effective Python's own item 61 programs, at every combination.

The book's clients (tests/booklike.py) speak `Warmer`...`Correct` and clear each game
with `PARAMS 0 -1`, reading no reply; one ERROR line would crash them. Our client plays
the book's servers in each of its dialects.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import booklike
from guessgame.config import Settings
from guessgame.live.host import serving
from guessgame.protocol import BOOK, DECISION_WORDS, SEED_SCENARIO, VOCABULARIES, Decision
from harness import play
from peers import wait_until_idle

BookRun = Callable[[int], booklike.Results]
CLIENTS: dict[str, BookRun] = {
    "threaded": booklike.run_book_client,
    "asyncio": booklike.run_book_async_client_in_thread,
}

# The server's guesses follow from its seed alone, at every combination. The book's
# second game allows five guesses for six numbers, so whether it is won depends on it:
WINS = 7
"""With this seed the server finds 12 at the fifth guess of the second game."""
LOSES = 2
"""With this seed 12 would have been the server's sixth guess: the book's client gives up."""


def server_transcript(results: booklike.Results) -> list[str]:
    """What our server must print for the book client's games: each game, each report,
    and a silent `PARAMS 0 -1` after each game."""
    lines = []
    for (lower, upper, _), game in zip(booklike.GAMES, results, strict=True):
        lines.append(f"server: new game {lower}..{upper}")
        lines.extend(f"server: {number} is {DECISION_WORDS[word].value}" for number, word in game)
        lines.append("server: game cleared")
    return lines


def play_book_client(settings: Settings, client: str,
                     seed: int) -> tuple[booklike.Results, list[str]]:
    """The book's client's results, and our server's transcript once its session ended."""
    printed: list[str] = []
    with serving(settings, seed=seed, write=printed.append) as server:
        results = CLIENTS[client](server.port)
        wait_until_idle(server, "the book's client's session to end")
    return results, printed


@pytest.mark.parametrize("client", list(CLIENTS))
def test_book_client_wins_both_games_against_our_server(settings: Settings, client: str) -> None:
    results, printed = play_book_client(settings, client, WINS)
    assert [game[-1][1] for game in results] == [booklike.CORRECT, booklike.CORRECT]
    assert len(results[1]) == booklike.REQUESTS  # the closest call the book allows
    assert printed == server_transcript(results)


@pytest.mark.parametrize("client", list(CLIENTS))
def test_book_client_that_runs_out_of_guesses_clears_the_game(settings: Settings,
                                                             client: str) -> None:
    results, printed = play_book_client(settings, client, LOSES)
    first, second = results
    assert first[-1][1] == booklike.CORRECT
    assert len(second) == booklike.REQUESTS
    assert booklike.CORRECT not in {word for _, word in second}
    assert 12 not in {number for number, _ in second}
    # `PARAMS 0 -1` came mid-game this time, and still drew no reply: the client read on.
    assert printed == server_transcript(results)


BOOK_SERVERS = {"threaded": booklike.book_threaded_server, "asyncio": booklike.book_async_server}


@pytest.mark.parametrize("server", list(BOOK_SERVERS))
def test_our_client_in_the_books_words_beats_the_book_server(settings: Settings,
                                                             server: str) -> None:
    printed: list[str] = []
    with BOOK_SERVERS[server](printed) as port:
        rounds = play(settings, port, SEED_SCENARIO, words=BOOK)
    assert [game[-1][1] for game in rounds] == [Decision.CORRECT, Decision.CORRECT]
    assert printed == [f"Server: {guess} is {BOOK.word(decision)}"
                       for game in rounds for guess, decision in game]


@pytest.mark.parametrize("words", [name for name in VOCABULARIES if name != BOOK.name])
def test_our_client_in_other_words_beats_the_book_server(settings: Settings, words: str) -> None:
    """The book's server only listens for `Correct`; any dialect's client still wins."""
    printed: list[str] = []
    with booklike.book_threaded_server(printed) as port:
        rounds = play(settings, port, SEED_SCENARIO, words=VOCABULARIES[words])
    assert [game[-1][1] for game in rounds] == [Decision.CORRECT, Decision.CORRECT]
    vocabulary = VOCABULARIES[words]
    assert printed == [f"Server: {guess} is {vocabulary.word(decision)}"
                       for game in rounds for guess, decision in game]
