"""The load generator: many clients of the protocol in one process, on asyncio Protocols.

It runs in its own process so that its CPU is never counted as the server's, and it
measures its own CPU share: a share near 100% of a core means the numbers describe the
load generator, not the server. Protocols rather than streams keep it cheap per round.

How each client talks (`--pattern`, see PATTERNS):
- `book`: as the book's client does. `PARAMS` once, then `NUMBER`; after each reply
  `REPORT WARMER` and the next `NUMBER` as two separate writes; one long game.
- `batched`: one write per round (`REPORT UNSURE` and the next `NUMBER` together), a
  fresh game every `ROUNDS_PER_GAME` rounds so that the server's per-game memory stays
  small. It never reports CORRECT.
- `short`: short games, one per connection: `PARAMS`, `SHORT_ROUNDS` rounds (written
  as `book` writes them), `REPORT CORRECT`, then a new connection.

Throughput mode: connect, warm up, measure `--windows` windows one after another, print
one JSON line on stdout with each window's figures and their medians.
Two ways to arrive (`--arrival`): `start-line` has every client play one round and wait
until all of them have had a reply, so the window measures a full house; `burst` has
every client connect at once and play at once, as real clients do, so the server must
admit newcomers while the ones already admitted keep it busy. Either way each client's
time to first reply (from its connect() to its first answer) is reported.
Idle mode (`--idle N`): open N connections that each play one round, print
`ready <json>`, hold them until a line (or EOF) arrives on stdin, then close.
The server's CPU time is read from /proc by this process at the window's edges, so
the window the rounds were counted in and the window the CPU was counted in are the same.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import math
import os
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

RANGE = (1, 1_000_000_000)
ROUNDS_PER_GAME = 100
CONNECTS_IN_FLIGHT = 256
"""Connection attempts at once: more would overflow the listen and SYN backlogs."""
CONNECT_TIMEOUT = 20.0
STALL_SECONDS = 2.0
"""A client still waiting this long for a reply when the window ends is stalled."""
HOLD_TIMEOUT = 300.0
"""In idle mode, give up holding the connections after this long without a word."""

ARRIVALS = ("start-line", "burst")
PATTERNS = ("book", "batched", "short")
SHORT_ROUNDS = (5, 10)
"""A `short` game lasts from 5 to 10 rounds, the client's own choice each game."""

PARAMS = f"PARAMS {RANGE[0]} {RANGE[1]}\n".encode()
NUMBER = b"NUMBER\n"
FIRST = PARAMS + NUMBER
NEXT = b"REPORT UNSURE\nNUMBER\n"
NEXT_GAME = b"REPORT UNSURE\n" + PARAMS + NUMBER
WARMER = b"REPORT WARMER\n"
CORRECT = b"REPORT CORRECT\n"


@dataclass
class Run:
    """State shared by every client of one run."""

    measuring: bool = False
    holding: bool = True  # until every client has had its first reply
    closing: bool = False
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    answered: int = 0
    everyone_answered: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0
    first_replies: list[float] = field(default_factory=list)
    pattern: str = "batched"
    address: tuple[str, int] = ("127.0.0.1", 0)
    reconnects: set[asyncio.Task[Any]] = field(default_factory=set)
    rng: random.Random = field(default_factory=lambda: random.Random(61))


