"""Seeing what runs where: the trace, the timeline and its drawing, the wait graph,
task names and the debugger's helpers. Each attaches to the crossings at one seam
(guessgame.crossing) and costs nothing while detached."""

from guessgame import crossing
from guessgame.observe import debugpy_stepping, tasknames, waits


def attach_defaults() -> None:
    """What every command observes from the start, so that a debugger, the trace and
    SIGUSR1 find named tasks and the wait graph: task names first, since the others
    read them."""
    crossing.attach(tasknames.TASK_NAMES)
    crossing.attach(waits.WAIT_GRAPH)
    # Under debugpy only, and after the names: a Step Into on a crossing follows it.
    debugpy_stepping.attach_if_debugged()
