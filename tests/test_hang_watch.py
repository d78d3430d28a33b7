"""A hang fails its test within the timeout, with every thread and task shown, and the
run goes on; a hang that survives the failure ends the run instead of stalling it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from timing import UNIT

HERE = Path(__file__).resolve().parent

CONFTEST = "from hang_watch import pytest_timeout_cancel_timer, pytest_timeout_set_timer\n"

# A thread waits in run_in_loop for a coroutine that never ends; the next test must run.
DEADLOCK = '''
import asyncio
from guessgame.bridge import Bridge

def test_waits_forever():
    bridge = Bridge.start_loop_thread(max_workers=2)
    try:
        async def forever():
            await asyncio.Event().wait()
        bridge.run_in_loop(forever())
    finally:
        bridge.close()

def test_after():
    pass
'''

# The loop thread spins without yielding (awaiting a finished future never suspends),
# so even the teardown's bridge.close() hangs: the run must end, not stall.
LIVELOCK = '''
import asyncio
from guessgame.bridge import Bridge

def test_spins():
    bridge = Bridge.start_loop_thread(max_workers=2)
    try:
        async def spinning():
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            while True:
                await done
        bridge.run_in_loop(spinning())
    finally:
        bridge.close()

def test_never_reached():
    pass
'''


def run_pytest(tmp_path: Path, source: str) -> tuple[subprocess.CompletedProcess[str], float]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_hang.py").write_text(source)
    env = os.environ | {"PYTHONPATH": str(HERE), "HANG_WATCH_GRACE": "1"}
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "timeout=1",
         "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path / "test_hang.py")],
        capture_output=True, text=True, timeout=6 * UNIT, env=env, cwd=tmp_path)
    return done, time.monotonic() - start


def test_a_deadlock_fails_with_every_thread_and_task_and_the_run_goes_on(
        tmp_path: Path) -> None:
    done, _ = run_pytest(tmp_path, DEADLOCK)
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "1 failed, 1 passed" in out
    assert "Timeout: still running after 1 s" in out
    assert "--- thread 'event-loop'" in out
    assert "--- tasks of" in out and "test_waits_forever.<locals>.forever" in out


def test_a_hang_that_outlives_its_failure_ends_the_run(tmp_path: Path) -> None:
    done, took = run_pytest(tmp_path, LIVELOCK)
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "Still running 1 s after failing at its 1 s timeout; ending the run." in out
    assert "test_spins.<locals>.spinning" in out
    assert " passed" not in out and " failed" not in out  # no summary: the run ended there
    assert took < 20
