"""The bench's unread-stdout cell: a server whose transcript goes to a pipe nobody reads.

The server prints `listening on`, and nothing it writes after that is ever read: the
pipe fills within a fraction of a second, as with a pager left open or a log shipper
that stopped. Clients then play in windows of `WINDOW` seconds until `rounds` rounds
have been played, and the server's RSS is read after each window. A newcomer then
plays for half a second, and the server is stopped with SIGTERM. The cell passes if
the rounds were played, the last window's RSS is within `RSS_SLACK` of the first's,
the newcomer was served, and the server exited 0 within `STOP_LIMIT` seconds.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from typing import Any, Final

from guessgame.bench import runner
from guessgame.bench.runner import Target

WINDOW: Final = 5.0
MAX_WINDOWS: Final = 40
"""A stage too slow to reach the rounds in 40 windows fails the cell rather than run on."""
RSS_SLACK: Final = 1.10
"""RSS counts as flat if the last window ends within 10% of the first (allocator noise)."""
STOP_LIMIT: Final = 2.0


def measure(target: Target, clients: int, rounds: int, config: str) -> dict[str, Any]:
    """Play `rounds` rounds with `clients` clients while stdout is never read."""
    with runner.running(target, config, "unread") as server:
        played, rates, rss = 0, [], []
        while played < rounds and len(rates) < MAX_WINDOWS:
            window = _play(server, clients, WINDOW)
            if window.get("rounds") is None:
                return runner.stopped(server, {"stage": target.name, "clients": clients,
                                               "failed": clients, **window})
            played += window["rounds"]
            rates.append(window["rounds_per_s"])
            rss.append(server.status().get("VmRSS", 0))
        newcomer = _play(server, 1, 0.5)
        result = {"stage": target.name, "clients": clients, "rounds": played,
                  "rounds_per_s_first": rates[0], "rounds_per_s_last": rates[-1],
                  "windows": len(rates), "rss_first_bytes": rss[0], "rss_last_bytes": rss[-1],
                  "newcomer_rounds": newcomer.get("rounds") or 0}
        return runner.stopped(server, result)


def _play(server: runner.Server, clients: int, duration: float) -> dict[str, Any]:
    command = runner.loadgen_command(server, "--clients", str(clients), "--warmup", "0",
                                     "--duration", str(duration))
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=duration + 60.0, check=False)
    except subprocess.TimeoutExpired:
        return {"failures": ["load generator timed out"]}
    return runner.parse_result(done.stdout, done.stderr, clients)


def passed(cell: dict[str, Any], rounds: int) -> bool:
    if cell.get("rounds") is None:
        return False
    return (cell.get("rounds", 0) >= rounds
            and cell["rss_last_bytes"] <= cell["rss_first_bytes"] * RSS_SLACK
            and cell["newcomer_rounds"] > 0
            and cell.get("server_exit") == 0 and cell["stop_s"] < STOP_LIMIT)


def table(cells: Iterable[dict[str, Any]]) -> str:
    head = ("stage", "clients", "rounds", "rounds/s first window", "rounds/s last window",
            "RSS first MB", "RSS last MB", "newcomer rounds", "reports dropped", "stop s",
            "exit")
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in cells:
        if cell.get("rounds") is None:
            rows.append(f"| {cell['stage']} | failed: {cell.get('failures')} |")
            continue
        values = (cell["stage"], f"{cell['clients']:,}", f"{cell['rounds']:,}",
                  f"{cell['rounds_per_s_first']:,.0f}", f"{cell['rounds_per_s_last']:,.0f}",
                  f"{cell['rss_first_bytes'] / 2**20:.1f}",
                  f"{cell['rss_last_bytes'] / 2**20:.1f}", f"{cell['newcomer_rounds']:,}",
                  f"{cell.get('reports_dropped', 0):,}", f"{cell['stop_s']:.2f}",
                  str(cell.get("server_exit")))
        rows.append("| " + " | ".join(values) + " |")
    return "\n".join(rows)


def check(cells: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    """The bench's target line for these cells."""
    missed = [f"{cell['stage']}: {_why(cell, rounds)}" for cell in cells
              if not passed(cell, rounds)]
    return {"target": f"stdout never read: {rounds:,} rounds, flat RSS, a newcomer served, "
                      f"exit 0 within {STOP_LIMIT:g} s, every stage",
            "met": not missed,
            "detail": "; ".join(missed) if missed else f"{len(cells)} stages"}


def _why(cell: dict[str, Any], rounds: int) -> str:
    if cell.get("rounds") is None:
        return f"failed: {cell.get('failures')}"
    return (f"{cell['rounds']:,} rounds, RSS {cell['rss_first_bytes'] / 2**20:.1f} -> "
            f"{cell['rss_last_bytes'] / 2**20:.1f} MB, newcomer {cell['newcomer_rounds']} "
            f"rounds, exit {cell.get('server_exit')} after {cell['stop_s']:.2f} s")
