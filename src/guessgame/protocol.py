"""The game's rules and its line protocol, with no I/O.

Rules for this file: nothing here touches a socket, an event loop, a thread or a
clock. Every decision about a line - framing, decoding, parsing, validation, game
state, the guesses themselves - is made here, once. The threaded and asyncio layers
only move lines between a socket and these functions, so they cannot disagree.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

MAX_LINE_BYTES: Final = 1024
"""Default longest line, in bytes, counting its newline."""

BOUND_LIMIT: Final = 1_000_000_000
"""PARAMS bounds must lie within [-BOUND_LIMIT, BOUND_LIMIT]."""

NEWLINE: Final = b"\n"


class Decision(enum.Enum):
    """How a guess compares with the previous one, as the client judges it."""

    WARMER = "WARMER"
    COLDER = "COLDER"
    UNSURE = "UNSURE"
    CORRECT = "CORRECT"
    SAME = "SAME"


@dataclass(frozen=True)
class Vocabulary:
    """One family of programs' decision words: the word its client sends for each decision.

    The server reads every vocabulary's words (DECISION_WORDS); a client speaks one.
    Words are matched exactly, from an explicit table, rather than case-insensitively:
    each accepted word is one that a real program sends, the table is the whole list
    of them, and a near miss such as `warmer` gets an ERROR that says so.
    """

    name: str
    words: Mapping[Decision, str]

    def word(self, decision: Decision) -> str:
        # The book has no word for SAME: its client starts every round at Unsure and
        # changes that only for a closer, farther or correct guess.
        return self.words.get(decision, self.words[Decision.UNSURE])

    def report_line(self, decision: Decision) -> str:
        return f"REPORT {self.word(decision)}"


OURS: Final = Vocabulary("ours", {d: d.value for d in Decision})
BOOK: Final = Vocabulary("book", {
    # Effective Python, 2nd edition, item 61: its client and server (example_code/item_61.py).
    Decision.WARMER: "Warmer",
    Decision.COLDER: "Colder",
    Decision.UNSURE: "Unsure",
    Decision.CORRECT: "Correct",
})
ARTICLE: Final = Vocabulary("article", {
    # The Japanese article that ports the book's programs.
    Decision.WARMER: "近付いた",
    Decision.COLDER: "遠ざかった",
    Decision.UNSURE: "不明",
    Decision.CORRECT: "正解!",
    Decision.SAME: "前回と同じ",
})
VOCABULARIES: Final = {v.name: v for v in (OURS, BOOK, ARTICLE)}
"""The dialects `guessgame play --words` can speak, by name."""

SEED_WORDS: Final = {word: decision for decision, word in ARTICLE.words.items()}
DECISION_WORDS: Final = {word: decision for vocabulary in VOCABULARIES.values()
                         for decision, word in vocabulary.words.items()}
"""Every word the server accepts after REPORT, and the decision it stands for."""


class GameError(Exception):
    """Base class of every failure the game reports in one line."""


class ProtocolError(GameError):
    """A peer sent a line that breaks the protocol. The session answers and goes on."""

    closes_connection = False


class LineTooLong(ProtocolError):
    """A line exceeded the limit. The rest of it is not read, so the connection closes."""

    closes_connection = True

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"line longer than {limit} bytes")


class NotUTF8(ProtocolError):
    """A line's bytes are not UTF-8. The line is refused whole; the session goes on."""

    def __init__(self) -> None:
        super().__init__("line is not valid UTF-8")


class PeerClosed(GameError):
    """The peer closed the connection, possibly in the middle of a line."""

    def __init__(self, mid_line: bool = False) -> None:
        self.mid_line = mid_line
        super().__init__(
            "connection closed in the middle of a line" if mid_line else "connection closed"
        )


class ServerError(GameError):
    """The server answered ERROR."""


class TooManyConnections(ProtocolError):
    closes_connection = True

    def __init__(self, limit: int) -> None:
        super().__init__(f"server is full ({limit} connections); try again later")


