"""What `guessgame run` costs a program of one's own: `python -m guessgame.bench.own_program_cost`.

The program (written here the plain way, with nothing of guessgame in it) runs an event
loop in a thread of its own and makes ROUND_TRIPS `run_coroutine_threadsafe(...).result()`
calls from the main thread. It runs as `python PROGRAM.py` and as `python -m guessgame run
PROGRAM.py` (no --trace, no --debug: the wait graph and task names attached, as always),
alternated, ROUNDS times each, in one run. Two CPU figures per process, each the median
over the rounds: the round trips alone (the program's own process_time around them) and
the whole process (from start to exit, imports included). The report is their ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Final

ROUND_TRIPS: Final = 10_000
ROUNDS: Final = 5

PROGRAM: Final = '''\
import asyncio
import sys
import threading
import time


async def echo(number):
    return number


def main(count):
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="loop")
    thread.start()
    started = time.process_time()
    for number in range(count):
        assert asyncio.run_coroutine_threadsafe(echo(number), loop).result() == number
    spent = time.process_time() - started
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()
    print(spent)


main(int(sys.argv[1]))
'''


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(command: list[str]) -> tuple[float, float]:
    """(CPU of the round trips, CPU of the whole process), in seconds."""
    before = children_cpu()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(done.stdout.strip()), children_cpu() - before


def compare(round_trips: int, rounds: int) -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "round_trips.py")
        with open(path, "w") as file:
            file.write(PROGRAM)
        commands = {"python": [sys.executable, path, str(round_trips)],
                    "guessgame run": [sys.executable, "-m", "guessgame", "run", path,
                                      str(round_trips)]}
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(rounds):  # alternated, so that a slower spell hits both alike
            for name, command in commands.items():
                runs[name].append(measure(command))
    return {name: (statistics.median(r[0] for r in taken),
                   statistics.median(r[1] for r in taken)) for name, taken in runs.items()}


def report(figures: dict[str, tuple[float, float]], round_trips: int, rounds: int) -> str:
    plain, ours = figures["python"], figures["guessgame run"]
    return "\n".join([
        f"{round_trips} run_coroutine_threadsafe round trips, median CPU of {rounds} "
        "alternated runs each:",
        f"  python PROGRAM.py:         {plain[0]:.3f} s round trips, {plain[1]:.3f} s process",
        f"  guessgame run PROGRAM.py:  {ours[0]:.3f} s round trips, {ours[1]:.3f} s process",
        f"  ratio: {ours[0] / plain[0]:.2f}x round trips, {ours[1] / plain[1]:.2f}x process",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m guessgame.bench.own_program_cost",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=ROUND_TRIPS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args(argv)
    print(report(compare(args.round_trips, args.rounds), args.round_trips, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
