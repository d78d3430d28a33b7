"""`guessgame bench --crossings`: what one bridge crossing costs with nothing observing
the seam (guessgame.crossing), and what the default observers (task names and the wait
graph, which every command attaches) and the trace (on request) add to it.

Each mode runs the same crossings in one process: run_in_loop from a thread to a
coroutine that returns at once, and run_in_thread from a task to a function that
returns at once. CPU is the whole process's (loop thread, caller and workers), per
crossing; the best of a few alternating rounds is kept, as the machine is shared.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
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


def run(quiet: bool, out: str | None = None) -> int:
    return run_all(quiet, out)


# --- against the peers: the same crossings through the stdlib and other libraries -----
#
# Every call crosses to a loop in a thread of its own (or, loop to thread, to a worker)
# and back, to a function that returns at once; the callers are plain threads, or tasks
# on that loop. All of them share one run, one loop and one process, nothing observing.

CONCURRENCY = (1, 100)
PEER_CALLS = 2000
"""Round trips per caller count: split among the callers."""

Call = Callable[[], Any]
"""One round trip from a thread, made by the thread that calls it."""
AsyncCall = Callable[[], Coroutine[Any, Any, Any]]
"""One round trip from a task on the loop."""


def _percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def _stats(latencies: list[float], cpu: float, calls: int) -> dict[str, float]:
    latencies.sort()
    return {"p50_us": round(_percentile(latencies, 0.5) * 1e6, 1),
            "p99_us": round(_percentile(latencies, 0.99) * 1e6, 1),
            "cpu_us": round(cpu / calls * 1e6, 1)}


def _from_threads(call: Call, callers: int, calls: int) -> dict[str, float]:
    """`calls` round trips in all, made by `callers` threads at once."""
    each = max(1, calls // callers)
    latencies: list[float] = []
    start = threading.Barrier(callers + 1)

    def caller() -> None:
        mine = []
        call()  # a first call warms whatever the peer starts lazily
        start.wait()
        for _ in range(each):
            began = time.perf_counter()
            call()
            mine.append(time.perf_counter() - began)
        latencies.extend(mine)  # list.extend is atomic under the GIL

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    start.wait()
    cpu = time.process_time()
    for thread in threads:
        thread.join()
    return _stats(latencies, time.process_time() - cpu, each * callers)


def _from_tasks(bridge: Bridge, call: AsyncCall, callers: int,
                calls: int) -> dict[str, float]:
    """`calls` round trips in all, made by `callers` tasks at once on the bridge's loop."""
    each = max(1, calls // callers)

    async def run() -> tuple[list[float], float]:
        latencies: list[float] = []

        async def caller() -> None:
            for _ in range(each):
                began = time.perf_counter()
                await call()
                latencies.append(time.perf_counter() - began)

        await call()
        cpu = time.process_time()
        await asyncio.gather(*(caller() for _ in range(callers)))
        return latencies, time.process_time() - cpu

    latencies, cpu = bridge.run_in_loop(run())
    return _stats(latencies, cpu, each * callers)


def _thread_to_loop(bridge: Bridge, portal: Any) -> dict[str, tuple[Call, int]]:
    """name: (one round trip from a thread to a coroutine on the loop, calls to make)."""
    import anyio.from_thread
    import anyio.lowlevel
    from asgiref.sync import async_to_sync

    loop = bridge.loop
    token = bridge.run_in_loop(_token())

    def floor() -> None:
        done = threading.Lock()
        done.acquire()
        loop.call_soon_threadsafe(done.release)
        done.acquire()

    return {
        "floor: call_soon_threadsafe + a lock": (floor, PEER_CALLS),
        "stdlib run_coroutine_threadsafe().result()":
            (lambda: asyncio.run_coroutine_threadsafe(_nothing(), loop).result(), PEER_CALLS),
        "Bridge.run_in_loop": (lambda: bridge.run_in_loop(_nothing()), PEER_CALLS),
        "anyio from_thread.run": (lambda: anyio.from_thread.run(_nothing, token=token),
                                  PEER_CALLS),
        "anyio BlockingPortal.call": (lambda: portal.call(_nothing), PEER_CALLS),
        "asgiref async_to_sync": (lambda: async_to_sync(_nothing)(), PEER_CALLS // 4),
    }


async def _token() -> Any:
    import anyio.lowlevel

    return anyio.lowlevel.current_token()


def _loop_to_thread(bridge: Bridge, pool: concurrent.futures.ThreadPoolExecutor
                    ) -> dict[str, tuple[AsyncCall, int]]:
    """name: (one round trip from a task to a function in a worker thread, calls)."""
    import anyio.to_thread
    from asgiref.sync import sync_to_async

    loop = bridge.loop
    floor_worker = _FloorWorker(loop)
    sensitive = sync_to_async(_none, thread_sensitive=True)
    insensitive = sync_to_async(_none, thread_sensitive=False)

    async def run_in_executor() -> None:
        await loop.run_in_executor(pool, _none)

    async def in_thread() -> None:
        await bridge.run_in_thread("bench", _none)

    async def to_thread() -> None:
        await asyncio.to_thread(_none)

    async def anyio_run_sync() -> None:
        await anyio.to_thread.run_sync(_none)

    return {
        "floor: a lock + call_soon_threadsafe": (floor_worker.call, PEER_CALLS),
        "stdlib run_in_executor": (run_in_executor, PEER_CALLS),
        "Bridge.run_in_thread": (in_thread, PEER_CALLS),
        "asyncio.to_thread": (to_thread, PEER_CALLS),
        "anyio to_thread.run_sync": (anyio_run_sync, PEER_CALLS),
        "asgiref sync_to_async (thread_sensitive)": (sensitive, PEER_CALLS),
        "asgiref sync_to_async (not thread_sensitive)": (insensitive, PEER_CALLS),
    }


class _FloorWorker:
    """The least a loop-to-thread round trip can cost: wake a waiting thread with a
    lock, and have it wake the loop back with call_soon_threadsafe. One thread per
    caller, as a pool with enough workers gives."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._idle: list[tuple[threading.Lock, list[Any]]] = []
        self._lock = threading.Lock()

    async def call(self) -> None:
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        if worker is None:
            worker = (threading.Lock(), [])
            worker[0].acquire()
            threading.Thread(target=self._serve, args=(worker,), daemon=True).start()
        done = self._loop.create_future()
        worker[1].append(done)
        worker[0].release()
        await done
        with self._lock:
            self._idle.append(worker)

    def _serve(self, worker: tuple[threading.Lock, list[Any]]) -> None:
        wake, jobs = worker
        while True:
            wake.acquire()
            done = jobs.pop()
            _none()
            self._loop.call_soon_threadsafe(done.set_result, None)


def peers(bridge: Bridge) -> list[dict[str, Any]]:
    import anyio.from_thread
    import anyio.to_thread

    pool = concurrent.futures.ThreadPoolExecutor(max(CONCURRENCY) + 8)
    # Room for every caller: the peers' default pools are smaller than 100 threads.
    bridge.run_in_loop(_widen_peers(pool, max(CONCURRENCY) + 8))
    rows: list[dict[str, Any]] = []
    try:
        with anyio.from_thread.start_blocking_portal() as portal:
            for callers in CONCURRENCY:
                for name, (call, calls) in _thread_to_loop(bridge, portal).items():
                    rows.append({"direction": "thread->loop", "crossing": name,
                                 "callers": callers, **_from_threads(call, callers, calls)})
        for callers in CONCURRENCY:
            for name, (acall, calls) in _loop_to_thread(bridge, pool).items():
                rows.append({"direction": "loop->thread", "crossing": name,
                             "callers": callers, **_from_tasks(bridge, acall, callers, calls)})
    finally:
        pool.shutdown()
    return rows


async def _widen_peers(pool: concurrent.futures.ThreadPoolExecutor, tokens: int) -> None:
    import anyio.to_thread

    asyncio.get_running_loop().set_default_executor(pool)
    anyio.to_thread.current_default_thread_limiter().total_tokens = tokens


# --- streams: lines one way through a queue between a thread and the loop -----------

STREAM_LINES = 20_000


def streams(bridge: Bridge) -> list[dict[str, Any]]:
    """Lines per second, one way, from a thread to a task and back the other way."""
    rows = []
    for name, make in _queues().items():
        for direction in ("thread->loop", "loop->thread"):
            rate = bridge.run_in_loop(_stream(bridge, make, direction))
            rows.append({"queue": name, "direction": direction, **rate})
    return rows


def _queues() -> dict[str, Callable[[], tuple[Any, Any, Any]]]:
    """name: make() -> (thread end, loop end, closer) of a queue bounded to 16 items."""
    import janus

    found: dict[str, Callable[[], tuple[Any, Any, Any]]] = {}

    def make_janus() -> tuple[Any, Any, Any]:
        queue: janus.Queue[Any] = janus.Queue(16)
        return queue.sync_q, queue.async_q, queue.aclose

    found["janus"] = make_janus
    with contextlib.suppress(ImportError):
        import culsans

        def make_culsans() -> tuple[Any, Any, Any]:
            queue: Any = culsans.Queue(16)
            return queue.sync_q, queue.async_q, queue.aclose

        found["culsans"] = make_culsans
    with contextlib.suppress(ImportError):
        import aiologic

        def make_aiologic() -> tuple[Any, Any, Any]:
            queue: Any = aiologic.Queue(16)
            ends = _AiologicEnds(queue)
            return ends, ends, _closed

        found["aiologic"] = make_aiologic
    return found


async def _closed() -> None:
    return None


class _AiologicEnds:
    """aiologic's one queue object, as a janus-like pair of ends."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue

    def put(self, item: Any) -> None:
        self._queue.green_put(item)

    def get(self) -> Any:
        return self._queue.green_get()

    async def aput(self, item: Any) -> None:
        await self._queue.async_put(item)

    async def aget(self) -> Any:
        return await self._queue.async_get()


async def _stream(bridge: Bridge, make: Callable[[], tuple[Any, Any, Any]],
                  direction: str) -> dict[str, float]:
    thread_end, loop_end, close = make()
    aio = isinstance(loop_end, _AiologicEnds)
    count = STREAM_LINES

    def produce() -> None:
        for _ in range(count):
            thread_end.put("NUMBER")

    def consume() -> None:
        for _ in range(count):
            thread_end.get()

    wall, cpu = time.perf_counter(), time.process_time()
    if direction == "thread->loop":
        worker = asyncio.ensure_future(bridge.run_in_thread("bench", produce))
        for _ in range(count):
            await (loop_end.aget() if aio else loop_end.get())
    else:
        worker = asyncio.ensure_future(bridge.run_in_thread("bench", consume))
        for _ in range(count):
            await (loop_end.aput("NUMBER") if aio else loop_end.put("NUMBER"))
    await worker
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await close()
    return {"lines_per_s": round(count / wall), "cpu_us_per_line": round(cpu / count * 1e6, 2)}


def peers_report(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'direction':<13} {'crossing':<45} {'callers':>7} {'p50 µs':>8} {'p99 µs':>8} "
             f"{'CPU µs':>8}   per round trip, nothing observing"]
    for row in rows:
        lines.append(f"{row['direction']:<13} {row['crossing']:<45} {row['callers']:>7} "
                     f"{row['p50_us']:>8.1f} {row['p99_us']:>8.1f} {row['cpu_us']:>8.1f}")
    return "\n".join(lines)


def streams_report(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'queue':<10} {'direction':<13} {'lines/s':>9} {'CPU µs/line':>12}   one way, "
             "queue bounded to 16"]
    for row in rows:
        lines.append(f"{row['queue']:<10} {row['direction']:<13} {row['lines_per_s']:>9,} "
                     f"{row['cpu_us_per_line']:>12.2f}")
    return "\n".join(lines)


def run_all(quiet: bool, out: str | None = None) -> int:
    modes = measure()
    parts = bookkeeping()
    with mode(MODES[0]):
        bridge = Bridge.start_loop_thread(max_workers=max(CONCURRENCY) + 8)
        try:
            against = peers(bridge)
            flows = streams(bridge)
        finally:
            bridge.close()
    print(report(modes, parts))
    print()
    print(peers_report(against))
    print()
    print(streams_report(flows))
    if out:
        from guessgame.bench import report as bench_report

        bench_report.write_json(out, {"machine": bench_report.machine(), "modes": modes,
                                      "bookkeeping": parts, "peers": against,
                                      "streams": flows})
    return 0
