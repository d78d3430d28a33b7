"""The I/O-free core: framing, parsing, the guesser's state machine and the judge."""

from __future__ import annotations

import random

import pytest

from guessgame import protocol
from guessgame.protocol import (
    ARTICLE,
    BOOK,
    BOUND_LIMIT,
    DECISION_WORDS,
    OURS,
    SEED_WORDS,
    VOCABULARIES,
    Decision,
    Draw,
    Game,
    GameCleared,
    GameStarted,
    Guesser,
    Judge,
    LineTooLong,
    PeerClosed,
    ProtocolError,
    Reported,
    ServerError,
    State,
    Vocabulary,
)


def test_frame_accepts_a_complete_line_and_classifies_the_rest() -> None:
    assert protocol.frame(b"NUMBER\n", 16) == b"NUMBER\n"
    with pytest.raises(LineTooLong):
        protocol.frame(b"x" * 16, 16)
    with pytest.raises(PeerClosed) as partial:
        protocol.frame(b"NUM", 16)
    assert partial.value.mid_line
    with pytest.raises(PeerClosed) as clean:
        protocol.frame(b"", 16)
    assert not clean.value.mid_line


def test_decode_strips_either_line_ending_and_refuses_bad_utf8() -> None:
    assert protocol.decode(b"REPORT \xe4\xb8\x8d\xe6\x98\x8e\r\n") == "REPORT 不明"
    with pytest.raises(ProtocolError, match="UTF-8"):
        protocol.decode(b"\xc3\x28\n")


def test_draw_never_repeats_and_ends_with_a_clear_error() -> None:
    draw = Draw(-2, 2, random.Random(1))
    assert sorted(draw.next() for _ in range(5)) == [-2, -1, 0, 1, 2]
    with pytest.raises(ProtocolError, match="every number from -2 to 2 has been guessed"):
        draw.next()


def test_draw_memory_grows_with_guesses_not_with_the_range() -> None:
    # A membership list would make each draw slower as the game grows; the sparse
    # shuffle keeps at most one remapped slot per guess, whatever the range.
    draw = Draw(-BOUND_LIMIT, BOUND_LIMIT, random.Random(2))
    guesses = {draw.next() for _ in range(20_000)}
    assert len(guesses) == 20_000
    assert len(draw._moved) <= 20_000


def play(guesser: Guesser, *lines: str) -> list[protocol.Step]:
    return [guesser.handle(line) for line in lines]


def test_a_game_from_params_to_correct() -> None:
    guesser = Guesser(random.Random(3))
    started, number = play(guesser, "PARAMS 1 3", "NUMBER")
    assert started == protocol.Step(event=GameStarted(1, 3), game_guesses=0)
    guess = int(number.reply or "")
    assert guesser.state is State.GUESSED
    report = guesser.handle("REPORT CORRECT")
    assert report.event == Reported(guess, Decision.CORRECT)
    assert report.reply is None
    assert guesser.state is State.IDLE


DIALECT_TABLE = [
    # (word, decision, dialect): the table docs/protocol.md shows, written out once more.
    ("WARMER", Decision.WARMER, "ours"), ("COLDER", Decision.COLDER, "ours"),
    ("UNSURE", Decision.UNSURE, "ours"), ("CORRECT", Decision.CORRECT, "ours"),
    ("SAME", Decision.SAME, "ours"),
    ("Warmer", Decision.WARMER, "book"), ("Colder", Decision.COLDER, "book"),
    ("Unsure", Decision.UNSURE, "book"), ("Correct", Decision.CORRECT, "book"),
    ("近付いた", Decision.WARMER, "article"), ("遠ざかった", Decision.COLDER, "article"),
    ("不明", Decision.UNSURE, "article"), ("正解!", Decision.CORRECT, "article"),
    ("前回と同じ", Decision.SAME, "article"),
]


@pytest.mark.parametrize(("word", "decision", "dialect"), DIALECT_TABLE)
def test_every_dialects_decision_words(word: str, decision: Decision, dialect: str) -> None:
    guesser = Guesser(random.Random(4))
    steps = play(guesser, "PARAMS 1 9", "NUMBER", f"REPORT {word}")
    assert steps[2].event == Reported(int(steps[1].reply or ""), decision)
    assert VOCABULARIES[dialect].words[decision] == word


