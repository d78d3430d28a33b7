"""`guessgame bench --crossings`: what one bridge crossing costs with nothing observing
the seam (guessgame.crossing), and what the default observers (task names and the wait
graph, which every command attaches) and the trace (on request) add to it.

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

from guessgame import crossing, observe
from guessgame.bridge import Bridge
from guessgame.observe import trace

MODES = ("nothing observing", "task names + wait graph (default)", "default + trace on")


@contextlib.contextmanager
def mode(name: str) -> Iterator[None]:
    """Run with the seam's observers as `name` says, then put back what was attached."""
    saved = crossing.observers()
    for observer in saved:
        crossing.detach(observer)
    sink: Callable[[trace.Record], None] = lambda record: None  # noqa: E731
    if name != MODES[0]:
        observe.attach_defaults()
    if name == MODES[2]:
        trace.add_sink(sink, flows=True)
    try:
        yield
    finally:
        if name == MODES[2]:
            trace.remove_sink(sink)
        for observer in crossing.observers():
            crossing.detach(observer)
        for observer in saved:
            crossing.attach(observer)


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
    """ns per call of the pieces alone: a call's crossing announced and returned with
    the default observers, one trace line sent to a sink that drops it (the least
    tracing on can cost), and the seam's one check with nothing attached."""
    with mode(MODES[1]):
        start = time.perf_counter()
        for _ in range(count):
            crossing.returned(crossing.sent("run_in_executor", "loop->thread", "x"))
        wait_ns = (time.perf_counter() - start) / count * 1e9
    sink: Callable[[trace.Record], None] = lambda record: None  # noqa: E731
    trace.add_sink(sink)
    try:
        start = time.perf_counter()
        for _ in range(count):
            trace.event("bridge", "bench thread->loop x")
        trace_ns = (time.perf_counter() - start) / count * 1e9
    finally:
        trace.remove_sink(sink)
    with mode(MODES[0]):
        start = time.perf_counter()
        for _ in range(count):
            if crossing.observed:
                crossing.sent("bench", "thread->loop", "x")
        off_ns = (time.perf_counter() - start) / count * 1e9
    return {"wait_recorded_ns": round(wait_ns), "trace_line_ns": round(trace_ns),
            "trace_off_ns": round(off_ns)}


def report(rows: list[dict[str, Any]], parts: dict[str, float]) -> str:
    lines = [f"{'bridge':<14} {'mode':<24} {'wall µs':>8} {'CPU µs':>8}   per crossing"]
    for row in rows:
        lines.append(f"{row['bridge']:<14} {row['mode']:<24} {row['wall_us']:>8.2f} "
                     f"{row['cpu_us']:>8.2f}")
    lines.append("")
    lines.append(f"one call announced and returned, default observers: "
                 f"{parts['wait_recorded_ns']} ns; one trace line to a sink that drops it: "
                 f"{parts['trace_line_ns']} ns; the seam's check with nothing attached: "
                 f"{parts['trace_off_ns']} ns")
    return "\n".join(lines)


def run(quiet: bool) -> int:
    print(report(measure(), bookkeeping()))
    return 0
