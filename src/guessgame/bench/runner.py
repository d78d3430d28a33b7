"""One measurement: a fresh server process, a load generator process, and the numbers.

Every child process stops by itself: the server on SIGTERM (killed if it does not
exit in time), the load generator at the end of its window (killed past a deadline).
The server's memory and threads are read from /proc, so the bench runs on Linux.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Literal

from guessgame.config import Layers

START_TIMEOUT = 30.0
STOP_TIMEOUT = 60.0
"""A threaded server joins one thread per connection on the way out."""
SAMPLE_EVERY = 0.05
IDLE_SETTLE = 0.5
"""Seconds to let the server's memory settle before reading it."""
SLOW_READ_BYTES = 4096
SLOW_READ_EVERY = 0.1
"""The slow stdout reader takes 4 kB every 0.1 s: 40 kB/s, a tenth of what a busy
server prints, like a log shipper that has fallen behind."""
DROPPED = re.compile(r"(\d+) reports dropped")

Transcript = Literal["off", "slow", "unread"]
"""Where the server's transcript goes: nowhere (`--no-reports`), to a pipe read at
40 kB/s, or to a pipe nobody reads after the `listening on` line."""


@dataclass(frozen=True)
class Target:
    """A server to measure: a stage (a combination of async layers) or a baseline."""

    name: str
    layers: Layers | None = None  # None for a baseline
    baseline: str | None = None
    uvloop: bool = False
    switch_interval: float | None = None  # a baseline's, when not CPython's default
    results: bool = True  # a stage's results store on (the bench config's) or `none`

    @property
    def is_baseline(self) -> bool:
        return self.baseline is not None

    def command(self, config: str, reports: bool = False) -> list[str]:
        if self.baseline is not None:
            interval = ([] if self.switch_interval is None else
                        ["--switch-interval", str(self.switch_interval)])
            return [sys.executable, "-m", "guessgame.bench.baselines", self.baseline,
                    "--host", "127.0.0.1", "--port", "0", *interval]
        assert self.layers is not None
        layers = ",".join(self.layers.names) or "none"
        if self.uvloop:  # the same config, with `uvloop = true`
            config = uvloop_config(config)
        return [sys.executable, "-m", "guessgame", "serve", "--host", "127.0.0.1", "--port",
                "0", "--async", layers, "--config", config, "-q",
                *([] if reports else ["--no-reports"]),
                *([] if self.results else ["--results", "none"])]


def uvloop_config(config: str) -> str:
    return config.removesuffix(".toml") + "-uvloop.toml"


def baselines(threaded_switch_interval: float) -> list[Target]:
    """The minimal servers; the thread-per-connection one twice, at CPython's switch
    interval and at the one `serve` uses while threads read the sockets."""
    return [Target("baseline-threads", baseline="threads"),
            Target(threads_at(threaded_switch_interval), baseline="threads",
                   switch_interval=threaded_switch_interval),
            Target("baseline-streams", baseline="streams"),
            Target("baseline-mixed", baseline="mixed")]


def threads_at(switch_interval: float) -> str:
    """The name of the thread-per-connection baseline run at this switch interval."""
    return f"baseline-threads-{switch_interval * 1e3:g}ms"