def test_the_server_accepts_exactly_the_dialects_words() -> None:
    table = {word: decision for word, decision, _ in DIALECT_TABLE}
    article = {word: decision for word, decision, dialect in DIALECT_TABLE
               if dialect == "article"}
    assert (table, article) == (DECISION_WORDS, SEED_WORDS)


@pytest.mark.parametrize("word", ["warmer", "WaRmEr", "correct", "Same", "SAME!", "正解"])
def test_a_word_in_no_dialect_is_refused_however_close(word: str) -> None:
    guesser = Guesser(random.Random(4))
    *_, refused = play(guesser, "PARAMS 1 9", "NUMBER", f"REPORT {word}")
    assert refused.reply == f"ERROR unknown decision {word!r}"
    assert guesser.state is State.GUESSED


@pytest.mark.parametrize(("vocabulary", "lines"), [
    (OURS, ["REPORT UNSURE", "REPORT SAME", "REPORT CORRECT"]),
    # The book has no word for SAME: its client says Unsure, and so does ours in its words.
    (BOOK, ["REPORT Unsure", "REPORT Unsure", "REPORT Correct"]),
    (ARTICLE, ["REPORT 不明", "REPORT 前回と同じ", "REPORT 正解!"]),
])
def test_the_judge_reports_in_its_vocabulary(vocabulary: Vocabulary, lines: list[str]) -> None:
    judge = Judge(Game(1, 5, 3, 5), vocabulary)
    decisions = [judge.judge(guess) for guess in (1, 5, 3)]
    assert decisions == [Decision.UNSURE, Decision.SAME, Decision.CORRECT]
    assert [judge.report_line(decision) for decision in decisions] == lines


@pytest.mark.parametrize("setup", [(), ("PARAMS 1 5",), ("PARAMS 1 5", "NUMBER"),
                                   ("PARAMS 1 5", "NUMBER", "REPORT CORRECT")])
@pytest.mark.parametrize("empty", ["PARAMS 0 -1", "PARAMS 10 9", "PARAMS -4 -5"])
def test_an_empty_range_ends_the_game_without_a_reply(setup: tuple[str, ...], empty: str) -> None:
    guesser = Guesser(random.Random(6))
    play(guesser, *setup)
    cleared = guesser.handle(empty)
    assert (cleared.reply, cleared.event, cleared.close) == (None, GameCleared(), False)
    assert guesser.state is State.IDLE
    assert guesser.handle("NUMBER").reply == f"ERROR {protocol.REFUSALS['NUMBER']}"
    assert guesser.handle("PARAMS 1 2").event == GameStarted(1, 2)


def test_an_empty_range_is_described_in_the_transcript() -> None:
    assert protocol.describe(GameCleared()) == "server: game cleared"


@pytest.mark.parametrize(("lines", "reason"), [
    (["HELLO"], "unknown command 'HELLO'"),
    (["PARAMS 1"], "PARAMS takes 2 argument(s), got 1"),
    (["NUMBER 3"], "NUMBER takes 0 argument(s), got 1"),
    (["PARAMS one 5"], "bound 'one' is not an integer"),
    (["PARAMS 1_0 5"], "bound '1_0' is not an integer"),
    (["PARAMS 5 1"], "lower bound 5 is greater than upper bound 1"),
    (["PARAMS 0 -2"], "lower bound 0 is greater than upper bound -2"),
    ([f"PARAMS {-BOUND_LIMIT} {-BOUND_LIMIT - 1}"], f"bound {-BOUND_LIMIT - 1} is outside"),
    ([f"PARAMS 0 {BOUND_LIMIT + 1}"], f"bound {BOUND_LIMIT + 1} is outside"),
    (["NUMBER"], "NUMBER before PARAMS: no game in progress"),
    (["PARAMS 1 5", "REPORT WARMER"], "REPORT before NUMBER: no guess to report"),
    (["PARAMS 1 5", "NUMBER", "REPORT HOTTER"], "unknown decision 'HOTTER'"),
    (["PARAMS 1 1", "NUMBER", "NUMBER"], "every number from 1 to 1 has been guessed"),
    ([""], "empty line"),
])
def test_each_bad_line_gets_one_error_and_the_game_goes_on(lines: list[str], reason: str) -> None:
    guesser = Guesser(random.Random(5))
    *_, refused = play(guesser, *lines)
    assert refused.reply is not None and refused.reply.startswith(f"ERROR {reason}")
    assert not refused.close
    assert guesser.handle("PARAMS 1 2").event == GameStarted(1, 2)


