"""The reload cell: one server, reloaded through every stage and back under load.

`guessgame bench --reload` starts `guessgame serve` at the first stage, runs clients
that reconnect after every game (reload_load.py, in its own process), and sends SIGHUP
once a second, each time with the config's `stage` set to the next stage of the path
all-threads -> ... -> all-async -> ... -> all-threads. It reports the games played,
every failed, reset or refused client, how long each reload took to be answered, and
whether the thread count, once the last old server has drained, is a fresh start's.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guessgame.bench import runner
from guessgame.bench.runner import Server, Target

ANSWER_TIMEOUT = 10.0
"""How long a reload may take to be answered in the log before it counts as lost."""
DRAIN_TIMEOUT = 30.0


@dataclass(frozen=True)
class ReloadTarget(Target):
    """A server at the stage its config names, so that SIGHUP can move it."""

    def command(self, config: str, reports: bool = False) -> list[str]:
        return [sys.executable, "-m", "guessgame", "serve", "--host", "127.0.0.1", "--port",
                "0", "--config", config, *([] if reports else ["--no-reports"])]


def stage_path(stages: list[str]) -> list[str]:
    """Every stage and back: all-threads ... all-async ... all-threads."""
    return stages + stages[-2::-1]


def at_stage(config_text: str, stage: str) -> str:
    text = re.sub(r'^stage = ".*"\n', "", config_text, flags=re.M)
    return text.replace("[guessgame]\n", f'[guessgame]\nstage = "{stage}"\n', 1)


class Log:
    """The server's own log lines, read as they come (sessions log a line per game)."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._offset = 0
        self._partial = ""
        self.lines: list[str] = []

    def poll(self) -> list[str]:
        text, self._offset = self._server.errors_since(self._offset)
        *whole, self._partial = (self._partial + text).split("\n")
        self.lines += [line for line in whole if line.startswith("guessgame: ")]
        return self.lines

    def wait_for(self, prefix: str, after: int) -> float | None:
        """Seconds until a line starting with `prefix` appears after line `after`."""
        start = time.monotonic()
        while time.monotonic() - start < ANSWER_TIMEOUT:
            if any(line.startswith(prefix) for line in self.poll()[after:]):
                return time.monotonic() - start
            time.sleep(0.01)
        return None


def measure_reload(config: str, stages: list[str], clients: int,
                   every: float) -> dict[str, Any]:
    path = stage_path(stages)
    base = Path(config).read_text()
    live = Path(config).with_name("reload.toml")
    live.write_text(at_stage(base, path[0]))
    target = ReloadTarget("reload")
    answered: list[dict[str, Any]] = []
    with runner.running(target, str(live)) as server:
        fresh = server.status().get("Threads", 0)
        load = subprocess.Popen(
            [sys.executable, "-m", "guessgame.bench.reload_load", "--port", str(server.port),
             "--clients", str(clients), "--duration", str(every * len(path))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        started = time.monotonic()
        log = Log(server)
        for step, (old, new) in enumerate(itertools.pairwise(path), start=1):
            time.sleep(max(0.0, started + step * every - time.monotonic()))
            before = len(log.poll())
            live.write_text(at_stage(base, new))
            server.process.send_signal(signal.SIGHUP)
            took = log.wait_for(f"guessgame: stage {old} -> {new} ", before)
            answered.append({"from": old, "to": new, "answered_s": took,
                             "threads": server.status().get("Threads")})
        out, err = load.communicate(timeout=every * len(path) + 60)
        drained = _wait_threads(server, fresh)
        peak = server.peak_threads
        code = server.stop()
        refused = [line for line in log.poll() if "refused" in line]
    if load.returncode != 0:
        raise RuntimeError(f"reload load generator failed: {err.decode()[-500:]}")
    result: dict[str, Any] = json.loads(out)
    result.update({
        "stage": "reload", "path": path, "reload_every_s": every, "reloads": answered,
        "reloads_unanswered": sum(step["answered_s"] is None for step in answered),
        "server_refused": len(refused), "fresh_threads": fresh,
        "threads_after_drain": drained, "peak_threads": peak, "server_exit": code,
    })
    return result


def _wait_threads(server: Server, expected: int) -> int:
    """The server's thread count once it is back to `expected`, or after the timeout."""
    end = time.monotonic() + DRAIN_TIMEOUT
    while (threads := server.status().get("Threads", 0)) != expected \
            and time.monotonic() < end:
        time.sleep(0.05)
    return threads


def summary(cell: dict[str, Any]) -> str:
    kinds = cell.get("failures_by_kind") or {}
    slowest = max((step["answered_s"] or 0.0 for step in cell["reloads"]), default=0.0)
    return (f"{cell['clients']} clients, {len(cell['reloads'])} reloads every "
            f"{cell['reload_every_s']:g} s: {cell['games']:,} games "
            f"({cell['games_per_s']:,.0f}/s), round trip p50 {cell['p50_ms']:.2f} ms "
            f"p99 {cell['p99_ms']:.2f} ms; failed {cell['failed']} "
            f"(reset {kinds.get('reset', 0)}, refused {kinds.get('refused', 0)}, invalid "
            f"{kinds.get('invalid', 0)}), refused by the server {cell['server_refused']}, "
            f"reloads unanswered {cell['reloads_unanswered']} (slowest answer "
            f"{slowest * 1000:.0f} ms); threads after drain {cell['threads_after_drain']} "
            f"vs {cell['fresh_threads']} at a fresh start, peak {cell['peak_threads']}")