class OutOfDescriptors(ProtocolError):
    """The server process has no file descriptor left to serve one more connection."""

    closes_connection = True

    def __init__(self) -> None:
        super().__init__("server is out of file descriptors; try again later")


class IdleTimeout(ProtocolError):
    closes_connection = True

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"no command for {seconds:g} seconds; closing the connection")


# --- framing -------------------------------------------------------------------------


def frame(raw: bytes, limit: int) -> bytes:
    """Check one bounded read (at most `limit` bytes) and return it as a complete line.

    The three outcomes of a readline(limit), which `LineBuffer` gives both flavours'
    connections, in the same order, however the bytes arrive.
    """
    if raw.endswith(NEWLINE):
        return raw
    if len(raw) >= limit:
        raise LineTooLong(limit)
    raise PeerClosed(mid_line=bool(raw))


class LineBuffer:
    """The receive side of the framing, with no I/O: bytes in, complete lines out.

    A connection feeds it whatever its socket gave (`receive_data`, b"" for the end of
    the stream) and takes lines out (`next_line`), as h11 and websockets do with events.
    A line longer than `limit` bytes (counting its newline) raises LineTooLong, and the
    end of the stream PeerClosed, each once the lines before it are taken: the same
    outcomes, in the same order, as `frame` gives a blocking reader.
    """

    __slots__ = ("_data", "_ended", "_limit")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._data = bytearray()
        self._ended = False

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            self._data += data
        else:
            self._ended = True

    def next_line(self) -> bytes | None:
        """The next complete line with its newline, or None until more data arrives."""
        data = self._data
        end = data.find(NEWLINE, 0, self._limit)
        if end >= 0:
            line = bytes(data[:end + 1])
            del data[:end + 1]
            return line
        if len(data) >= self._limit:
            raise LineTooLong(self._limit)
        if self._ended:
            raise PeerClosed(mid_line=bool(data))
        return None

    def has_line(self) -> bool:
        """Whether a whole line is buffered, so that `next_line` returns it: a newline
        within the limit (one beyond it ends a line `next_line` refuses as too long)."""
        return self._data.find(NEWLINE, 0, self._limit) >= 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet taken as lines."""
        return len(self._data)


def decode(line: bytes) -> str:
    """Turn a framed line into text, without its line ending."""
    try:
        return line.rstrip(b"\r\n").decode("utf-8")
    except UnicodeDecodeError:
        raise NotUTF8() from None


def encode(text: str) -> bytes:
    return text.encode("utf-8") + NEWLINE


def error_line(error: GameError) -> str:
    return f"ERROR {error}"


# --- the server side: the guesser ----------------------------------------------------


class State(enum.Enum):
    IDLE = "no game in progress"
    READY = "game in progress"
    GUESSED = "guess waiting for a REPORT"


# Which commands each state accepts, and the error for the ones it refuses. Every
# other transition is in Guesser's handlers; keeping this as data keeps it readable.
# They are: PARAMS -> READY, or IDLE for an empty range (hi == lo - 1); NUMBER ->
# GUESSED; REPORT -> IDLE after CORRECT, else READY.
ACCEPTS: Final = {
    State.IDLE: {"PARAMS"},
    State.READY: {"PARAMS", "NUMBER"},
    State.GUESSED: {"PARAMS", "NUMBER", "REPORT"},
}
REFUSALS: Final = {
    "NUMBER": "NUMBER before PARAMS: no game in progress",
    "REPORT": "REPORT before NUMBER: no guess to report",
}
ARITY: Final = {"PARAMS": 2, "NUMBER": 0, "REPORT": 1}


@dataclass(frozen=True)
class GameStarted:
    lower: int
    upper: int


@dataclass(frozen=True)
class GameCleared:
    """An empty range (`PARAMS 0 -1`) ended whatever game there was, with no reply."""


@dataclass(frozen=True)
class Reported:
    guess: int
    decision: Decision


Event = GameStarted | GameCleared | Reported


def describe(event: Event) -> str:
    """The server's transcript line for an event."""
    if isinstance(event, GameStarted):
        return f"server: new game {event.lower}..{event.upper}"
    if isinstance(event, GameCleared):
        return "server: game cleared"
    return f"server: {event.guess} is {event.decision.value}"


