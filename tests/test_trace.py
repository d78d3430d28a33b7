"""The trace makes the stage visible, and context and errors cross every bridge.

Each demo run is traced in-process, and the test reads the records back:

- at all-async every event is on the main thread; at all-threads no event has a task;
- the bridge crossings are exactly those where neighbouring layers differ, as the rule
  table below derives them from the layer combination;
- every line that works for a session carries its id, on both sides of every bridge.

The server's sessions are `s1`, `s2`...; the client's side of its games is `client`;
only the acceptor and the server's start and stop show `-`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import CONFIG
from guessgame import adapters, app
from guessgame.bridge import Bridge
from guessgame.config import Layers, Settings
from guessgame.observe import trace
from guessgame.observe.trace import Record
from guessgame.protocol import LineTooLong
from harness import fail_in_a_thread, frames
from timing import UNIT

# --- which crossings a combination implies -------------------------------------------
#
# Each rule names the crossing a layer makes into a neighbour of the other world, as
# "mechanism direction". The rules look at two layers at a time, never at compose.py.

CALL = {  # (caller world, callee world): how the caller waits for the callee
    ("thread", "loop"): {"run_coroutine_threadsafe thread->loop"},
    ("loop", "thread"): {"run_in_executor loop->thread"},
}
STREAM = {  # (reader world, connection world): how lines flow besides the calls
    ("thread", "loop"): {"janus thread->loop", "janus loop->thread"},
    # A reader thread feeds the loop; replies go out from the loop without crossing.
    ("loop", "thread"): {"janus thread->loop"},
}


def world(is_async: bool) -> str:
    return "loop" if is_async else "thread"


def calls(caller: bool, callee: bool) -> set[str]:
    return set(CALL.get((world(caller), world(callee)), ()))


def lines(user: bool, connection: bool) -> set[str]:
    """A session or client on a connection: its calls, and janus if it streams
    lines."""
    return calls(user, connection) | STREAM.get((world(user), world(connection)), set())


def reports(session: bool, server: bool) -> set[str]:
    """A session's report events go to the printer, which lives in the server's world."""
    if session == server:
        return set()
    return {f"SimpleQueue {world(session)}->{world(server)}"}


def stored(session: bool) -> set[str]:
    """A session's finished games go to the results store, which is blocking code."""
    return calls(session, False)


def expected_crossings(layers: Layers) -> dict[str, set[str]]:
    """The crossings of a demo run, by who makes them: sessions, the client, the host."""
    top = layers.client  # the demo's top-level component is its client
    host = calls(top, layers.server)
    if layers.session and not layers.server:
        # A threaded host waits once on the loop for its async sessions' last games.
        host |= calls(top, True)
    return {
        "session": (calls(layers.server, layers.session) | lines(layers.session, layers.connection)
                    | reports(layers.session, layers.server) | stored(layers.session)),
        "client": lines(layers.client, layers.connection),
        "host": host,
    }


def test_the_rule_table_reads_as_the_migration_path() -> None:
    # One step of the path, spelled out: at async-connection a threaded session reads
    # an asyncio connection through janus, and opens and closes it on the loop.
    at = expected_crossings(Layers(connection=True))
    assert at["session"] == {"run_coroutine_threadsafe thread->loop",
                             "janus thread->loop", "janus loop->thread"}
    assert at["session"] == at["client"]
    none = expected_crossings(Layers())
    full = expected_crossings(Layers(True, True, True, True))
    assert none == {"session": set(), "client": set(), "host": set()}
    # At all-async the one crossing left is the blocking store's.
    assert full == {"session": {"run_in_executor loop->thread"}, "client": set(),
                    "host": set()}


# --- tracing a demo ------------------------------------------------------------------


@contextlib.contextmanager
def recording() -> Iterator[list[Record]]:
    records: list[Record] = []
    trace.add_sink(records.append)
    try:
        yield records
    finally:
        trace.remove_sink(records.append)


def traced_demo(settings: Settings) -> list[Record]:
    with recording() as records:
        assert app.demo(settings, 1, io.StringIO()) == 0
    return records


def mechanisms(records: list[Record], who: Callable[[str], bool]) -> set[str]:
    """The "mechanism direction" of each crossing made on behalf of matching sessions."""
    return {" ".join(r.event.split()[:2]) for r in records
            if r.layer == "bridge" and who(r.session)}


def is_server_session(session: str) -> bool:
    return session.startswith("s") and session[1:].isdigit()


def test_trace_shows_the_stage(layers: Layers, settings: Settings) -> None:
    records = traced_demo(settings)
    assert {r.layer for r in records} >= {"connection", "session", "client", "server"}

    if layers == Layers(True, True, True, True):
        assert {r.thread for r in records} == {"MainThread"}
    if layers == Layers():
        assert {r.task for r in records} == {"-"}

    expected = expected_crossings(layers)
    assert mechanisms(records, is_server_session) == expected["session"]
    assert mechanisms(records, lambda s: s == trace.CLIENT_ID) == expected["client"]
    assert mechanisms(records, lambda s: s == "-") == expected["host"]


