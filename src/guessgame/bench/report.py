"""The bench's results as a table, a JSON document and a plot, with the targets checked."""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from guessgame import workers

THREADS = "baseline-threads"
STREAMS = "baseline-streams"
MIXED = "baseline-mixed"
"""Threaded sessions over asyncio connections, lines crossing in janus queues, no layers."""

# The targets, as ratios of server CPU per round.
ASYNC_VS_STREAMS = 1.25
THREADS_VS_THREADS = 1.25
MIXED_VS_THREADS = 2.5
"""Every combination between the ends, against the thread-per-connection baseline."""
IDLE_BYTES_PER_CONNECTION = 8 * 1024
FIRST_REPLY_LIMIT_MS = 2000.0


def machine() -> dict[str, Any]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo
                          if line.startswith("model name")), "?")
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "implementation": platform.python_implementation(), "system": platform.platform()}


def add_ratios(cells: list[dict[str, Any]]) -> None:
    """Each cell's CPU per round as a multiple of each baseline's at the same clients."""
    cost = {(cell["stage"], cell["clients"]): cell.get("server_cpu_us_per_round")
            for cell in cells}
    for cell in cells:
        for baseline, key in ((THREADS, "x_threads"), (STREAMS, "x_streams"),
                              (MIXED, "x_mixed")):
            base = cost.get((baseline, cell["clients"]))
            mine = cell.get("server_cpu_us_per_round")
            cell[key] = mine / base if mine and base else None


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def table(cells: Iterable[dict[str, Any]]) -> str:
    """A markdown table, one row per stage and client count."""
    head = ("stage", "clients", "arrival", "rounds/s", "p50 ms", "p99 ms", "first reply p50 ms",
            "first reply p99 ms", "first reply max ms", "CPU µs/round", "x threads",
            "x streams", "x mixed", "peak RSS MB", "peak threads", "threads after", "failed",
            "stalled", "loadgen CPU")
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in cells:
        rss = cell.get("peak_rss_bytes")
        share = cell.get("loadgen_cpu_share")
        row = (cell["stage"], _num(cell["clients"]), cell.get("arrival", "-"),
               _num(cell.get("rounds_per_s"), 0), _num(cell.get("p50_ms"), 2),
               _num(cell.get("p99_ms"), 2), _num(cell.get("first_reply_p50_ms"), 0),
               _num(cell.get("first_reply_p99_ms"), 0), _num(cell.get("first_reply_max_ms"), 0),
               _num(cell.get("server_cpu_us_per_round")), _num(cell.get("x_threads"), 2),
               _num(cell.get("x_streams"), 2), _num(cell.get("x_mixed"), 2),
               _num(rss / 2**20 if rss else None),
               _num(cell.get("peak_threads")), _num(cell.get("threads_after")),
               _num(cell.get("failed")), _num(cell.get("stalled")),
               "-" if share is None else f"{share:.0%}")
        rows.append("| " + " | ".join(row) + " |")
    return "\n".join(rows)


def slow_stdout_table(cells: Iterable[dict[str, Any]]) -> str:
    """The cells whose server printed its transcript to a pipe read at 40 kB/s."""
    head = ("stage", "clients", "rounds/s", "p99 ms", "first reply max ms", "peak RSS MB",
            "reports dropped", "failed", "stop s", "exit")
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in cells:
        rss = cell.get("peak_rss_bytes")
        row = (cell["stage"], _num(cell["clients"]), _num(cell.get("rounds_per_s"), 0),
               _num(cell.get("p99_ms"), 2), _num(cell.get("first_reply_max_ms"), 0),
               _num(rss / 2**20 if rss else None), _num(cell.get("reports_dropped")),
               _num(cell.get("failed")), _num(cell.get("stop_s"), 2),
               _num(cell.get("server_exit")))
        rows.append("| " + " | ".join(row) + " |")
    return "\n".join(rows)


