"""Two minimal servers of the protocol, the yardsticks every stage is measured against.

- `threads`: one thread per connection, blocking sockets.
- `streams`: one task per connection, plain asyncio streams.

Both drive the same Guesser as the real system, so a stage's ratio to them is the cost
of its layers and bridges, not of the game. They have none of the system's duties (no
connection limit, idle timeout, reports or orderly shutdown): SIGTERM simply ends the
process. Run as `python -m guessgame.bench.baselines threads|streams --port 0`; the
first line of stdout is `listening on HOST:PORT`, like `guessgame serve`.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m guessgame.bench.baselines")
    parser.add_argument("kind", choices=("threads", "streams"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    listener = netutil.listen(args.host, args.port, BACKLOG)
    print(f"listening on {netutil.address(listener.getsockname())}", flush=True)
    if args.kind == "threads":
        serve_threads(listener)
    else:
        asyncio.run(serve_streams(listener))
    return 0


if __name__ == "__main__":
    sys.exit(main())