def test_every_line_carries_its_session_on_both_sides_of_every_bridge(
        layers: Layers, settings: Settings) -> None:
    records = traced_demo(settings)
    for record in records:
        if record.layer == "session":
            assert is_server_session(record.session), record
        elif record.layer == "client":
            assert record.session == trace.CLIENT_ID, record
        elif record.layer == "connection":  # also the far side of every connection bridge
            assert record.session != "-", record
    # The session's own lines run where its flavour says, named after its peer.
    for record in records:
        if record.layer == "session" and layers.session:
            assert "session 127.0.0.1:" in record.task, record
        elif record.layer == "session":
            assert record.task == "-" and record.thread.startswith("session 127.0.0.1:"), record


def test_no_task_or_thread_is_left_unnamed(settings: Settings) -> None:
    records = traced_demo(settings)
    for record in records:
        assert not record.task.startswith("Task-"), record
        assert not record.thread.startswith(("Thread-", "asyncio_")), record


# --- the command line ----------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guessgame", *args], capture_output=True,
                          text=True, timeout=3 * UNIT, check=True)


def trace_lines(stderr: str) -> list[list[str]]:
    return [line.split("\t") for line in stderr.splitlines() if "\t" in line]


def test_demo_trace_writes_six_tab_separated_fields_to_stderr() -> None:
    done = run_cli("demo", "--config", str(CONFIG), "--stage", "async-session", "--trace",
                   "--seed", "1", "-q")
    assert "\t" not in done.stdout
    fields = trace_lines(done.stderr)
    assert fields and all(len(f) == 6 for f in fields)
    times = [float(f[0]) for f in fields]
    assert times == sorted(times)  # monotonic, and written as they happen
    layers = {f[4] for f in fields}
    assert layers == {"connection", "session", "client", "server", "bridge"}
    assert {f[3] for f in fields} == {"-", "s1", trace.CLIENT_ID}


def test_trace_setting_in_the_config(tmp_path: Path) -> None:
    config = tmp_path / "guessgame.toml"
    config.write_text(CONFIG.read_text().replace("trace = false", "trace = true"))
    done = run_cli("demo", "--config", str(config), "--async", "all", "-q")
    assert {f[1] for f in trace_lines(done.stderr)} == {"MainThread"}
    quiet = run_cli("demo", "--config", str(CONFIG), "--async", "all", "-q")
    assert trace_lines(quiet.stderr) == []


# --- context and errors across each bridge -------------------------------------------


async def fail_on_the_loop() -> str:
    raise ValueError(f"from the loop, for {trace.SESSION_ID.get()}")


def test_thread_to_loop_carries_the_context_and_the_traceback(bridge: Bridge) -> None:
    async def session_id() -> str:
        return trace.SESSION_ID.get()

    def in_a_session() -> None:
        with trace.session("s7"):
            assert bridge.run_in_loop(session_id()) == "s7"
            with pytest.raises(ValueError, match="from the loop, for s7") as caught:
                bridge.run_in_loop(fail_on_the_loop())
        # The coroutine's frame, where it failed, is in the traceback the thread sees.
        assert frames(caught.value)[-1] == "fail_on_the_loop"
        assert "run_in_loop" in frames(caught.value)

    contextvars.copy_context().run(in_a_session)


def test_loop_to_thread_carries_the_context_and_the_traceback(bridge: Bridge) -> None:
    async def in_a_session() -> None:
        trace.SESSION_ID.set("s8")
        got = await bridge.run_in_thread("test", trace.SESSION_ID.get)
        assert got == "s8"
        with pytest.raises(ValueError, match="from a thread, for s8") as caught:
            await bridge.run_in_thread("test", fail_in_a_thread)
        assert frames(caught.value)[-1] == "fail_in_a_thread"
        assert "in_a_session" in frames(caught.value)

    bridge.run_in_loop(in_a_session())


def test_line_stream_raises_the_loop_side_error_in_the_thread(bridge: Bridge) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        theirs = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    with theirs:
        face = bridge.run_in_loop(adapters.BlockingFace.open(bridge, ours, 16, None))
        try:
            theirs.sendall(b"x" * 40 + b"\n")
            with pytest.raises(LineTooLong) as caught:
                face.receive()
        finally:
            face.close()
    # Raised by the reader task's receive() on the loop, raised again in this thread.
    names = frames(caught.value)
    assert names[0] == "test_line_stream_raises_the_loop_side_error_in_the_thread"
    assert "receive" in names and "_read" in names


def test_tasks_made_by_run_in_loop_are_named_after_the_call_and_the_thread(
        bridge: Bridge) -> None:
    async def my_task_name() -> str:
        task = asyncio.current_task()
        assert task is not None
        return task.get_name()

    assert bridge.run_in_loop(my_task_name()) == "test_tasks_made_by_run_in_loop_are_named_" \
        "after_the_call_and_the_thread.<locals>.my_task_name from MainThread"

    async def unnamed_child() -> str:
        return await asyncio.create_task(my_task_name())

    # A task the coroutine makes without a name is named after its own coroutine.
    assert bridge.run_in_loop(unnamed_child()).endswith("<locals>.my_task_name")