@dataclass(frozen=True)
class Step:
    """What the session must do after one line: send `reply`, record `event`, maybe close.

    `guess` is the number a NUMBER drew, which `reply` carries. `game_guesses` is set
    only on a line that may start or end a game (a PARAMS, a REPORT CORRECT): the NUMBER
    replies since the previous PARAMS. No other line starts or ends a game, so a session
    consults its results only when it is set."""

    reply: str | None = None
    event: Event | None = None
    close: bool = False
    guess: int | None = None
    game_guesses: int | None = None


class Draw:
    """Numbers from [lower, upper] in random order, never the same one twice.

    A sparse Fisher-Yates shuffle: each draw is O(1) however long the game runs, and
    memory grows with the number of guesses, not with the size of the range.
    """

    def __init__(self, lower: int, upper: int, rng: random.Random) -> None:
        self.lower, self.upper = lower, upper
        self._left = upper - lower + 1
        self._moved: dict[int, int] = {}
        self._rng = rng

    def next(self) -> int:
        if self._left == 0:
            raise ProtocolError(f"every number from {self.lower} to {self.upper} has been guessed")
        pick = self._rng.randrange(self._left)
        last = self._left - 1
        value = self._moved.get(pick, pick)
        self._moved[pick] = self._moved.pop(last, last)
        self._left = last
        return self.lower + value


def parse_bound(text: str) -> int:
    # int() also accepts "1_0" and " 1"; the protocol wants plain decimal digits.
    digits = text[1:] if text[:1] == "-" else text
    if not (digits.isascii() and digits.isdigit()):
        raise ProtocolError(f"bound {text[:40]!r} is not an integer")
    # Count digits before converting: a long line may hold thousands of them, and int()
    # refuses more than 4300 with a ValueError.
    if len(digits.lstrip("0")) > len(str(BOUND_LIMIT)):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ProtocolError(f"bound {shown} is outside -{BOUND_LIMIT}..{BOUND_LIMIT}")
    value = int(text)
    if abs(value) > BOUND_LIMIT:
        raise ProtocolError(f"bound {value} is outside -{BOUND_LIMIT}..{BOUND_LIMIT}")
    return value


