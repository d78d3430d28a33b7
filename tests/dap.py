"""A minimal Debug Adapter Protocol client, speaking to debugpy as VS Code does.

DAP messages are JSON bodies behind a `Content-Length: N` header and a blank line. A
reader thread sorts what arrives into responses (by request seq) and events, so that a
test waits for either with a deadline and never hangs on a silent debugger.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

Message = dict[str, Any]
T = TypeVar("T")


class DapError(AssertionError):
    """The debugger did not answer as DAP says, or not in time."""


class DapClient:
    def __init__(self, port: int, timeout: float) -> None:
        self.timeout = timeout
        self._sock = self._connect(port)
        self._seq = 0
        self._responses: dict[int, Message] = {}
        self._events: queue.Queue[Message] = queue.Queue()
        self._arrived = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="dap reader")
        self._reader.start()

    def _connect(self, port: int) -> socket.socket:
        end = time.monotonic() + self.timeout
        while True:  # debugpy listens a moment after the process starts
            try:
                return socket.create_connection(("127.0.0.1", port), timeout=self.timeout)
            except ConnectionRefusedError:
                if time.monotonic() > end:
                    raise DapError(f"debugpy did not listen on port {port}") from None
                time.sleep(0.05)

    def _read(self) -> None:
        stream = self._sock.makefile("rb")
        try:
            while True:
                length = None
                while (header := stream.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode("ascii").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if length is None:  # the debugger went away
                    break
                message: Message = json.loads(stream.read(length))
                if message["type"] == "response":
                    with self._arrived:
                        self._responses[message["request_seq"]] = message
                        self._arrived.notify_all()
                elif message["type"] == "event":
                    self._events.put(message)
        except (OSError, ValueError):
            pass
        finally:
            stream.close()
            self._events.put({"type": "event", "event": "<closed>"})

    def send(self, command: str, **arguments: Any) -> int:
        self._seq += 1
        body = json.dumps({"seq": self._seq, "type": "request", "command": command,
                           "arguments": arguments}).encode()
        self._sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return self._seq

    def response(self, seq: int) -> Message:
        with self._arrived:
            if not self._arrived.wait_for(lambda: seq in self._responses, self.timeout):
                raise DapError(f"no response to request {seq} in {self.timeout} s")
            message = self._responses.pop(seq)
        if not message["success"]:
            raise DapError(f"{message['command']} failed: {message.get('message')}")
        return message.get("body") or {}

    def request(self, command: str, **arguments: Any) -> Message:
        return self.response(self.send(command, **arguments))

    def event(self, *names: str) -> Message:
        """The next event among `names` ("<closed>" once the connection ended)."""
        end = time.monotonic() + self.timeout
        while True:
            try:
                message = self._events.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise DapError(f"no {' or '.join(names)} event in {self.timeout} s") from None
            if message["event"] in names or message["event"] == "<closed>":
                return message

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._reader.join(self.timeout)


def free_port() -> int:
    # debugpy's `--listen 0` picks a port but prints nothing, so pick one here.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def stop(process: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """Kill the program and the adapter process debugpy started beside it: they share
    the session they were started in, and the adapter holds the pipes open."""
    with contextlib.suppress(ProcessLookupError):  # all gone already
        os.killpg(process.pid, signal.SIGKILL)
    if process.stdout is not None and not process.stdout.closed:
        return process.communicate(timeout=timeout)
    process.wait(timeout)
    return "", ""


def debugged(argv: list[str], timeout: float,
             drive: Callable[[DapClient], T]) -> tuple[T, subprocess.CompletedProcess[str]]:
    """Run `python -m debugpy ... ARGV` waiting for a client, let `drive` debug it over DAP,
    and return what `drive` returned and how the program ended. A failure while debugging
    is raised as one AssertionError with the program's output, and the program and its
    adapter are gone afterwards, whatever happened."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "debugpy", "--listen", f"127.0.0.1:{port}", "--wait-for-client",
         *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    dap = None
    try:
        dap = DapClient(port, timeout)
        driven = drive(dap)
        out, err = process.communicate(timeout=timeout)
    except (DapError, AssertionError, subprocess.TimeoutExpired) as error:
        out, err = stop(process, timeout)
        raise AssertionError(f"{error}\nstdout:\n{out}\nstderr:\n{err[-3000:]}") from None
    finally:
        if dap is not None:
            dap.close()
        stop(process, timeout)
    return driven, subprocess.CompletedProcess(process.args, process.returncode, out, err)
