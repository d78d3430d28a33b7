"""Three minimal servers of the protocol, the yardsticks every stage is measured against.

- `threads`: one thread per connection, blocking sockets.
- `streams`: one task per connection, plain asyncio streams.
- `mixed`: the middle of the migration done the plain way: asyncio streams read and
  write each connection, and a thread per connection plays the game, its lines
  crossing in two janus queues, one each way. It is what a stage with a threaded
  session over an asyncio connection costs before any layer of this system is added,
  so the middle stages have a yardstick of their own design, not only the ends'.

All three drive the same Guesser as the real system, so a stage's ratio to them is the
cost of its layers and bridges, not of the game. They have none of the system's duties (no
connection limit, idle timeout, reports or orderly shutdown): SIGTERM simply ends the
process. Run as `python -m guessgame.bench.baselines threads|streams|mixed --port 0`
(`--switch-interval S` to run it at another switch interval); the first line of stdout
is `listening on HOST:PORT`, like `guessgame serve`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import resource
import socket
import sys
import threading

import janus

from guessgame import netutil, protocol
from guessgame.protocol import Guesser

BACKLOG = 4096


def serve_threads(listener: socket.socket) -> None:
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=_session, args=(sock,), daemon=True).start()


def _session(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    guesser = Guesser(random.Random())
    with sock, sock.makefile("rb") as lines, contextlib.suppress(OSError):
        for raw in lines:
            step = guesser.handle(protocol.decode(raw))
            if step.reply is not None:
                sock.sendall(protocol.encode(step.reply))
            if step.close:
                return


async def serve_streams(listener: socket.socket) -> None:
    server = await asyncio.start_server(_stream_session, sock=listener, backlog=BACKLOG)
    async with server:
        await server.serve_forever()


async def _stream_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    guesser = Guesser(random.Random())
    with contextlib.suppress(OSError):
        while raw := await reader.readline():
            step = guesser.handle(protocol.decode(raw))
            if step.reply is not None:
                writer.write(protocol.encode(step.reply))
                await writer.drain()
            if step.close:
                break
    writer.close()


LINES_IN_FLIGHT = 16
"""Each janus queue of the mixed server holds this many lines: a reader stops reading,
and a session thread stops playing, until the other side takes some."""


async def serve_mixed(listener: socket.socket) -> None:
    server = await asyncio.start_server(_mixed_connection, sock=listener, backlog=BACKLOG)
    async with server:
        await server.serve_forever()


async def _mixed_connection(reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
    inbox: janus.Queue[bytes] = janus.Queue(LINES_IN_FLIGHT)
    outbox: janus.Queue[bytes] = janus.Queue(LINES_IN_FLIGHT)
    threading.Thread(target=_mixed_session, args=(inbox.sync_q, outbox.sync_q),
                     daemon=True).start()
    sending = asyncio.create_task(_send_replies(outbox.async_q, writer))
    with contextlib.suppress(OSError, janus.AsyncQueueShutDown):
        while raw := await reader.readline():
            await inbox.async_q.put(raw)
    inbox.shutdown()  # the session's next get() raises: the peer is gone
    await sending
    await inbox.aclose()
    await outbox.aclose()


async def _send_replies(outbox: janus.AsyncQueue[bytes], writer: asyncio.StreamWriter) -> None:
    """Write what the session sends until it ends; then close, which ends the read."""
    with contextlib.suppress(OSError, janus.AsyncQueueShutDown):
        while True:
            writer.write(await outbox.get())
            await writer.drain()
    writer.close()


def _mixed_session(inbox: janus.SyncQueue[bytes], outbox: janus.SyncQueue[bytes]) -> None:
    guesser = Guesser(random.Random())
    with contextlib.suppress(janus.SyncQueueShutDown):
        while True:
            step = guesser.handle(protocol.decode(inbox.get()))
            if step.reply is not None:
                outbox.put(protocol.encode(step.reply))
            if step.close:
                break
    inbox.shutdown()  # a read waiting for room gives up
    outbox.shutdown()  # the writer sends what is queued, then closes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m guessgame.bench.baselines")
    parser.add_argument("kind", choices=("threads", "streams", "mixed"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--switch-interval", type=float, metavar="S",
                        help="sys.setswitchinterval (default: CPython's 5 ms)")
    args = parser.parse_args(argv)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    listener = netutil.listen(args.host, args.port, BACKLOG)
    print(f"listening on {netutil.address(listener.getsockname())}", flush=True)
    if args.kind == "threads":
        serve_threads(listener)
    else:
        asyncio.run(serve_streams(listener) if args.kind == "streams"
                    else serve_mixed(listener))
    return 0


if __name__ == "__main__":
    sys.exit(main())