def read_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS), both in bytes, and Threads, from /proc/<pid>/status."""
    values: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
            elif key == "Threads":
                values[key] = int(rest)
    return values


class Server:
    """A server process, watched for its peak RSS and thread count while it runs."""

    def __init__(self, target: Target, config: str, transcript: Transcript = "off") -> None:
        self.target = target
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(target.command(config, reports=transcript != "off"),
                                        stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=self._stderr)
        self.pid = self.process.pid
        self.peak_threads = 0
        self._stop_sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="bench-sampler")
        self.port = self._wait_listening()
        self._sampler.start()
        self._reader: threading.Thread | None = None
        if transcript == "slow":
            self._reader = threading.Thread(target=self._read_slowly, name="bench-slow-reader")
            self._reader.start()

    def _read_slowly(self) -> None:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while not self._stop_sampling.wait(SLOW_READ_EVERY):
            with contextlib.suppress(OSError):
                if not os.read(fd, SLOW_READ_BYTES):
                    return

    def _wait_listening(self) -> int:
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(START_TIMEOUT):
                self.kill()
                raise RuntimeError(f"{self.target.name}: no `listening on` line in "
                                   f"{START_TIMEOUT:g} s")
        line = self.process.stdout.readline().decode()
        if not line.startswith("listening on "):
            self.kill()
            raise RuntimeError(f"{self.target.name}: expected `listening on`, got {line!r}: "
                               f"{self.errors()}")
        return int(line.rsplit(":", 1)[1])

    def _sample(self) -> None:
        while not self._stop_sampling.wait(SAMPLE_EVERY):
            self.peak_threads = max(self.peak_threads, read_status(self.pid).get("Threads", 0))

    def status(self) -> dict[str, int]:
        return read_status(self.pid)

    def stop(self) -> int | None:
        """SIGTERM, wait, kill if it hangs; the exit code (None if it had to be killed)."""
        self._stop_sampling.set()
        if self._sampler.is_alive():
            self._sampler.join()
        if self._reader is not None:
            self._reader.join()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            code = None
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code

    def kill(self) -> None:
        self._stop_sampling.set()
        self.process.kill()
        self.process.wait()
        if getattr(self, "_reader", None) is not None:
            assert self._reader is not None
            self._reader.join()

    def errors(self) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        return text

    def errors_since(self, offset: int) -> tuple[str, int]:
        """Stderr written since byte `offset`, and the offset to read from next.

        pread, not seek and read: the server writes through the same open file, so a
        seek here would move the offset it writes at, and its next line would overwrite
        what it wrote before.
        """
        chunks = []
        while chunk := os.pread(self._stderr.fileno(), 1 << 16, offset):
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks).decode(errors="replace"), offset

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        self._stderr.close()


@contextlib.contextmanager
def running(target: Target, config: str, transcript: Transcript = "off") -> Iterator[Server]:
    server = Server(target, config, transcript)
    try:
        yield server
    finally:
        server.close()


def loadgen_command(server: Server, *options: str) -> list[str]:
    return [sys.executable, "-m", "guessgame.bench.loadgen", "--host", "127.0.0.1",
            "--port", str(server.port), "--server-pid", str(server.pid), *options]


def stopped(server: Server, result: dict[str, Any]) -> dict[str, Any]:
    """Stop the server and add how it went to the result: its exit code and how long
    stopping took, reports it dropped, and any other line on its stderr."""
    started = time.monotonic()
    code = server.stop()
    result["stop_s"] = time.monotonic() - started
    lines = server.errors().splitlines()
    drops = [int(found.group(1)) for line in lines if (found := DROPPED.search(line))]
    result["server_exit"] = code
    result["reports_dropped"] = sum(drops)
    result["server_errors"] = [line for line in lines if not DROPPED.search(line)][-5:]
    return result


@dataclass(frozen=True)
class Load:
    """How the load generator plays one cell: its clients, their pattern, its windows."""

    clients: int
    warmup: float
    duration: float
    arrival: str = "start-line"
    pattern: str = "batched"
    windows: int = 1

    def options(self) -> list[str]:
        return ["--clients", str(self.clients), "--warmup", str(self.warmup),
                "--duration", str(self.duration), "--arrival", self.arrival,
                "--pattern", self.pattern, "--windows", str(self.windows)]


def measure(target: Target, load: Load, config: str, settle: float = 0.0,
            slow_stdout: bool = False) -> dict[str, Any]:
    """Rounds/s, latency, time to first reply, server CPU per round, peak RSS and threads
    at one client count; then, `settle` seconds after the window, the threads left.

    With `slow_stdout` the server prints its transcript to a pipe read at 40 kB/s.
    """
    with running(target, config, "slow" if slow_stdout else "off") as server:
        threads_before = server.status().get("Threads")  # the idle level of a fresh start
        result = play(server, load)
        status = server.status()
        result["peak_rss_bytes"] = status.get("VmHWM")
        result["peak_threads"] = max(server.peak_threads, status.get("Threads", 0))
        result["slow_stdout"] = slow_stdout
        if not target.is_baseline:
            result["results"] = "on" if target.results else "none"
        result["threads_before"] = threads_before
        if settle:  # every client has gone: what the server keeps when idle again
            time.sleep(settle)
            result["threads_after"] = server.status().get("Threads")
            result["settle_s"] = settle
        return stopped(server, {"stage": target.name, **result})


def play(server: Server, load: Load, deadline: float | None = None) -> dict[str, Any]:
    """Run the load generator once against `server`: its result, or a failure if it has
    not finished `deadline` seconds on (by default, time to connect, warm up and play)."""
    if deadline is None:  # connects, warm-up, windows, margins
        deadline = load.warmup + load.duration * load.windows + 3 * 20.0 + 10.0
    command = loadgen_command(server, *load.options())
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=deadline, check=False)
    except subprocess.TimeoutExpired:
        return {"clients": load.clients, "failed": load.clients,
                "failures": ["load generator timed out"]}
    return parse_result(done.stdout, done.stderr, load.clients)


def parse_result(stdout: bytes, stderr: bytes, clients: int) -> dict[str, Any]:
    lines = stdout.decode().strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
        return {"clients": clients, "failed": clients,
                "failures": ["load generator failed", *tail]}
    return result


def measure_idle(target: Target, count: int, config: str) -> dict[str, Any]:
    """RSS per idle connection: the server's RSS with `count` idle connections, minus
    its RSS before, divided by the connections."""
    with running(target, config) as server:
        time.sleep(IDLE_SETTLE)
        before = server.status().get("VmRSS", 0)
        command = loadgen_command(server, "--idle", str(count))
        holder = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        try:
            report = _read_ready(holder)
            time.sleep(IDLE_SETTLE)
            status = server.status()
            after = status.get("VmRSS", 0)
            assert holder.stdin is not None
            holder.stdin.write(b"done\n")
            holder.stdin.flush()
            out, err = holder.communicate(timeout=120)
            final = parse_result(out, err, count)
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()
        connected = report.get("answered", 0)
        result = {
            "stage": target.name,
            "idle": count,
            "connected": connected,
            "failed": final.get("failed", count),
            "failures": final.get("failures", []),
            "rss_before_bytes": before,
            "rss_after_bytes": after,
            "rss_per_connection_bytes": (after - before) / connected if connected else None,
            "threads": status.get("Threads"),
        }
        return stopped(server, result)


def _read_ready(holder: subprocess.Popen[bytes]) -> dict[str, Any]:
    assert holder.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(holder.stdout, selectors.EVENT_READ)
        if not selector.select(120):
            return {}
    line = holder.stdout.readline().decode()
    if not line.startswith("ready "):
        return {}
    report: dict[str, Any] = json.loads(line.removeprefix("ready "))
    return report