class Client(asyncio.Protocol):
    """One connection playing rounds as fast as the server answers."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.sent_at = 0.0
        self.connect_at = 0.0
        self.rounds = 0
        self.window_rounds = 0
        self.hold = False  # idle mode: play one round, then stay silent
        self.held = False  # waiting at the start line for the other clients
        self.failed = False
        self.game_rounds = 0
        self.game_length = SHORT_ROUNDS[0]
        self.leaving = 0  # connections this client closed itself, not yet reported lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)
        self.game_rounds = 0
        if self.run.pattern == "batched":
            self.sent_at = time.perf_counter()
            self.transport.write(FIRST)
            return
        if self.run.pattern == "short":
            self.game_length = self.run.rng.randint(*SHORT_ROUNDS)
        self.transport.write(PARAMS)
        self.sent_at = time.perf_counter()
        self.transport.write(NUMBER)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\n")
            if end < 0:
                return
            line, self.buffer = self.buffer[:end], self.buffer[end + 1:]
            self._reply(line)

    def _reply(self, line: bytes) -> None:
        now = time.perf_counter()
        if not line[:1].isdigit():
            self._fail(f"server answered {line[:80]!r}")
            return
        self.rounds += 1
        run = self.run
        if run.measuring:
            self.window_rounds += 1
            run.latencies.append(now - self.sent_at)
        if self.rounds == 1:
            run.first_replies.append(now - self.connect_at)
            run.answered += 1
            if run.answered == run.expected:
                run.everyone_answered.set()
        if self.hold or run.closing:
            self.sent_at = 0.0
            return
        if run.holding:
            self.held, self.sent_at = True, 0.0
            return
        self.sent_at = now
        self._next_round()

    def _next_round(self) -> None:
        """Ask for the next guess, in this run's pattern."""
        transport = self.transport
        assert transport is not None
        pattern = self.run.pattern
        if pattern == "batched":
            transport.write(NEXT_GAME if self.rounds % ROUNDS_PER_GAME == 0 else NEXT)
            return
        self.game_rounds += 1
        if pattern == "short" and self.game_rounds >= self.game_length:
            transport.write(CORRECT)
            self.leaving += 1
            transport.close()
            task = asyncio.ensure_future(self._reconnect())
            self.run.reconnects.add(task)
            task.add_done_callback(self.run.reconnects.discard)
            return
        transport.write(WARMER)  # two writes, as the book's client makes them
        transport.write(NUMBER)

    async def _reconnect(self) -> None:
        """A short game is over: the next one on a new connection."""
        self.transport = None
        try:
            await asyncio.get_running_loop().create_connection(lambda: self, *self.run.address)
        except OSError as error:
            if not self.run.closing:
                self._fail(f"reconnect failed: {error}")

    def go(self) -> None:
        if self.held and self.transport is not None and not self.failed:
            self.held, self.sent_at = False, time.perf_counter()
            self._next_round()

    def _fail(self, why: str) -> None:
        if not self.failed:
            self.failed = True
            self.run.failures.append(why)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.leaving:  # a short game's end: the client closed it
            self.leaving -= 1
            return
        if not self.run.closing and not self.failed:
            self.failed = True
            self.run.failures.append(f"connection lost: {exc or 'closed by the server'}")

    def stalled(self, now: float) -> bool:
        waiting = self.sent_at and now - self.sent_at > STALL_SECONDS
        return not self.failed and (self.window_rounds == 0 or bool(waiting))


