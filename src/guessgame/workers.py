"""Worker threads for blocking calls, started in parallel and gone when idle.

`concurrent.futures.ThreadPoolExecutor` never shrinks: after a burst of 300 parked
reads it keeps 300 threads for the life of the process. `WorkerPool` is an Executor
(so `loop.run_in_executor` takes it) shaped like trio's thread cache instead:

- an idle worker waits for a job for `idle_timeout` seconds, then exits by itself;
- idle workers are handed jobs last-in first-out, so after a burst the busiest few
  stay warm and the surplus ages out;
- a job never waits behind another job while fewer than `max_workers` threads run,
  so a read parked by one connection never queues another connection's.

Starting a thread is slow under load: `Thread.start()` waits until the new thread has
run, and the new thread waits for the GIL behind every thread that is busy, up to the
switch interval, after which the starter waits for the GIL back. Starts made one after
another by the caller grow with the burst, and an event loop that submits stands still
meanwhile. So the caller starts at most one worker, and only when
none is on its way; each new worker takes a queued job, then starts up to `FAN_OUT`
more for the jobs no starting worker will take, and, while the pool grows, one spare
so that the next call finds a worker on its way. Starts proceed in parallel, and a
burst of N calls is covered in about log2(N) rounds of starts. The cost: `submit()`
may return before the thread that will run the job exists, and if the system refuses
a thread then, the job waits for the next worker to finish (the first start is the
caller's own, and its failure is raised as before).

Past `max_workers`, jobs wait in a queue whose length the caller bounds: each
connection has at most one call in flight, and the connection limit caps those.

The state, all of it under `_lock`:

- `_threads`  workers that have arrived (run `_Worker.run`) and not yet left, busy or idle;
- `_idle`     the idle ones among them, a stack, each waiting on its own semaphore;
- `_waking`   workers `submit` took off `_idle` and handed a job, not yet awake;
- `_starting` workers reserved (by `_reserve` or `_spare`) whose thread has not arrived;
- `_backlog`  jobs no worker holds yet.

The rules that hold between them whenever the lock is free:

1. `len(_threads) + _starting <= max_workers`: a start is reserved only within room.
2. `_backlog` is empty while `_idle` is not: `submit` hands a job to an idle worker
   before it queues one, and a worker takes from `_backlog` before it goes idle.
3. Each queued job has a taker on its way: a starting worker, a waking one (which
   starts more for what was queued while it woke), or a busy one, which looks at
   `_backlog` before it goes idle. So the caller starts a thread only when
   `_starting == _waking == 0`, and then one.
4. `_starting` exceeds the jobs no starting worker will take by at most one: the spare,
   reserved only while the pool grows (two or more threads, none idle or starting).
5. An idle worker that timed out leaves only if it is still in `_idle`; otherwise it
   was handed a job at that moment, and runs it.
6. Once `_shut`, nothing is reserved or handed; idle workers are handed None and leave,
   and busy ones leave after the backlog they can take.

`WorkerPool._check_invariants()` asserts rules 1, 2, 3 and 6 of a state; the tests call
it with the lock held. Rules 4 and 5 constrain steps (a reservation, a retirement) and
are kept where those steps are made.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import itertools
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar

T = TypeVar("T")

IDLE_TIMEOUT: Final = 10.0
"""Seconds an idle worker waits for a job before it exits, as in trio and anyio."""

FAN_OUT: Final = 2
"""Workers a new worker starts, at most, for queued jobs that nobody is coming for."""

_Job = tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class WorkerPool(concurrent.futures.Executor):
    """Threads named `{name}_N`, started on demand, retired after `idle_timeout`."""

    def __init__(self, name: str, max_workers: int, idle_timeout: float = IDLE_TIMEOUT) -> None:
        if max_workers < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.name = name
        self.max_workers = max_workers
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # notified as _starting falls
        self._threads: set[threading.Thread] = set()  # running, busy or idle
        self._starting = 0  # reserved and being started; each will take a queued job
        self._waking = 0  # idle workers handed a job that have not woken yet
        self._idle: list[_Worker] = []  # a stack: the most recently idle is reused first
        self._backlog: collections.deque[_Job] = collections.deque()
        self._numbers = itertools.count()
        self._shut = False

    @property
    def threads(self) -> int:
        """Workers alive or on their way, busy or idle."""
        with self._lock:
            return len(self._threads) + self._starting

    def submit(self, fn: Callable[..., T], /, *args: Any,
               **kwargs: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        job: _Job = (future, fn, args, kwargs)
        with self._lock:
            if self._shut:
                raise RuntimeError(f"worker pool {self.name} is shut down: no new calls")
            if self._idle:
                self._idle.pop().hand(job)
                self._waking += 1
                return future
            self._backlog.append(job)
            # A worker on its way takes this job, or starts one that will; so does a
            # worker handed a job and not yet awake (see _woken).
            starts = 0 if self._starting or self._waking else self._reserve(1)
        if starts and not self._launch(starts) and self._withdraw(job):
            raise RuntimeError(f"worker pool {self.name}: cannot start a thread")
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new calls, let idle workers go, and (with `wait`) join every worker.

        Calls already running finish; queued ones run first unless `cancel_futures`.
        """
        with self._lock:
            self._shut = True
            if cancel_futures:
                while self._backlog:
                    self._backlog.popleft()[0].cancel()
            idle, self._idle = self._idle, []
            if wait:  # a worker still starting is not in _threads yet
                self._settled.wait_for(lambda: not self._starting)
            threads = list(self._threads)
        for worker in idle:
            worker.hand(None)
        if wait:
            for thread in threads:
                thread.join()

    def _check_invariants(self) -> None:
        """With the lock held: raise AssertionError naming the rule (see the module's
        docstring) that the pool's state breaks."""
        busy = len(self._threads) - len(self._idle)  # waking ones included
        broken = [rule for rule, holds in (
            ("1: threads + starting <= max_workers",
             len(self._threads) + self._starting <= self.max_workers),
            ("2: no backlog while a worker is idle", not (self._backlog and self._idle)),
            ("3: a queued job has a taker on its way",
             not self._backlog or self._starting + busy > 0),
            ("6: nothing idle once shut down", not (self._shut and self._idle)),
            ("counts: none negative",
             min(self._starting, self._waking, busy) >= 0),
        ) if not holds]
        if broken:
            raise AssertionError(
                f"worker pool {self.name} breaks rule {'; '.join(broken)}: "
                f"{len(self._threads)} threads, {len(self._idle)} idle, {self._waking} waking, "
                f"{self._starting} starting, {len(self._backlog)} queued, shut={self._shut}")

    # --- starting workers ----------------------------------------------------------

    def _reserve(self, wanted: int) -> int:
        """With the lock held: how many workers to start for queued jobs, counted as
        starting. Never more than the jobs no starting worker will take."""
        if self._shut:
            return 0
        uncovered = len(self._backlog) - self._starting
        room = self.max_workers - len(self._threads) - self._starting
        count = max(0, min(wanted, uncovered, room))
        self._starting += count
        return count

    def _launch(self, count: int) -> bool:
        """Start `count` reserved workers; False if the system refused a thread."""
        for started in range(count):
            worker = _Worker(self)
            thread = threading.Thread(target=worker.run, name=f"{self.name}_{next(self._numbers)}")
            try:
                thread.start()
            except RuntimeError:  # "can't start new thread": a process limit
                with self._lock:
                    self._starting -= count - started
                    self._settled.notify_all()
                return False
        return True

    def _withdraw(self, job: _Job) -> bool:
        """Take back a job no worker could be started for; False if one took it."""
        with self._lock:
            if job in self._backlog:
                self._backlog.remove(job)
                return True
            return False

    # --- the workers' side ---------------------------------------------------------

    def _arrived(self, worker: _Worker) -> tuple[_Job | None, bool, int]:
        """A new worker is running: list it, give it its first job as `_next_job`
        does, and reserve the workers it should start before running that job."""
        with self._lock:
            self._starting -= 1
            self._threads.add(threading.current_thread())
            self._settled.notify_all()
            job, idle = self._take(worker)
            return job, idle, self._starts_for_taker() if job else 0

    def _spare(self) -> int:
        """With the lock held: 1 if the pool is growing and a spare worker should start,
        so that the next call finds one on its way instead of starting one itself.
        Growing: a second worker has just been needed and nobody is idle or starting."""
        if self._shut or self._idle or self._starting or len(self._threads) < 2:
            return 0
        if len(self._threads) >= self.max_workers:
            return 0
        self._starting += 1
        return 1

    def _woken(self) -> int:
        """A worker handed a job is awake: the workers it should start. Calls made
        while it woke wait for these, since their caller saw it on its way. Past them,
        if that was the last idle worker of a growing pool, one spare."""
        with self._lock:
            self._waking -= 1
            return self._starts_for_taker()

    def _starts_for_taker(self) -> int:
        """With the lock held: the workers a worker that has just taken a job starts,
        reserved. Up to FAN_OUT for queued jobs nobody is coming for; failing those, one
        spare if the pool is growing."""
        return self._reserve(FAN_OUT) or self._spare()

    def _next_job(self, worker: _Worker) -> tuple[_Job | None, bool]:
        """The next queued job, or (None, True) once the worker is listed idle, or
        (None, False) if it is to exit because the pool is shut down."""
        with self._lock:
            return self._take(worker)

    def _take(self, worker: _Worker) -> tuple[_Job | None, bool]:
        """`_next_job`, with the lock held."""
        if self._backlog:
            return self._backlog.popleft(), False
        if self._shut:
            self._threads.discard(threading.current_thread())
            return None, False
        self._idle.append(worker)
        return None, True

    def _retire(self, worker: _Worker) -> bool:
        """True if the idle worker may exit; False if a job was handed to it meanwhile."""
        with self._lock:
            if worker not in self._idle:
                return False
            self._idle.remove(worker)
            self._threads.discard(threading.current_thread())
            return True

    def _exited(self) -> None:
        with self._lock:
            self._threads.discard(threading.current_thread())


