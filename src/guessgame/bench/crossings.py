"""`guessgame bench --crossings`: what one bridge crossing costs, and what the wait
graph (always on) and the trace (on request) add to it.

Each mode runs the same crossings in one process: run_in_loop from a thread to a
coroutine that returns at once, and run_in_thread from a task to a function that
returns at once. CPU is the whole process's (loop thread, caller and workers), per
crossing; the best of a few alternating rounds is kept, as the machine is shared.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from guessgame import trace, waits
from guessgame.bridge import Bridge

MODES = ("no wait graph", "wait graph (default)", "wait graph + trace on")


@contextlib.contextmanager
def mode(name: str) -> Iterator[None]:
    """Run with the wait graph's hooks stubbed out, as shipped, or with tracing on too."""
    saved = {key: getattr(waits, key) for key in ("begin", "begin_thread", "end", "set_target")}
    sink: Callable[[trace.Record], None] = lambda record: None  # noqa: E731
    if name == MODES[0]:
        waits.begin = waits.begin_thread = lambda *a, **k: 0  # type: ignore[assignment]
        waits.end = waits.set_target = lambda *a, **k: None  # type: ignore[assignment]
    if name == MODES[2]:
        trace.add_sink(sink, flows=True)
    try:
        yield
    finally:
        if name == MODES[2]:
            trace.remove_sink(sink)
        for key, value in saved.items():
            setattr(waits, key, value)


async def _nothing() -> None:
    return None


def _none() -> None:
    return None


def _timed(run: Callable[[], Any], count: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return ((time.perf_counter() - wall) / count * 1e6,
            (time.process_time() - cpu) / count * 1e6)


def measure(count: int = 5000, rounds: int = 3) -> list[dict[str, Any]]:
    bridge = Bridge.start_loop_thread(max_workers=4)

    def to_loop() -> None:
        for _ in range(count):
            bridge.run_in_loop(_nothing())

    async def calls() -> None:
        for _ in range(count):
            await bridge.run_in_thread("bench", _none)

    def to_thread() -> None:
        bridge.run_in_loop(calls())

    best: dict[tuple[str, str], tuple[float, float]] = {}
    try:
        for _ in range(rounds):
            for name in MODES:
                with mode(name):
                    for bridge_name, run in (("run_in_loop", to_loop),
                                             ("run_in_thread", to_thread)):
                        got = _timed(run, count)
                        old = best.get((bridge_name, name))
                        best[bridge_name, name] = got if old is None else min(old, got)
    finally:
        bridge.close()
    rows = []
    for (bridge_name, name), (wall, cpu) in best.items():
        rows.append({"bridge": bridge_name, "mode": name, "wall_us": round(wall, 2),
                     "cpu_us": round(cpu, 2)})
    return rows


def bookkeeping(count: int = 200_000) -> dict[str, float]:
    """ns per call of the pieces alone: a wait recorded and ended, and one trace line
    sent to a sink that drops it (the least tracing on can cost)."""
    begin, end = waits.begin_thread, waits.end
    start = time.perf_counter()
    for _ in range(count):
        end(begin("bench"))
    wait_ns = (time.perf_counter() - start) / count * 1e9
    sink: Callable[[trace.Record], None] = lambda record: None  # noqa: E731
    trace.add_sink(sink)
    try:
        start = time.perf_counter()
        for _ in range(count):
            trace.crossing("bench", "thread->loop", "x")
        trace_ns = (time.perf_counter() - start) / count * 1e9
    finally:
        trace.remove_sink(sink)
    start = time.perf_counter()
    for _ in range(count):
        if trace.enabled:
            trace.crossing("bench", "thread->loop", "x")
    off_ns = (time.perf_counter() - start) / count * 1e9
    return {"wait_recorded_ns": round(wait_ns), "trace_line_ns": round(trace_ns),
            "trace_off_ns": round(off_ns)}


def report(rows: list[dict[str, Any]], parts: dict[str, float]) -> str:
    lines = [f"{'bridge':<14} {'mode':<24} {'wall µs':>8} {'CPU µs':>8}   per crossing"]
    for row in rows:
        lines.append(f"{row['bridge']:<14} {row['mode']:<24} {row['wall_us']:>8.2f} "
                     f"{row['cpu_us']:>8.2f}")
    lines.append("")
    lines.append(f"one wait recorded and ended: {parts['wait_recorded_ns']} ns; one trace line "
                 f"to a sink that drops it: {parts['trace_line_ns']} ns; the trace's check "
                 f"with tracing off: {parts['trace_off_ns']} ns")
    return "\n".join(lines)


def run(quiet: bool) -> int:
    print(report(measure(), bookkeeping()))
    return 0
