"""Step-across under debugpy (VS Code): the `stepping.Backend` that drives pydevd.

DAP has no request that says "go on stepping in that other thread". pydevd, though,
keeps each thread's stepping state on the thread itself (`thread.additional_info`:
`pydev_step_cmd`, `pydev_step_stop`, `pydev_state`), acts on it at that thread's next
traced event, and lets a thread set its own: `debugpy.breakpoint()` does just that. So
each side of a crossing steers its own thread, at the seam:

- the sender, stepped into the crossing line, drops its step (it would otherwise stop
  again only after the whole crossing, or in the bridge), and takes it up again when
  the crossing is over, as a Step Over from the crossing line;
- the taker of a call takes the step: a Step Into of its own, made before the work's
  first line runs, so that pydevd's first stop is that line (with the plumbing kept
  out of "my code" by launch.json's `rules`);
- the taker of an item suspends itself where it took the item, as at a breakpoint.

Attached only when a pydevd debugger is live (`attach_if_debugged`), so a process that
debugpy does not run pays nothing.
"""

from __future__ import annotations

import importlib
import sys
import threading
from types import FrameType, ModuleType
from typing import Any

from guessgame import crossing
from guessgame.observe import stepping

# pydevd_comm_constants: the step commands a Step Into may be (VS Code sends "my code"
# under justMyCode; in a coroutine pydevd turns either into "into coroutine").
CMD_STEP_INTO, CMD_STEP_OVER = 107, 108
CMD_STEP_INTO_MY_CODE, CMD_STEP_OVER_MY_CODE = 144, 159
CMD_STEP_INTO_COROUTINE = 206
INTO = frozenset({CMD_STEP_INTO, CMD_STEP_INTO_MY_CODE, CMD_STEP_INTO_COROUTINE})
STATE_RUN = 1  # pydevd_constants


class DebugpyBackend(stepping.Backend):
    def __init__(self, pydevd: ModuleType) -> None:
        self.py_db: Any = pydevd.get_global_debugger()
        info_module = importlib.import_module("_pydevd_bundle.pydevd_additional_thread_info")
        self._info_of = info_module.set_additional_thread_info
        constants = importlib.import_module("_pydevd_bundle.pydevd_constants")
        self._monitoring: Any = None
        if constants.PYDEVD_USE_SYS_MONITORING:  # 3.12 and later: sys.monitoring, not settrace
            self._monitoring = importlib.import_module(
                "_pydevd_sys_monitoring.pydevd_sys_monitoring")

    def _my_code(self, everywhere: int, mine: int) -> int:
        return mine if self.py_db.get_use_libraries_filter() else everywhere

    def _steer(self, command: int, frame: FrameType | None) -> None:
        """Set this thread's step as pydevd's own step requests and debugpy.breakpoint()
        do; -1 stops stepping. `frame`: the frame a Step Over stays in."""
        info = self._info_of(threading.current_thread())
        info.pydev_original_step_cmd = command
        info.pydev_step_cmd = command
        info.pydev_step_stop = frame
        info.pydev_state = STATE_RUN
        info.update_stepping_info()
        if self._monitoring is not None:
            # Events pydevd turned off for code it had no reason to watch come back on.
            self._monitoring.update_monitor_events(suspend_requested=command != -1 or None)
        if frame is not None:
            self.py_db.set_trace_for_frame_and_parents(threading.get_ident(), frame)
        if self._monitoring is not None:
            self._monitoring.restart_events()

    def _step_command(self) -> int:
        info = getattr(threading.current_thread(), "additional_info", None)
        if info is None or info.pydev_state != STATE_RUN:
            return -1
        command: int = info.pydev_step_cmd
        return command

    # --- the Backend -----------------------------------------------------------------

    def stepping_into(self) -> bool:
        return self._step_command() in INTO

    def hold(self, follow: stepping.Follow) -> None:
        self._steer(-1, None)

    def step_into_call(self, follow: stepping.Follow, arrival: FrameType) -> None:
        self._steer(self._my_code(CMD_STEP_INTO, CMD_STEP_INTO_MY_CODE), None)

    def stop_at_take(self, follow: stepping.Follow, frame: FrameType) -> str:
        thread = threading.current_thread()
        self._info_of(thread)
        self.py_db.set_suspend(thread, CMD_STEP_INTO)  # shown as a step, not a breakpoint
        self.py_db.do_wait_suspend(thread, frame, "line", None)
        resumed = "continue" if self._step_command() == -1 else "step"
        self._steer(-1, None)  # the next stop is the sender's, after the crossing
        return resumed

    def end_call(self, follow: stepping.Follow) -> None:
        # Always "step": pydevd drops a Step Out that left the work's coroutine at its
        # first await exactly as it drops a Continue, so the two look the same here.
        follow.resume = "step"
        self._steer(-1, None)

    def release(self, follow: stepping.Follow) -> None:
        if follow.resume == "step":
            self._steer(self._my_code(CMD_STEP_OVER, CMD_STEP_OVER_MY_CODE), follow.origin)


_attached: list[stepping.StepAcross] = []


def attach_if_debugged() -> bool:
    """Attach the step-across for debugpy if this process runs under it. True if so."""
    pydevd = sys.modules.get("pydevd")  # debugpy imports it before the program runs
    if pydevd is None or pydevd.get_global_debugger() is None:
        return False
    if not _attached:
        _attached.append(stepping.StepAcross(DebugpyBackend(pydevd)))
    crossing.attach(_attached[0])
    return True
