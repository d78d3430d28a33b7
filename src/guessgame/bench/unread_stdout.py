"""The bench's unread-stdout cell: a server whose transcript goes to a pipe nobody reads.

The server prints `listening on`, and nothing it writes after that is ever read: the
pipe fills within a fraction of a second, as with a pager left open or a log shipper
that stopped. Clients then play in windows (the bench's `--duration`) until `rounds`
rounds have been played, and the server's RSS is read after each window. A newcomer then
plays for half a second, and the server is stopped with SIGTERM. The cell passes if
the rounds were played, the last window's RSS is within `RSS_SLACK` of the first's,
the newcomer was served, and the server exited 0 within `STOP_LIMIT` seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from guessgame.bench import runner
from guessgame.bench.runner import Target

MAX_WINDOWS: Final = 40
"""A stage too slow to reach the rounds in 40 windows fails the cell rather than run on."""
RSS_SLACK: Final = 1.10
"""RSS counts as flat if the last window ends within 10% of the first (allocator noise)."""
STOP_LIMIT: Final = 2.0


def measure(target: Target, clients: int, rounds: int, window: float,
            config: str) -> dict[str, Any]:
    """Play `rounds` rounds with `clients` clients, in windows of `window` seconds,
    while stdout is never read."""
    with runner.running(target, config, "unread") as server:
        played = 0
        rates: list[float] = []
        rss: list[int] = []
        while played < rounds and len(rates) < MAX_WINDOWS:
            result = runner.play(server, runner.Load(clients, 0.0, window), deadline=window + 60.0)
            if result.get("rounds") is None:
                return runner.stopped(server, {"stage": target.name, "clients": clients,
                                               "failed": clients, **result})
            played += result["rounds"]
            rates.append(result["rounds_per_s"])
            rss.append(server.status().get("VmRSS", 0))
        newcomer = runner.play(server, runner.Load(1, 0.0, 0.5), deadline=60.5)
        cell = {"stage": target.name, "clients": clients, "rounds": played,
                "rounds_per_s_first": rates[0], "rounds_per_s_last": rates[-1],
                "windows": len(rates), "rss_first_bytes": rss[0], "rss_last_bytes": rss[-1],
                "newcomer_rounds": newcomer.get("rounds") or 0}
        return runner.stopped(server, cell)


def passed(cell: dict[str, Any], rounds: int) -> bool:
    if cell.get("rounds") is None:
        return False
    return (cell.get("rounds", 0) >= rounds
            and cell["rss_last_bytes"] <= cell["rss_first_bytes"] * RSS_SLACK
            and cell["newcomer_rounds"] > 0
            and cell.get("server_exit") == 0 and cell["stop_s"] < STOP_LIMIT)


def add_usual_rate(unread: list[dict[str, Any]], cells: list[dict[str, Any]]) -> None:
    """Give each unread-stdout cell the rate of the same stage and client count with no
    transcript at all, from the same run, as `usual_rounds_per_s`."""
    usual = {(cell["stage"], cell["clients"]): cell.get("rounds_per_s") for cell in cells
             if not cell.get("slow_stdout")}
    for cell in unread:
        cell["usual_rounds_per_s"] = usual.get((cell["stage"], cell["clients"]))


def table(cells: Iterable[dict[str, Any]]) -> str:
    head = ("stage", "clients", "rounds", "rounds/s first window", "rounds/s last window",
            "x usual", "RSS first MB", "RSS last MB", "newcomer rounds", "reports dropped",
            "stop s", "exit")
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in cells:
        if cell.get("rounds") is None:
            rows.append(f"| {cell['stage']} | failed: {cell.get('failures')} |")
            continue
        values = (cell["stage"], f"{cell['clients']:,}", f"{cell['rounds']:,}",
                  f"{cell['rounds_per_s_first']:,.0f}", f"{cell['rounds_per_s_last']:,.0f}",
                  _ratio(cell["rounds_per_s_last"], cell.get("usual_rounds_per_s")),
                  f"{cell['rss_first_bytes'] / 2**20:.1f}",
                  f"{cell['rss_last_bytes'] / 2**20:.1f}", f"{cell['newcomer_rounds']:,}",
                  f"{cell.get('reports_dropped', 0):,}", f"{cell['stop_s']:.2f}",
                  str(cell.get("server_exit")))
        rows.append("| " + " | ".join(values) + " |")
    return "\n".join(rows)


def _ratio(value: float, usual: float | None) -> str:
    return f"{value / usual:.2f}" if usual else "-"


def check(cells: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    """The bench's target line for these cells."""
    missed = [cell for cell in cells if not passed(cell, rounds)]
    return {"target": f"stdout never read: {rounds:,} rounds, flat RSS, a newcomer served, "
                      f"exit 0 within {STOP_LIMIT:g} s, every stage",
            "met": not missed,
            "detail": "; ".join(f"{cell['stage']}: {_outcome(cell)}"
                                for cell in missed or cells)}


def _outcome(cell: dict[str, Any]) -> str:
    if cell.get("rounds") is None:
        return f"failed: {cell.get('failures')}"
    return (f"{cell['rounds']:,} rounds, RSS {cell['rss_first_bytes'] / 2**20:.1f} -> "
            f"{cell['rss_last_bytes'] / 2**20:.1f} MB, newcomer {cell['newcomer_rounds']} "
            f"rounds, exit {cell.get('server_exit')} after {cell['stop_s']:.2f} s")