def test_an_oversized_line_is_answered_and_closes() -> None:
    step = Guesser(random.Random()).refuse(LineTooLong(1024))
    assert step == protocol.Step(reply="ERROR line longer than 1024 bytes", close=True)


@pytest.mark.parametrize(("guesses", "decisions"), [
    ([3], [Decision.CORRECT]),
    ([1, 2, 5, 4, 3], [Decision.UNSURE, Decision.WARMER, Decision.COLDER, Decision.WARMER,
                       Decision.CORRECT]),
    ([1, 5], [Decision.UNSURE, Decision.SAME]),
])
def test_judge_compares_each_guess_with_the_last(guesses: list[int],
                                                 decisions: list[Decision]) -> None:
    judge = Judge(Game(1, 5, 3, 5))
    assert [judge.judge(g) for g in guesses] == decisions
    assert judge.solved == (decisions[-1] is Decision.CORRECT)


@pytest.mark.parametrize(("line", "error", "match"), [
    ("ERROR server is full", ServerError, "server answered 'ERROR server is full'"),
    ("lots", ProtocolError, "not a number"),
    ("9", ProtocolError, "outside 1..5"),
])
def test_judge_refuses_a_bad_reply(line: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        Judge(Game(1, 5, 3, 5)).read_guess(line)


@pytest.mark.parametrize(("args", "match"), [
    ((5, 1, 3, 1), "greater than"), ((1, 5, 9, 1), "outside"), ((1, 5, 3, 0), "at least one"),
])
def test_game_validates_its_own_arguments(args: tuple[int, int, int, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Game(*args)


# --- the line buffer a transport feeds ------------------------------------------------


def test_the_line_buffer_frames_lines_however_the_bytes_arrive() -> None:
    buffer = protocol.LineBuffer(16)
    buffer.receive_data(b"NUM")
    assert buffer.next_line() is None and not buffer.has_line()
    buffer.receive_data(b"BER\nREPORT WA")
    assert buffer.has_line()
    assert buffer.next_line() == b"NUMBER\n"
    assert buffer.next_line() is None and buffer.buffered == len(b"REPORT WA")
    buffer.receive_data(b"RMER\n")
    assert buffer.next_line() == b"REPORT WARMER\n"
    buffer.receive_data(b"")
    with pytest.raises(protocol.PeerClosed) as gone:
        buffer.next_line()
    assert not gone.value.mid_line


def test_the_line_buffer_has_a_line_only_where_next_line_returns_one() -> None:
    for data in (b"1234567\n", b"12345678\n", b"123456789\nNUMBER\n", b"123"):
        buffer = protocol.LineBuffer(8)
        buffer.receive_data(data)
        try:
            taken = buffer.next_line() is not None
        except protocol.LineTooLong:
            taken = False
        buffer = protocol.LineBuffer(8)
        buffer.receive_data(data)
        assert buffer.has_line() == taken, data


def test_the_line_buffer_agrees_with_frame_on_every_edge() -> None:
    limit = 8
    for data in (b"1234567\n", b"12345678", b"12345678\n", b"123", b""):
        buffer = protocol.LineBuffer(limit)
        buffer.receive_data(data)
        buffer.receive_data(b"")
        try:
            framed: object = protocol.frame(data[:limit], limit)
        except protocol.GameError as error:
            framed = type(error), str(error)
        try:
            taken: object = buffer.next_line()
        except protocol.GameError as error:
            taken = type(error), str(error)
        assert taken == framed, data
