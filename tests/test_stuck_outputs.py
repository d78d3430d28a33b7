"""No output stream can stop the server: a trace on a stderr nobody reads costs trace
lines, counted, never a game, a newcomer or a stop. Every server combination, and the
spool that stderr's writers share."""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time

import pytest

from guessgame import outputs
from guessgame.config import Layers
from peers import (
    PIPE_BYTES,
    SHUTDOWN_LIMIT,
    Peer,
    layers_arg,
    play_rounds,
    serve_unread,
    stop_and_time,
)
from timing import UNIT

ROUNDS = 10_000
ROUNDS_LIMIT = 10.0
"""Seconds for ROUNDS: with a stderr that is read, the trace lets 10,000 rounds take
0.5-0.7 s on a 2-core machine; a sink that waits for the reader never finishes."""



def test_a_trace_on_a_stderr_nobody_reads_stops_nothing(layers: Layers) -> None:
    """`serve` never runs the client layer, so the 16 combinations are 8 servers twice:
    each server takes SIGINT once and SIGTERM once."""
    signum = signal.SIGINT if layers.client else signal.SIGTERM
    server, port = serve_unread("--async", layers_arg(layers), "--trace")
    try:
        started = time.monotonic()
        play_rounds(port, ROUNDS)
        took = time.monotonic() - started
        with Peer(port) as newcomer:
            assert newcomer.probe() == ["1"]
        code, stopping = stop_and_time(server, signum)
    finally:
        if server.poll() is None:  # only after a failed assertion: do not leave it
            server.kill()
        _, err = server.communicate()
    assert took < ROUNDS_LIMIT, f"{ROUNDS} rounds took {took:.2f} s"
    assert code == 0, err.decode(errors="replace")
    assert stopping < SHUTDOWN_LIMIT, f"stopping took {stopping:.2f} s"
    assert b"Traceback" not in err


def pipe_spool(bound: int = outputs.SPOOL_BOUND) -> tuple[outputs.Spool, int]:
    """A spool on a small pipe of our own, and the pipe's reading end."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    return outputs.Spool(outputs.NonBlockingOutput.reopen(write_end), "the pipe", bound), read_end


def drain(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    return b"".join(chunks)


def test_a_stuck_reader_costs_lines_counted_and_told_once() -> None:
    line = b"x" * 99 + b"\n"
    spool, read_end = pipe_spool(bound=1000)
    try:
        for _ in range(PIPE_BYTES // len(line) + 10 + 20):  # the pipe, the bound, 20 more
            spool.write(line)
        assert spool.dropped == 20
        assert len(drain(read_end)) == PIPE_BYTES // len(line) * len(line)
        spool.flush_at_exit()  # room again: what waited goes, after one count of the loss
        said = drain(read_end).splitlines(keepends=True)
        assert said[0] == b"guessgame: 20 lines dropped: the pipe is not keeping up\n"
        assert said[1:] == [line] * 10
        for _ in range(PIPE_BYTES // len(line) + 10 + 1):  # stuck again: one more lost
            spool.write(line)
        assert spool.dropped == 21
        drain(read_end)
        time.sleep(outputs.RETRY_AFTER)  # a stuck spool tries again only after this
        spool.flush()  # room again, but the last count was told just now: not yet again
        assert drain(read_end) == line * 10
    finally:
        os.close(read_end)


def test_without_proc_a_pipe_nobody_reads_never_blocks_its_writer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Where /proc/self/fd cannot reopen the pipe, the output must not fall back to
    blocking writes: the report printer on the loop would stop with the reader."""
    def no_proc(fd: int) -> outputs.NonBlockingOutput:
        raise FileNotFoundError(f"/proc/self/fd/{fd}")

    monkeypatch.setattr(outputs.NonBlockingOutput, "reopen", no_proc)
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    taken: list[int] = []
    try:
        with os.fdopen(write_end, "w", closefd=False) as stream:
            out = outputs.for_stream(stream)
            # Past what the pipe holds: a blocking write would wait for a reader here.
            writer = threading.Thread(target=lambda: taken.extend(
                out.write_some(b"x" * 1000) for _ in range(2 * PIPE_BYTES // 1000)))
            writer.start()
            writer.join(UNIT)
            blocked = writer.is_alive()
            os.close(read_end)  # a writer still blocked gets EPIPE and ends
            writer.join()
        assert not blocked, "write_some() waited for the reader"
        assert 0 < sum(taken) <= PIPE_BYTES and taken[-1] == 0  # filled, then refused
    finally:
        os.close(write_end)
