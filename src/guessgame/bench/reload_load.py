"""Load for the reload cell: clients that play whole games, reconnecting after each.

Unlike the throughput load generator, whose clients keep one connection and never end
a game, these clients end every game (the server finds the secret) and open a new
connection for the next, so that across a reload every new game lands on the new
stage while the old ones finish on the old. Every round is checked: the guess lies in
the range and was not guessed before in that game. Runs `--duration` seconds in its
own process and prints one JSON line: games, failures by kind, round-trip latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from guessgame.bench.loadgen import fastest_loop, percentile, raise_fd_limit

GAME_TIMEOUT = 10.0
"""A game that takes this long has hung: a failure, not a slow game."""


class InvalidRound(Exception):
    """The server broke the rules of a game."""


@dataclass
class Tally:
    games: int = 0
    rounds: int = 0
    latencies: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def fail(self, kind: str, example: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1
        if len(self.examples) < 5:
            self.examples.append(example)


async def play_one(host: str, port: int, rng: random.Random, tally: Tally) -> None:
    lower = rng.randint(1, 100)
    upper = lower + rng.randint(0, 9)
    secret = rng.randint(lower, upper)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"PARAMS {lower} {upper}\nNUMBER\n".encode())
        guessed: set[int] = set()
        while True:
            asked = time.perf_counter()
            line = await reader.readline()
            if not line.endswith(b"\n"):
                raise ConnectionResetError("closed by the server in the middle of a game")
            tally.latencies.append(time.perf_counter() - asked)
            text = line.decode(errors="replace").strip()
            guess = int(text) if text.lstrip("-").isdigit() else None
            if guess is None or not lower <= guess <= upper or guess in guessed:
                raise InvalidRound(f"{text[:40]!r} after {sorted(guessed)} in {lower}..{upper}")
            guessed.add(guess)
            tally.rounds += 1
            if guess == secret:
                writer.write(b"REPORT CORRECT\n")
                await writer.drain()
                return
            writer.write(b"REPORT COLDER\nNUMBER\n")
    finally:
        writer.close()
        await writer.wait_closed()


async def player(host: str, port: int, number: int, until: float, tally: Tally) -> None:
    rng = random.Random(number)
    while time.monotonic() < until:
        try:
            async with asyncio.timeout(GAME_TIMEOUT):
                await play_one(host, port, rng, tally)
        except ConnectionRefusedError as error:
            tally.fail("refused", str(error))
        except ConnectionResetError as error:
            tally.fail("reset", str(error))
        except InvalidRound as error:
            tally.fail("invalid", str(error))
        except (OSError, TimeoutError) as error:
            tally.fail("other", f"{type(error).__name__}: {error}")
        else:
            tally.games += 1


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tally = Tally()
    started = time.monotonic()
    await asyncio.gather(*(player(args.host, args.port, number, started + args.duration, tally)
                           for number in range(args.clients)))
    wall = time.monotonic() - started
    latencies = sorted(tally.latencies)
    return {"clients": args.clients, "wall_s": wall, "games": tally.games,
            "games_per_s": tally.games / wall, "rounds": tally.rounds,
            "p50_ms": percentile(latencies, 0.50) * 1e3,
            "p99_ms": percentile(latencies, 0.99) * 1e3,
            "failed": sum(tally.failures.values()), "failures_by_kind": tally.failures,
            "failures": tally.examples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m guessgame.bench.reload_load")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args(argv)
    raise_fd_limit()
    with asyncio.Runner(loop_factory=fastest_loop()) as runner:
        result = runner.run(run(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