def idle_table(rows: Iterable[dict[str, Any]]) -> str:
    head = ("stage", "idle connections", "RSS before MB", "RSS after MB", "kB per connection",
            "threads", "failed")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        per = row.get("rss_per_connection_bytes")
        cells = (row["stage"], _num(row["idle"]), _num(row["rss_before_bytes"] / 2**20),
                 _num(row["rss_after_bytes"] / 2**20), _num(per / 1024 if per else None),
                 _num(row.get("threads")), _num(row.get("failed")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check_targets(cells: list[dict[str, Any]], idle: list[dict[str, Any]],
                  all_threads: str, all_async: str, mixed: set[str]) -> list[dict[str, Any]]:
    """Each target the results can speak to: met, missed, or not measured."""
    by = {(cell["stage"], cell["clients"]): cell for cell in cells}
    checks: list[dict[str, Any]] = []

    def check(name: str, values: list[tuple[str, Any, bool]]) -> None:
        if not values:
            checks.append({"target": name, "met": None, "detail": "not measured"})
            return
        missed = [f"{where}: {value}" for where, value, ok in values if not ok]
        checks.append({"target": name, "met": not missed,
                       "detail": "; ".join(missed) if missed else
                       "; ".join(f"{where}: {value}" for where, value, _ in values)})

    stages = sorted({cell["stage"] for cell in cells if not cell["stage"].startswith("baseline")
                     and not cell.get("slow_stdout")})
    check("0 failed or stalled clients at 1000 clients, every stage",
          [(stage, f"{by[stage, 1000].get('failed')} failed, {by[stage, 1000].get('stalled')} "
                   "stalled", by[stage, 1000].get("failed") == 0
                   and by[stage, 1000].get("stalled") == 0)
           for stage in stages if (stage, 1000) in by])
    check(f"every client's first reply within {FIRST_REPLY_LIMIT_MS / 1000:g} s at 1000 "
          "burst arrivals, every stage",
          [(stage, f"max {by[stage, 1000].get('first_reply_max_ms', math.nan):,.0f} ms, "
                   f"{by[stage, 1000].get('failed')} failed",
            by[stage, 1000].get("failed") == 0
            and by[stage, 1000].get("first_reply_max_ms", math.inf) < FIRST_REPLY_LIMIT_MS)
           for stage in stages
           # A cell whose server never started has no arrival: it counts as a miss.
           if (stage, 1000) in by and by[stage, 1000].get("arrival", "burst") == "burst"])
    # Idle workers stay for worker_idle_timeout (10 s by default): only a count taken
    # later than that can speak.
    check("threads back to a fresh start's level once idle workers retire, every stage",
          [(f"{stage} C={c}", f"{cell['threads_after']} threads, "
                              f"{cell['threads_before']} at the start",
            cell["threads_after"] <= cell["threads_before"])
           for (stage, c), cell in by.items()
           if stage in stages and cell.get("threads_after") is not None
           and cell.get("threads_before") is not None
           and cell.get("settle_s", 0) > workers.IDLE_TIMEOUT])
    check(f"all-async <= {ASYNC_VS_STREAMS}x streams baseline CPU/round at C=100, 1000",
          [(f"C={c}", f"{by[all_async, c]['x_streams']:.2f}x",
            by[all_async, c]["x_streams"] <= ASYNC_VS_STREAMS)
           for c in (100, 1000) if by.get((all_async, c), {}).get("x_streams")])
    check(f"all-threads <= {THREADS_VS_THREADS}x thread baseline CPU/round at C=100, 1000",
          [(f"C={c}", f"{by[all_threads, c]['x_threads']:.2f}x",
            by[all_threads, c]["x_threads"] <= THREADS_VS_THREADS)
           for c in (100, 1000) if by.get((all_threads, c), {}).get("x_threads")])
    check(f"every other combination <= {MIXED_VS_THREADS}x thread baseline CPU/round at "
          "C=100, 1000",
          [(f"{stage} C={c}", f"{by[stage, c]['x_threads']:.2f}x",
            by[stage, c]["x_threads"] <= MIXED_VS_THREADS)
           for stage in sorted(mixed) for c in (100, 1000)
           if by.get((stage, c), {}).get("x_threads")])
    check(f"all-async <= {IDLE_BYTES_PER_CONNECTION // 1024} kB RSS per idle connection",
          [(f"{row['idle']} idle", f"{row['rss_per_connection_bytes'] / 1024:.1f} kB",
            row["rss_per_connection_bytes"] <= IDLE_BYTES_PER_CONNECTION)
           for row in idle if row["stage"] == all_async and row.get("rss_per_connection_bytes")])
    check("all-async serves 10,000 concurrent clients with 0 errors",
          [(f"C={c}", f"{cell.get('failed')} failed, {cell.get('stalled')} stalled, "
                      f"{len(cell.get('server_errors', []))} server errors",
            cell.get("failed") == 0 and cell.get("stalled") == 0
            and not cell.get("server_errors"))
           for (stage, c), cell in by.items() if stage == all_async and c >= 10_000])
    return checks


def targets_text(checks: list[dict[str, Any]]) -> str:
    marks = {True: "met", False: "MISSED", None: "not measured"}
    return "\n".join(f"- {check['target']}: **{marks[check['met']]}** ({check['detail']})"
                     for check in checks)


def write_json(path: str, document: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(document, indent=2) + "\n")


def plot(path: str, cells: list[dict[str, Any]]) -> None:
    """Rounds/s and server CPU per round against clients, one line per stage."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'guessgame[bench]'") from None
    matplotlib.use("Agg")  # a file, never a window
    import matplotlib.pyplot as plt

    stages = list(dict.fromkeys(cell["stage"] for cell in cells))
    figure, (rate, cost) = plt.subplots(1, 2, figsize=(14, 6))
    colours = plt.get_cmap("tab20")
    for index, stage in enumerate(stages):
        mine = sorted((c for c in cells if c["stage"] == stage and c.get("rounds")),
                      key=lambda c: c["clients"])
        if not mine:
            continue
        baseline = stage.startswith("baseline")
        style = {"color": "black", "linewidth": 2.5,
                 "linestyle": {THREADS: "--", STREAMS: ":"}.get(stage, "-.")
                 } if baseline else {"color": colours(index % 20)}
        clients = [c["clients"] for c in mine]
        rate.plot(clients, [c["rounds_per_s"] for c in mine], marker="o", label=stage, **style)
        cost.plot(clients, [c["server_cpu_us_per_round"] for c in mine], marker="o",
                  label=stage, **style)
    for axes, title, unit in ((rate, "throughput", "rounds/s"),
                              (cost, "server CPU per round", "µs")):
        axes.set_xscale("log")
        axes.set_xlabel("concurrent clients")
        axes.set_ylabel(unit)
        axes.set_title(title)
        axes.grid(True, which="both", alpha=0.3)
    cost.set_yscale("log")
    handles, labels = rate.get_legend_handles_labels()
    figure.legend(handles, labels, loc="center right", fontsize="small")
    figure.tight_layout(rect=(0, 0, 0.8, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)
