"""Worker threads for blocking calls made from the loop, which go away when idle.

`concurrent.futures.ThreadPoolExecutor` never shrinks: after a burst of 300 parked
reads it keeps 300 threads for the life of the process. `WorkerPool` is an Executor
(so `loop.run_in_executor` takes it) shaped like trio's thread cache instead:

- an idle worker waits for a job for `idle_timeout` seconds, then exits by itself;
- idle workers are handed jobs last-in first-out, so after a burst the busiest few
  stay warm and the surplus ages out;
- a job never waits behind another job while fewer than `max_workers` threads run,
  so a read parked by one connection never queues another connection's.

Past `max_workers`, jobs wait in a queue whose length the caller bounds: each
connection has at most one call in flight, and the connection limit caps those.
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
        self._threads: set[threading.Thread] = set()
        self._idle: list[_Worker] = []  # a stack: the most recently idle is reused first
        self._backlog: collections.deque[_Job] = collections.deque()
        self._numbers = itertools.count()
        self._shut = False

    @property
    def threads(self) -> int:
        """Workers alive now, busy or idle."""
        with self._lock:
            return len(self._threads)

    def submit(self, fn: Callable[..., T], /, *args: Any,
               **kwargs: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        job: _Job = (future, fn, args, kwargs)
        with self._lock:
            if self._shut:
                raise RuntimeError(f"worker pool {self.name} is shut down: no new calls")
            if self._idle:
                self._idle.pop().hand(job)
            elif len(self._threads) < self.max_workers:
                self._start(job)
            else:
                self._backlog.append(job)
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
            threads = list(self._threads)
        for worker in idle:
            worker.hand(None)
        if wait:
            for thread in threads:
                thread.join()

    # --- the workers' side ---------------------------------------------------------

    def _start(self, job: _Job) -> None:
        worker = _Worker(self, job)
        thread = threading.Thread(target=worker.run, name=f"{self.name}_{next(self._numbers)}")
        self._threads.add(thread)
        thread.start()

    def _next_job(self, worker: _Worker) -> tuple[_Job | None, bool]:
        """After a job: the next queued job, or (None, True) once the worker is listed
        idle, or (None, False) if it is to exit because the pool is shut down."""
        with self._lock:
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

    def __init__(self, pool: WorkerPool, job: _Job) -> None:
        self._pool = pool
        self._job: _Job | None = job
        self._handed = threading.Semaphore(0)

    def hand(self, job: _Job | None) -> None:
        """Give the idle worker a job, or None to let it exit."""
        self._job = job
        self._handed.release()

    def run(self) -> None:
        job = self._job
        while job is not None:
            deliver = _run(job)
            # Listed idle before the caller sees the result, so that a caller making
            # calls one after another always finds this worker, not a new thread.
            job, idle = self._pool._next_job(self)
            deliver()
            del deliver  # drop the result before a long idle wait
            if idle:
                job = self._wait()

    def _wait(self) -> _Job | None:
        """The next job, or None once this worker has left the pool."""
        if not self._handed.acquire(timeout=self._pool.idle_timeout):
            if self._pool._retire(self):
                return None
            self._handed.acquire()  # handed a job as it timed out: it is on its way
        job, self._job = self._job, None
        if job is None:  # the pool shut down
            self._pool._exited()
        return job


def _run(job: _Job) -> Callable[[], None]:
    """Run a job; return what hands its outcome to the caller."""
    future, fn, args, kwargs = job
    if not future.set_running_or_notify_cancel():
        return _nothing
    try:
        result = fn(*args, **kwargs)
    except BaseException as error:  # handed to the caller, as concurrent.futures does
        return functools.partial(future.set_exception, error)
    return functools.partial(future.set_result, result)


def _nothing() -> None:
    pass
