"""Seeing what runs where: the trace, the timeline and its drawing, the wait graph,
task names and the debugger's helpers. Each attaches to the crossings at one seam
(guessgame.crossing) and costs nothing while detached."""

from guessgame import crossing
from guessgame.observe import tasknames, waits


def attach_defaults() -> None:
    """What every command observes from the start, so that a debugger, the trace and
    SIGUSR1 find named tasks and the wait graph: task names first, since the others
    read them."""
    crossing.attach(tasknames.TASK_NAMES)
    crossing.attach(waits.WAIT_GRAPH)