class Guesser:
    """The server side of one connection: takes lines, returns Steps."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.state = State.IDLE
        self._draw: Draw | None = None
        self._last: int | None = None
        self.guesses = 0
        """NUMBER replies since the last PARAMS."""

    def handle(self, line: str) -> Step:
        try:
            return self._dispatch(line)
        except ProtocolError as error:
            return self.refuse(error)

    def refuse(self, error: ProtocolError) -> Step:
        return Step(reply=error_line(error), close=error.closes_connection)

    def _dispatch(self, line: str) -> Step:
        if not line.strip():
            raise ProtocolError("empty line")
        command, *args = line.split(" ")
        if command not in ARITY:
            raise ProtocolError(f"unknown command {command[:40]!r}")
        if len(args) != ARITY[command]:
            raise ProtocolError(f"{command} takes {ARITY[command]} argument(s), got {len(args)}")
        if command not in ACCEPTS[self.state]:
            raise ProtocolError(REFUSALS[command])
        if command == "PARAMS":
            return self._params(*args)
        if command == "NUMBER":
            return self._number()
        return self._report(*args)

    def _params(self, low: str, high: str) -> Step:
        lower, upper = parse_bound(low), parse_bound(high)
        if upper == lower - 1:
            # An empty range: the book's client sends `PARAMS 0 -1` after every game to
            # clear it, and reads no reply. Any wider reversal means nothing: an ERROR.
            self._draw, self._last, self.state = None, None, State.IDLE
            return Step(event=GameCleared(), game_guesses=self._restart_count())
        if lower > upper:
            raise ProtocolError(f"lower bound {lower} is greater than upper bound {upper}")
        self._draw, self._last, self.state = Draw(lower, upper, self._rng), None, State.READY
        return Step(event=GameStarted(lower, upper), game_guesses=self._restart_count())

    def _restart_count(self) -> int:
        """At a PARAMS: the guesses counted since the previous one, and the count back
        to 0, whether this PARAMS opens a game or clears it."""
        ended, self.guesses = self.guesses, 0
        return ended

    def _number(self) -> Step:
        assert self._draw is not None  # ACCEPTS guarantees a game; not input validation
        self._last = self._draw.next()
        self.state = State.GUESSED
        self.guesses += 1
        return Step(reply=str(self._last), guess=self._last)

    def _report(self, word: str) -> Step:
        decision = DECISION_WORDS.get(word)
        if decision is None:
            raise ProtocolError(f"unknown decision {word[:40]!r}")
        assert self._last is not None
        if decision is Decision.CORRECT:
            self.state = State.IDLE
            return Step(event=Reported(self._last, decision), game_guesses=self.guesses)
        self.state = State.READY
        return Step(event=Reported(self._last, decision))


# --- the client side: the judge ------------------------------------------------------

NUMBER_REQUEST: Final = "NUMBER"


@dataclass(frozen=True)
class Game:
    lower: int
    upper: int
    secret: int
    guesses: int

    def __post_init__(self) -> None:
        for value in (self.lower, self.upper):
            if abs(value) > BOUND_LIMIT:
                raise ValueError(f"bound {value} is outside -{BOUND_LIMIT}..{BOUND_LIMIT}")
        if self.lower > self.upper:
            raise ValueError(f"lower bound {self.lower} is greater than upper {self.upper}")
        if not self.lower <= self.secret <= self.upper:
            raise ValueError(f"secret {self.secret} is outside {self.lower}..{self.upper}")
        if self.guesses < 1:
            raise ValueError("a game needs at least one guess")

    @property
    def params_line(self) -> str:
        return f"PARAMS {self.lower} {self.upper}"

    def header(self) -> str:
        return f"client: game {self.lower}..{self.upper}, secret {self.secret}"


SEED_SCENARIO: Final = (Game(1, 5, 3, 5), Game(10, 15, 12, 6))


class Judge:
    """The client side of one game: reads guesses, decides how they compare, and words
    each decision in the client's vocabulary."""

    def __init__(self, game: Game, vocabulary: Vocabulary = OURS) -> None:
        self.game = game
        self.vocabulary = vocabulary
        self._last_distance: int | None = None
        self.rounds: list[tuple[int, Decision]] = []

    @property
    def solved(self) -> bool:
        return self._last_distance == 0

    def read_guess(self, line: str) -> int:
        if line.startswith("ERROR"):
            raise ServerError(f"server answered {line[:200]!r}")
        try:
            guess = int(line)
        except ValueError:
            raise ProtocolError(f"server sent {line[:200]!r}, which is not a number") from None
        if not self.game.lower <= guess <= self.game.upper:
            game = self.game
            raise ProtocolError(f"server guessed {guess}, outside {game.lower}..{game.upper}")
        return guess

    def judge(self, guess: int) -> Decision:
        distance = abs(guess - self.game.secret)
        last, self._last_distance = self._last_distance, distance
        if distance == 0:
            decision = Decision.CORRECT
        elif last is None:
            decision = Decision.UNSURE
        elif distance < last:
            decision = Decision.WARMER
        elif distance > last:
            decision = Decision.COLDER
        else:
            decision = Decision.SAME
        self.rounds.append((guess, decision))
        return decision

    def report_line(self, decision: Decision) -> str:
        return self.vocabulary.report_line(decision)


def round_line(guess: int, decision: Decision) -> str:
    return f"client: {guess} is {decision.value}"


def farewell(guesser: Guesser, gone: PeerClosed) -> str:
    """The one log line for a peer that left: where in the game it went."""
    if gone.mid_line:
        return "peer closed the connection in the middle of a line"
    if guesser.state is State.IDLE:
        return "peer closed the connection between games"
    return "peer closed the connection in the middle of a game"
