"""The bench's results as a table, a JSON document and a plot, with the targets checked."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from guessgame import workers

THREADS = "baseline-threads"
STREAMS = "baseline-streams"
MIXED = "baseline-mixed"
"""Threaded sessions over asyncio connections, lines crossing in janus queues, no layers."""

# The targets, as ratios of server CPU per round, under every client pattern.
ASYNC_VS_STREAMS = 1.25
THREADS_VS_THREADS = 1.25
"""all-threads against the thread-per-connection baseline at the same switch interval."""
BETWEEN_VS_MIXED = 1.0
"""Every combination between the ends, against the plain program of the middle's shape."""
STORE_COST = 1.10
"""A stage's CPU per round with the results store on, against the same stage with
`--results none`, at 100 clients."""
NO_STORE_SUFFIX = " (no store)"
"""A stage measured with `serve --results none`, beside the same stage with the store on."""
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


def merge_passes(stage: str, pattern: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell from its passes: the medians over every window of every pass; counts of
    failures summed; peaks and worst cases the worst of any pass."""
    cell = dict(runs[-1])
    cell.update(stage=stage, pattern=pattern, passes=len(runs))
    windows = [window for run in runs for window in run.get("windows", [])]
    if not windows or any(run.get("rounds") is None for run in runs):
        cell["rounds"] = None  # a pass that failed outright fails the cell
        cell["failed"] = sum(run.get("failed", 0) for run in runs)
        cell["failures"] = sorted({f for run in runs for f in run.get("failures", [])})[:5]
        return cell

    def middle(key: str, among: list[dict[str, Any]]) -> Any:
        values = [item[key] for item in among if item.get(key) is not None]
        return statistics.median(values) if values else None

    def worst(key: str) -> Any:
        values = [run[key] for run in runs if run.get(key) is not None]
        return max(values) if values else None

    cell.update(
        windows=windows, rounds=sum(run["rounds"] for run in runs),
        rounds_per_s=middle("rounds_per_s", windows),
        server_cpu_us_per_round=middle("server_cpu_us_per_round", windows),
        loadgen_cpu_share=middle("loadgen_cpu_share", windows),
        p50_ms=middle("p50_ms", runs), p99_ms=middle("p99_ms", runs),
        first_reply_p50_ms=middle("first_reply_p50_ms", runs),
        **{key: worst(key) for key in ("first_reply_p99_ms", "first_reply_max_ms",
                                       "peak_rss_bytes", "peak_threads", "threads_after",
                                       "stop_s")},
        **{key: sum(run.get(key, 0) for run in runs)
           for key in ("failed", "stalled", "unanswered")},
        failures=sorted({f for run in runs for f in run.get("failures", [])})[:5])
    return cell


def add_ratios(cells: list[dict[str, Any]], threads_same: str | None = None) -> None:
    """Each cell's CPU per round as a multiple of each baseline's at the same clients and
    pattern; `x_threads_same` against the thread baseline named `threads_same` (the one at
    the switch interval the threaded stages use)."""
    cost = {(cell["stage"], cell.get("pattern"), cell["clients"]):
            cell.get("server_cpu_us_per_round") for cell in cells}
    pairs = [(THREADS, "x_threads"), (STREAMS, "x_streams"), (MIXED, "x_mixed")]
    if threads_same:
        pairs.append((threads_same, "x_threads_same"))
    for cell in cells:
        for baseline, key in pairs:
            base = cost.get((baseline, cell.get("pattern"), cell["clients"]))
            mine = cell.get("server_cpu_us_per_round")
            cell[key] = mine / base if mine and base else None


def add_store_cost(cells: list[dict[str, Any]]) -> None:
    """`x_no_store` on each store-on cell measured beside its `--results none` twin: its CPU
    per round as a multiple of the twin's at the same clients and pattern."""
    cost = {(cell["stage"].removesuffix(NO_STORE_SUFFIX), cell.get("pattern"), cell["clients"]):
            cell.get("server_cpu_us_per_round")
            for cell in cells if cell.get("results") == "none"}
    for cell in cells:
        key = (cell["stage"], cell.get("pattern"), cell["clients"])
        if cell.get("results") == "on" and key in cost:
            mine, base = cell.get("server_cpu_us_per_round"), cost[key]
            cell["x_no_store"] = mine / base if mine and base else None


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def table(cells: Iterable[dict[str, Any]]) -> str:
    """A markdown table, one row per stage, client count and pattern; each window's CPU
    per round beside the median."""
    head = ("stage", "clients", "pattern", "arrival", "rounds/s", "p50 ms", "p99 ms",
            "first reply p50 ms", "first reply p99 ms", "first reply max ms", "CPU µs/round",
            "windows", "x threads", "x threads same SI", "x streams", "x mixed", "results",
            "x no store", "peak RSS MB",
            "peak threads", "threads after", "failed", "stalled", "loadgen CPU")
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in cells:
        rss = cell.get("peak_rss_bytes")
        share = cell.get("loadgen_cpu_share")
        windows = cell.get("windows") or []
        row = (cell["stage"], _num(cell["clients"]), cell.get("pattern", "-"),
               cell.get("arrival", "-"),
               _num(cell.get("rounds_per_s"), 0), _num(cell.get("p50_ms"), 2),
               _num(cell.get("p99_ms"), 2), _num(cell.get("first_reply_p50_ms"), 0),
               _num(cell.get("first_reply_p99_ms"), 0), _num(cell.get("first_reply_max_ms"), 0),
               _num(cell.get("server_cpu_us_per_round")),
               " ".join(_num(w.get("server_cpu_us_per_round")) for w in windows) or "-",
               _num(cell.get("x_threads"), 2), _num(cell.get("x_threads_same"), 2),
               _num(cell.get("x_streams"), 2), _num(cell.get("x_mixed"), 2),
               cell.get("results", "-"), _num(cell.get("x_no_store"), 2),
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
                  all_threads: str, all_async: str, mixed: set[str],
                  threads_same: str | None = None) -> list[dict[str, Any]]:
    """Each target the results can speak to: met, missed, or not measured. The ratio
    targets hold under every client pattern; all-threads is held to the thread baseline
    named `threads_same` (at its switch interval) when that was measured."""
    # Every cell speaks, a stage measured in two runs (two files) in both.
    by = [((cell["stage"], cell.get("pattern"), cell["clients"]), cell) for cell in cells]
    checks: list[dict[str, Any]] = []

    def check(name: str, values: list[tuple[str, Any, bool]]) -> None:
        if not values:
            checks.append({"target": name, "met": None, "detail": "not measured"})
            return
        missed = [f"{where}: {value}" for where, value, ok in values if not ok]
        checks.append({"target": name, "met": not missed,
                       "detail": "; ".join(missed) if missed else
                       "; ".join(f"{where}: {value}" for where, value, _ in values)})

    def where(key: tuple[str, Any, int]) -> str:
        stage, pattern, clients = key
        return f"{stage} {pattern} C={clients}" if pattern else f"{stage} C={clients}"

    stages = {cell["stage"] for cell in cells if not cell["stage"].startswith("baseline")
              and not cell.get("slow_stdout")}
    at_1000 = [(key, cell) for key, cell in by if key[0] in stages and key[2] == 1000]
    check("0 failed or stalled clients at 1000 clients, every stage",
          [(where(key), f"{cell.get('failed')} failed, {cell.get('stalled')} stalled",
            cell.get("failed") == 0 and cell.get("stalled") == 0) for key, cell in at_1000])
    check(f"every client's first reply within {FIRST_REPLY_LIMIT_MS / 1000:g} s at 1000 "
          "burst arrivals, every stage",
          [(where(key), f"max {cell.get('first_reply_max_ms', math.nan):,.0f} ms, "
                        f"{cell.get('failed')} failed",
            cell.get("failed") == 0
            and cell.get("first_reply_max_ms", math.inf) < FIRST_REPLY_LIMIT_MS)
           # A cell whose server never started has no arrival: it counts as a miss.
           for key, cell in at_1000 if cell.get("arrival", "burst") == "burst"])
    # Idle workers stay for worker_idle_timeout (10 s by default): only a count taken
    # later than that can speak.
    check("threads back to a fresh start's level once idle workers retire, every stage",
          [(where(key), f"{cell['threads_after']} threads, "
                        f"{cell['threads_before']} at the start",
            cell["threads_after"] <= cell["threads_before"])
           for key, cell in by
           if key[0] in stages and cell.get("threads_after") is not None
           and cell.get("threads_before") is not None
           and cell.get("settle_s", 0) > workers.IDLE_TIMEOUT])

    def ratio(name: str, names: set[str], key: str, limit: float) -> None:
        check(name, [(where(found), f"{cell[key]:.2f}x", cell[key] <= limit)
                     for found, cell in by
                     if found[0] in names and found[2] in (100, 1000) and cell.get(key)])

    ratio(f"all-async <= {ASYNC_VS_STREAMS}x streams baseline CPU/round at C=100, 1000, "
          "every pattern", {all_async}, "x_streams", ASYNC_VS_STREAMS)
    same = threads_same is not None and any(cell["stage"] == threads_same for cell in cells)
    ratio(f"all-threads <= {THREADS_VS_THREADS}x thread baseline CPU/round"
          + (f" ({threads_same})" if same else "") + " at C=100, 1000, every pattern",
          {all_threads}, "x_threads_same" if same else "x_threads", THREADS_VS_THREADS)
    ratio(f"every other combination <= {BETWEEN_VS_MIXED}x {MIXED} CPU/round at "
          "C=100, 1000, every pattern", mixed, "x_mixed", BETWEEN_VS_MIXED)
    check(f"the results store costs at most {STORE_COST - 1:.0%} more server CPU per round "
          "at 100 clients, every stage",
          [(where(key), f"{cell['x_no_store']:.2f}x", cell["x_no_store"] <= STORE_COST)
           for key, cell in by if key[2] == 100 and cell.get("x_no_store")])
    check(f"all-async <= {IDLE_BYTES_PER_CONNECTION // 1024} kB RSS per idle connection",
          [(f"{row['idle']} idle", f"{row['rss_per_connection_bytes'] / 1024:.1f} kB",
            row["rss_per_connection_bytes"] <= IDLE_BYTES_PER_CONNECTION)
           for row in idle if row["stage"] == all_async and row.get("rss_per_connection_bytes")])
    check("all-async serves 10,000 concurrent clients with 0 errors",
          [(f"C={c}", f"{cell.get('failed')} failed, {cell.get('stalled')} stalled, "
                      f"{len(cell.get('server_errors', []))} server errors",
            cell.get("failed") == 0 and cell.get("stalled") == 0
            and not cell.get("server_errors"))
           for (stage, _, c), cell in by if stage == all_async and c >= 10_000])
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
