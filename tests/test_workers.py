"""The bridge's worker pool: no call waits behind another, and idle workers go away."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

from guessgame.workers import WorkerPool
from timing import UNIT

WAIT = UNIT
"""Upper bound for any wait in these tests; each normally ends at once."""


def workers_named(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix + "_")]


def check(pool: WorkerPool) -> None:
    """The pool's written-down rules hold, looked at under its lock."""
    with pool._lock:
        pool._check_invariants()


def test_the_check_names_the_rule_a_state_breaks() -> None:
    pool = WorkerPool("broken", max_workers=2, idle_timeout=WAIT)
    try:
        with pool._lock:
            pool._starting = 3  # more on their way than the pool may hold
            with pytest.raises(AssertionError, match=r"rule 1: threads \+ starting <= max"):
                pool._check_invariants()
            pool._starting = 0
            pool._backlog.append((Future(), print, (), {}))  # queued, nobody coming
            with pytest.raises(AssertionError, match="rule 3: a queued job has a taker"):
                pool._check_invariants()
            pool._backlog.clear()
    finally:
        pool.shutdown()


def test_the_rules_hold_at_every_moment_of_a_burst() -> None:
    """A thread checks the rules under the lock, over and over, while a burst grows the
    pool, drains it and lets it shrink; every state it sees keeps them."""
    pool = WorkerPool("checked", max_workers=20, idle_timeout=WAIT / 50)
    done = threading.Event()
    failures: list[AssertionError] = []
    checks = 0

    def checker() -> None:
        nonlocal checks
        while not done.is_set():
            try:
                check(pool)
            except AssertionError as broken:
                failures.append(broken)
                return
            checks += 1

    watcher = threading.Thread(target=checker, name="checker")
    watcher.start()
    try:
        release = threading.Event()
        futures = [pool.submit(release.wait, WAIT) for _ in range(30)]  # 10 queue
        release.set()
        assert all(future.result(WAIT) for future in futures)
        for thread in workers_named("checked"):
            thread.join(WAIT)
        pool.shutdown()
    finally:
        done.set()
        watcher.join(WAIT)
    assert not failures, failures[0]
    assert checks > 0
    check(pool)


def test_a_burst_runs_at_once_then_every_worker_retires() -> None:
    pool = WorkerPool("burst", max_workers=50, idle_timeout=0.2)
    burst = 30
    started = threading.Barrier(burst + 1, timeout=WAIT)
    release = threading.Event()

    def parked() -> str:
        started.wait()  # all 30 must be running together, or this breaks
        release.wait(WAIT)
        return threading.current_thread().name

    futures = [pool.submit(parked) for _ in range(burst)]
    started.wait()
    check(pool)
    # Growing, the pool keeps one spare worker on its way, so that the next call does
    # not have to start one itself (see workers.py).
    assert burst <= pool.threads <= burst + 1
    release.set()
    names = {future.result(WAIT) for future in futures}
    assert len(names) == burst
    for thread in workers_named("burst"):
        thread.join(WAIT)
    assert pool.threads == 0
    assert workers_named("burst") == []
    pool.shutdown()


def test_idle_workers_are_reused_last_in_first_out() -> None:
    pool = WorkerPool("reuse", max_workers=4, idle_timeout=WAIT)
    try:
        names = [pool.submit(lambda: threading.current_thread().name).result(WAIT)
                 for _ in range(20)]
        assert len(set(names)) == 1
        assert pool.threads == 1
    finally:
        pool.shutdown()
    assert workers_named("reuse") == []


def test_past_max_workers_calls_wait_their_turn() -> None:
    pool = WorkerPool("full", max_workers=2, idle_timeout=WAIT)
    release = threading.Event()
    try:
        first = [pool.submit(release.wait, WAIT) for _ in range(2)]
        queued = pool.submit(lambda: "ran")
        assert not queued.done() and pool.threads == 2
        check(pool)
        release.set()
        assert queued.result(WAIT) == "ran"
        assert all(future.result(WAIT) for future in first)
    finally:
        pool.shutdown()


def test_an_exception_reaches_the_caller_and_the_worker_survives() -> None:
    pool = WorkerPool("errors", max_workers=1, idle_timeout=WAIT)
    try:
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 // 0).result(WAIT)
        assert pool.submit(lambda: 42).result(WAIT) == 42
    finally:
        pool.shutdown()


def test_a_shut_pool_refuses_new_calls_in_a_sentence() -> None:
    pool = WorkerPool("shut", max_workers=1)
    pool.submit(lambda: None).result(WAIT)
    pool.shutdown()
    assert workers_named("shut") == []
    with pytest.raises(RuntimeError, match="worker pool shut is shut down: no new calls"):
        pool.submit(lambda: None)


def test_shutdown_lets_queued_calls_finish_or_cancels_them() -> None:
    pool = WorkerPool("drain", max_workers=1, idle_timeout=WAIT)
    release = threading.Event()
    running = pool.submit(release.wait, WAIT)
    queued = pool.submit(lambda: "ran")
    stopper = threading.Thread(target=pool.shutdown, kwargs={"cancel_futures": True})
    stopper.start()
    release.set()
    stopper.join(WAIT)
    assert running.result(WAIT) is True
    assert queued.cancelled()


def test_a_burst_is_started_by_the_workers_not_by_the_caller(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each Thread.start() waits for the new thread to run; a caller (an acceptor, an event
    loop) that started every worker of a burst itself stood still for seconds."""
    caller = threading.get_ident()
    started_by_caller = 0
    start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        nonlocal started_by_caller
        started_by_caller += threading.get_ident() == caller
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    pool = WorkerPool("fan", max_workers=300, idle_timeout=WAIT)
    burst = 200
    running = threading.Barrier(burst + 1, timeout=WAIT)
    release = threading.Event()

    def parked() -> None:
        running.wait()  # every call runs at once: none waits behind another
        release.wait(WAIT)

    try:
        futures = [pool.submit(parked) for _ in range(burst)]
        running.wait()
        release.set()
        for future in futures:
            future.result(WAIT)
    finally:
        release.set()
        pool.shutdown()
    assert started_by_caller <= 2
    assert workers_named("fan") == []
