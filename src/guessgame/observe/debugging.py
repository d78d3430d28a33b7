"""What `--debug` does besides asyncio debug mode and turning timeouts off.

pdb (through bdb) traces only the thread it was started in, so a breakpoint in a
session thread, a worker thread or the loop thread would never fire. When pdb is
tracing the main thread, `follow_pdb_into_threads()` hands its trace function to
every thread started from then on, which is what `threading.settrace` is for.
Other debuggers (debugpy) follow threads themselves and are left alone.
"""

from __future__ import annotations

import bdb
import logging
import sys
import threading

from guessgame.observe import waitgraph


def follow_pdb_into_threads() -> bool:
    """If pdb traces this thread, make it trace other threads too. True if it did.

    On 3.12 and later `threading.settrace_all_threads` also reaches threads already
    running (a loop thread started before `--debug` took effect, say); on 3.11 only
    threads started from now on are traced. A pdb on the `sys.monitoring` backend
    (3.14's `breakpoint()`) sets no trace function, so nothing is found here: its
    breakpoints apply to every thread without help.
    """
    tracer = sys.gettrace()
    debugger = getattr(tracer, "__self__", None)
    # `guessgame debug` gives every thread a pdb of its own, and has done so already.
    if not isinstance(debugger, bdb.Bdb) or getattr(debugger, "follows_threads", False):
        return False
    settrace_all_threads = getattr(threading, "settrace_all_threads", None)
    if settrace_all_threads is not None:
        settrace_all_threads(tracer)
    else:
        threading.settrace(tracer)
    return True


def show_slow_callbacks() -> None:
    """asyncio's debug mode reports a callback or task step that ran longer than
    loop.slow_callback_duration (0.1 s) as a warning from the `asyncio` logger: it is
    how a blocking call left on the loop shows up. Make sure it reaches stderr, and
    keep out debug mode's "poll took 1000 ms" notes, which an idle server makes."""
    logging.getLogger("asyncio").setLevel(logging.WARNING)


class Text:
    """The wait graph's text, shown as lines wherever Python shows a value: its repr is
    the text itself, so pdb's `p` and VS Code's watch and Debug Console print lines,
    not one quoted string; `lines` is a list a VS Code watch expands one per row."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines()

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__

    def __contains__(self, part: str) -> bool:
        return part in self.text


def waits() -> Text:
    """Who waits on whom, now: every thread with the tasks its loop runs, each at
    `file:line function`, each wait across a bridge, and any deadlock among them.

    From pdb: `p __import__("guessgame.observe.debugging").observe.debugging.waits()`; in VS Code, a
    watch on the same expression. Safe to call from any thread, the loop's included.
    """
    return Text(waitgraph.render(waitgraph.snapshot()))