class _Worker:
    """One thread's loop: run a job, then wait up to the idle timeout for the next."""

    def __init__(self, pool: WorkerPool) -> None:
        self._pool = pool
        self._job: _Job | None = None
        self._handed = threading.Semaphore(0)

    def hand(self, job: _Job | None) -> None:
        """Give the idle worker a job, or None to let it exit."""
        self._job = job
        self._handed.release()

    def run(self) -> None:
        job, idle, starts = self._pool._arrived(self)
        # If a start fails here, the jobs left over wait for the next worker to finish.
        self._pool._launch(starts)
        while True:
            if idle:
                job = self._wait()
            if job is None:
                return
            deliver = _run(job)
            # Listed idle before the caller sees the result, so that a caller making
            # calls one after another always finds this worker, not a new thread.
            job, idle = self._pool._next_job(self)
            deliver()
            del deliver  # drop the result before a long idle wait

    def _wait(self) -> _Job | None:
        """The next job, or None once this worker has left the pool."""
        if not self._handed.acquire(timeout=self._pool.idle_timeout):
            if self._pool._retire(self):
                return None
            self._handed.acquire()  # handed a job as it timed out: it is on its way
        job, self._job = self._job, None
        if job is None:  # the pool shut down
            self._pool._exited()
        else:
            self._pool._launch(self._pool._woken())
        return job


def _run(job: _Job) -> Callable[[], None]:
    """Run a job; return what hands its outcome to the caller."""
    future, fn, args, kwargs = job
    if not future.set_running_or_notify_cancel():
        return _nothing
    try:
        result = fn(*args, **kwargs)
    except BaseException as error:  # handed to the caller, as concurrent.futures does
        try:
            return functools.partial(future.set_exception, error)
        finally:
            # The error's traceback keeps this frame. With the future still in it, the
            # future, the error and each frame it passed would form a reference cycle,
            # left for the cycle collector's rare full collection.
            del future, job
    return functools.partial(future.set_result, result)


def _nothing() -> None:
    pass