def server_cpu(pid: int | None) -> float:
    """CPU seconds (user + system, every thread) the server has used so far."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def connect_all(host: str, port: int, count: int, run: Run,
                      hold: bool = False) -> list[Client]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
    run.expected = count

    async def one() -> Client | None:
        client = Client(run)
        client.hold = hold
        async with gate:
            client.connect_at = time.perf_counter()
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await loop.create_connection(lambda: client, host, port)
            except (OSError, TimeoutError) as error:
                run.failures.append(f"connect failed: {error or 'timed out'}")
                run.expected -= 1
                return None
        return client

    made = await asyncio.gather(*(one() for _ in range(count)))
    if run.expected == 0 or run.answered >= run.expected:
        run.everyone_answered.set()
    return [client for client in made if client is not None]


async def close_all(clients: list[Client], run: Run) -> None:
    run.closing = True
    for task in list(run.reconnects):
        task.cancel()
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    await asyncio.sleep(0)  # let connection_lost run before the loop closes


async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    run = Run(holding=args.arrival == "start-line", pattern=args.pattern,
              address=(args.host, args.port))
    begun = time.perf_counter()
    clients = await connect_all(args.host, args.port, args.clients, run)
    if run.holding:
        # Every client plays its first round, then waits at the start line, so that the
        # window measures every client in play. How long admitting them took is
        # reported on its own.
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await run.everyone_answered.wait()
        except TimeoutError:
            pass  # the ones that never answered are counted as stalled below
        admitted = time.perf_counter() - begun
        run.holding = False
        for client in clients:
            client.go()
        await asyncio.sleep(args.warmup)
    else:
        # A burst: nobody waits for anybody. The warm-up starts with the first connect,
        # so newcomers still being admitted compete with those already playing.
        await asyncio.sleep(max(0.0, args.warmup - (time.perf_counter() - begun)))
        admitted = time.perf_counter() - begun if run.everyone_answered.is_set() else math.nan
    windows = [await window(args, clients, run) for _ in range(args.windows)]
    ended = time.perf_counter()
    stalled = sum(client.stalled(ended) for client in clients)
    unanswered = sum(client.rounds == 0 and not client.failed for client in clients)
    await close_all(clients, run)
    latencies = sorted(run.latencies)
    first = sorted(run.first_replies)
    rounds = sum(w["rounds"] for w in windows)
    return {
        "clients": args.clients,
        "arrival": args.arrival,
        "pattern": args.pattern,
        "connected": len(clients),
        "first_reply_p50_ms": percentile(first, 0.50) * 1e3,
        "first_reply_p99_ms": percentile(first, 0.99) * 1e3,
        "first_reply_max_ms": first[-1] * 1e3 if first else float("nan"),
        "unanswered": unanswered,
        "admit_s": admitted,
        "admitted": run.answered,
        "window_s": sum(w["window_s"] for w in windows),
        "rounds": rounds,
        "rounds_per_s": median([w["rounds_per_s"] for w in windows]),
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "server_cpu_s": sum(w["server_cpu_s"] for w in windows),
        "server_cpu_us_per_round": median([w["server_cpu_us_per_round"] for w in windows]),
        "loadgen_cpu_share": median([w["loadgen_cpu_share"] for w in windows]),
        "windows": windows,
        "failed": len(run.failures) + unanswered,
        "stalled": stalled,
        "failures": sorted(set(run.failures))[:5],
    }


async def window(args: argparse.Namespace, clients: list[Client], run: Run) -> dict[str, Any]:
    """One measured window: its rounds, and the server's and this process's CPU in it."""
    for client in clients:
        client.window_rounds = 0
    started, cpu, server = time.perf_counter(), time.process_time(), server_cpu(args.server_pid)
    run.measuring = True
    await asyncio.sleep(args.duration)
    run.measuring = False
    wall = time.perf_counter() - started
    cpu, server = time.process_time() - cpu, server_cpu(args.server_pid) - server
    rounds = sum(client.window_rounds for client in clients)
    return {"window_s": wall, "rounds": rounds, "rounds_per_s": rounds / wall,
            "server_cpu_s": server,
            "server_cpu_us_per_round": server / rounds * 1e6 if rounds else None,
            "loadgen_cpu_share": cpu / wall}


def median(values: list[Any]) -> Any:
    """The median of the values that are there (None where none is)."""
    present = sorted(value for value in values if value is not None)
    return statistics.median(present) if present else None


async def idle(args: argparse.Namespace) -> dict[str, Any]:
    run = Run()
    clients = await connect_all(args.host, args.port, args.idle, run, hold=True)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT * 3):
            await run.everyone_answered.wait()
    except TimeoutError:
        pass
    answered = sum(client.rounds > 0 for client in clients)
    report = {"idle": args.idle, "connected": len(clients), "answered": answered,
              "failed": len(run.failures), "failures": sorted(set(run.failures))[:5]}
    print("ready", json.dumps(report), flush=True)
    await wait_for_stdin()
    report["failed"] = len(run.failures)  # connections the server dropped while idle
    await close_all(clients, run)
    return report


async def wait_for_stdin() -> None:
    loop = asyncio.get_running_loop()
    said = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), said.set)
    try:
        async with asyncio.timeout(HOLD_TIMEOUT):
            await said.wait()
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(sys.stdin.fileno())


def fastest_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: the cheaper the load generator, the less it disturbs."""
    try:
        module = importlib.import_module("uvloop")
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = module.new_event_loop
    return factory


def runner_is_uvloop() -> bool:
    return fastest_loop() is not None


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m guessgame.bench.loadgen")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-pid", type=int)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--arrival", choices=ARRIVALS, default="start-line")
    parser.add_argument("--pattern", choices=PATTERNS, default="batched")
    parser.add_argument("--windows", type=int, default=1,
                        help="windows of --duration seconds, one after another")
    parser.add_argument("--idle", type=int, help="hold this many idle connections instead")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    raise_fd_limit()
    with asyncio.Runner(loop_factory=fastest_loop()) as runner:
        result = runner.run(idle(args) if args.idle else throughput(args))
    result["loadgen_loop"] = "uvloop" if runner_is_uvloop() else "asyncio"
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
