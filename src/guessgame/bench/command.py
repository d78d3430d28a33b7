"""`guessgame bench`: its arguments, and the loop over stages and client counts."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from guessgame import config
from guessgame.bench import crossings, loadgen, reload_cell, report, runner, unread_stdout
from guessgame.bench.runner import Load, Target
from guessgame.config import ConfigError, Layers, Settings

SLOW_SUFFIX = " (slow stdout)"

DEFAULT_CLIENTS = (1, 10, 100, 1000)
BURST_FROM = 1000
"""From this many clients on, they arrive in a burst unless --arrival says otherwise."""
SETTLE = 15.0
"""Seconds after the window before counting the threads a server keeps: longer than the
default worker_idle_timeout (10 s), so every worker the burst started has retired."""
SLOW_STDOUT_CLIENTS = 100
PASSES = 3
"""Each cell is the median of this many windows, taken in passes over every server in
turn, so that drift in the machine's load affects every server alike."""
MIN_IDLE_TIMEOUT = 120.0
"""A bench run must not have a loaded server close a slow client as idle."""


def add_parser(commands: Any) -> None:
    bench = commands.add_parser(
        "bench", help="measure every stage against two minimal servers",
        description="Start `guessgame serve` at each stage and each client count in its own "
                    "process, drive it from a load generator process, and report rounds/s, "
                    "latency, server CPU per round, peak RSS and threads, as ratios to a "
                    "thread-per-connection server and an asyncio-streams server.")
    pick = bench.add_mutually_exclusive_group()
    pick.add_argument("--stage", dest="bench_stages", nargs="+", action="extend",
                      metavar="NAME", help="measure these named stages (default: every stage "
                                           "in the config)")
    pick.add_argument("--async", dest="bench_layers", nargs="+", action="extend",
                      metavar="LAYERS", help="measure these layer combinations, each like "
                                             "`connection,session`, `none` or `all`")
    pick.add_argument("--all-combinations", action="store_true",
                      help="measure all 16 combinations of async layers")
    bench.add_argument("--config", metavar="PATH", help="config file to take the stages and "
                                                        "limits from")
    bench.add_argument("--clients", type=client_counts, metavar="N,N,...",
                       help="concurrent client counts (default: 1,10,100,1000, or none "
                            "with --idle)")
    bench.add_argument("--duration", type=float, default=5.0, metavar="S",
                       help="seconds in each measured window (default: 5)")
    bench.add_argument("--warmup", type=float, default=1.0, metavar="S",
                       help="seconds of load before each window (default: 1)")
    bench.add_argument("--arrival", choices=("start-line", "burst"),
                       help="how clients arrive: `start-line` (each plays one round, then "
                            "all start together) or `burst` (all connect and play at once); "
                            f"default: burst from {BURST_FROM} clients on, else start-line")
    bench.add_argument("--pattern", dest="patterns", nargs="+", action="extend",
                       choices=loadgen.PATTERNS, metavar="PATTERN",
                       help="how the clients talk: `book` (REPORT and the next NUMBER as two "
                            "writes, one long game), `batched` (one write per round, a new "
                            "game every 100 rounds), `short` (5-10 rounds, CORRECT, a new "
                            "connection); default: every pattern")
    bench.add_argument("--passes", type=positive, default=PASSES, metavar="N",
                       help="measure every cell N times, each pass over every server in "
                            f"turn, and report medians (default: {PASSES})")
    bench.add_argument("--windows", type=positive, default=1, metavar="N",
                       help="measured windows per pass, one after another on the same "
                            "server (default: 1)")
    bench.add_argument("--settle", type=float, default=SETTLE, metavar="S",
                       help="seconds after each window before counting the threads the "
                            f"server kept (default: {SETTLE:g}; 0 skips it)")
    bench.add_argument("--slow-stdout", type=int, default=SLOW_STDOUT_CLIENTS, metavar="N",
                       help="also measure each stage with N clients while the server prints "
                            "its transcript to a pipe read at 40 kB/s (default: "
                            f"{SLOW_STDOUT_CLIENTS}; 0 skips it)")
    bench.add_argument("--unread-stdout", type=int, default=0, metavar="ROUNDS",
                       help="also measure each stage playing ROUNDS rounds (with the "
                            "--slow-stdout client count, or 100) while nobody reads the "
                            "server's transcript, then serving a newcomer and stopping "
                            "(default: 0, skipped)")
    bench.add_argument("--idle", type=int, metavar="N",
                       help="also measure RSS per connection with N idle connections")
    bench.add_argument("--uvloop", action="store_true",
                       help="also measure each stage with an async server-side layer on "
                            "uvloop's event loop (needs uvloop)")
    bench.add_argument("--store-cost", action="store_true",
                       help="also measure each stage with `--results none`, in the same "
                            "passes, and report its CPU per round with the results store "
                            "on as a multiple of that (`x no store`)")
    bench.add_argument("--no-baselines", dest="baselines", action="store_false",
                       help="skip the two minimal servers")
    bench.add_argument("--reload", action="store_true",
                       help="instead, measure one server reloaded (SIGHUP) through every "
                            "named stage and back while clients play, reconnecting after "
                            "each game (--clients: how many, default 100)")
    bench.add_argument("--reload-every", type=float, default=1.0, metavar="S",
                       help="seconds between reloads with --reload (default: 1)")
    bench.add_argument("--out", metavar="PATH", help="write the results as JSON")
    bench.add_argument("--plot", metavar="PATH", help="write a PNG of rounds/s and CPU per "
                                                      "round against clients (needs matplotlib)")
    bench.add_argument("--crossings", action="store_true",
                       help="only measure what one bridge crossing costs, without and with "
                            "the wait graph's bookkeeping and with tracing on")
    bench.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    # The common single-valued options, absent here, so that settings load as usual.
    bench.set_defaults(stage=None, layers=None, trace=None, debug=None)


def positive(text: str) -> int:
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return count


def client_counts(text: str) -> list[int]:
    counts = [int(word) for word in text.split(",") if word.strip()]
    if any(count < 1 for count in counts):
        raise argparse.ArgumentTypeError("client counts must be positive")
    return counts


def targets(args: argparse.Namespace, settings: Settings) -> list[Target]:
    if args.all_combinations:
        picked = Layers.every()
    elif args.bench_layers:
        picked = [Layers.parse(text) for text in args.bench_layers]
    elif args.bench_stages:
        unknown = [name for name in args.bench_stages if name not in settings.stages]
        if unknown:
            raise ConfigError(f"--stage: unknown stage {unknown[0]!r}; stages in "
                              f"{settings.source} are {', '.join(settings.stages)}")
        picked = [settings.stages[name] for name in args.bench_stages]
    else:
        picked = list(settings.stages.values())
    found = [Target(stage_name(layers, settings), layers) for layers in dict.fromkeys(picked)]
    if args.uvloop:
        found += [Target(f"{target.name}+uvloop", target.layers, uvloop=True) for target in found
                  if target.layers and (target.layers.connection or target.layers.session
                                        or target.layers.server)]
    if args.store_cost:  # each stage beside its twin without the store, in the same pass
        found = [twin for target in found for twin in (
            target, dataclasses.replace(target, name=target.name + report.NO_STORE_SUFFIX,
                                        results=False))]
    return (runner.baselines(settings.switch_interval) if args.baselines else []) + found


def pass_order(targets: list[Target], turn: int) -> list[Target]:
    """The servers of pass `turn`: in order, then reversed, by turns. A server measured
    just after another inherits its leftovers (sockets closing, caches, a CPU still
    busy), so each of two twins goes first in half the passes."""
    return targets if turn % 2 == 0 else targets[::-1]


def stage_name(layers: Layers, settings: Settings) -> str:
    named = [name for name, value in settings.stages.items() if value == layers]
    # Not Layers.label: `async-server` is also the name of a stage with more layers.
    return named[0] if named else "async=" + ("+".join(layers.names) or "none")


def bench_config(settings: Settings, connections: int, directory: str) -> str:
    """A copy of the config's stages with room for every client the bench will open."""
    # 0 keeps the timeouts off, as in the config; a short one is raised.
    idle_timeout = max(settings.idle_timeout, MIN_IDLE_TIMEOUT) if settings.idle_timeout else 0
    lines = [
        "[guessgame]",
        f"max_line_bytes = {settings.max_line_bytes}",
        f"idle_timeout = {idle_timeout}",
        f"max_connections = {max(settings.max_connections, connections + 16)}",
        "uvloop = {uvloop}",
        f'results = "{Path(directory) / "results.sqlite3"}"',  # the store on, in the temp dir
        "", "[stages]",
    ]
    lines += [f"{name!r} = {list(layers.names)!r}".replace("'", '"')
              for name, layers in settings.stages.items()]
    text = "\n".join(lines) + "\n"
    path = Path(directory) / "bench.toml"
    path.write_text(text.format(uvloop=str(settings.uvloop).lower()))
    Path(runner.uvloop_config(str(path))).write_text(text.format(uvloop="true"))
    config.load(str(path))  # fail here, not in every server process
    return str(path)


def run_reload(args: argparse.Namespace, settings: Settings) -> int:
    clients = args.clients[0] if args.clients else 100
    with tempfile.TemporaryDirectory(prefix="guessgame-bench-") as directory:
        path = bench_config(settings, clients, directory)
        if not args.quiet:
            stages = " -> ".join(reload_cell.stage_path(list(settings.stages)))
            print(f"bench: reload through {stages}, every {args.reload_every:g} s, "
                  f"{clients} clients", file=sys.stderr, flush=True)
        cell = reload_cell.measure_reload(path, list(settings.stages), clients,
                                          args.reload_every)
    print(reload_cell.summary(cell))
    if args.out:
        report.write_json(args.out, {"machine": report.machine(), "reload": cell})
    return 0


def run_bench(args: argparse.Namespace, settings: Settings) -> int:
    with stopped_by_sigterm():
        return run_chosen(args, settings)


@contextlib.contextmanager
def stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM stops the bench as Ctrl-C does, so that it stops the server of the cell it
    is in on its way out. Its default action would leave that server running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_chosen(args: argparse.Namespace, settings: Settings) -> int:
    if args.reload:
        return run_reload(args, settings)
    if args.crossings:
        return crossings.run(args.quiet, args.out)
    try:
        chosen = targets(args, settings)
    except ConfigError as error:
        print(f"guessgame: {error}", file=sys.stderr)
        return 2
    clients = args.clients if args.clients is not None else (
        [] if args.idle else list(DEFAULT_CLIENTS))

    def progress(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    cells: list[dict[str, Any]] = []
    idle: list[dict[str, Any]] = []
    servers = [target for target in chosen if not target.is_baseline]
    slow = servers if args.slow_stdout else []
    unread = servers if args.unread_stdout else []
    unread_clients = args.slow_stdout or SLOW_STDOUT_CLIENTS
    unread_cells: list[dict[str, Any]] = []
    patterns = list(dict.fromkeys(args.patterns or loadgen.PATTERNS))
    total = (len(clients) * len(patterns) * args.passes * len(chosen) + len(slow) + len(unread)
             + (len(chosen) if args.idle else 0))
    measured = 0

    def done() -> int:
        nonlocal measured
        measured += 1
        return measured - 1

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="guessgame-bench-") as directory:
        path = bench_config(settings, max([*clients, args.idle or 0, unread_clients]),
                            directory)
        progress(f"bench: {len(chosen)} servers x {len(clients)} client counts, "
                 f"{args.warmup:g} s warm-up + {args.duration:g} s window each")
        # Client counts and patterns outside, passes, then servers inside: the cells
        # compared with each other run close together in time and alternate, so drift
        # in the machine's load affects them alike.
        for count in clients:
            arrival = args.arrival or ("burst" if count >= BURST_FROM else "start-line")
            for pattern in patterns:
                load = Load(count, args.warmup, args.duration, arrival, pattern, args.windows)
                passes: dict[str, list[dict[str, Any]]] = {t.name: [] for t in chosen}
                for turn in range(args.passes):
                    for target in pass_order(chosen, turn):
                        progress(f"[{done() + 1}/{total}] {target.name} C={count} {pattern} "
                                 f"{arrival}, pass {turn + 1}/{args.passes} ...")
                        cell = _guarded(target, count, functools.partial(
                            runner.measure, target, load, path, args.settle))
                        passes[target.name].append(cell)
                        progress("    " + summary(cell))
                cells += [report.merge_passes(name, pattern, runs)
                          for name, runs in passes.items()]
        for target in slow:
            count = args.slow_stdout
            arrival = args.arrival or ("burst" if count >= BURST_FROM else "start-line")
            progress(f"[{done() + 1}/{total}] {target.name} C={count} "
                     f"{arrival}, slow stdout ...")
            load = Load(count, args.warmup, args.duration, arrival, patterns[0], args.windows)
            cell = _guarded(target, count, functools.partial(
                runner.measure, target, load, path, 0.0, True))
            cell["stage"] += SLOW_SUFFIX
            cells.append(cell)
            progress("    " + summary(cell))
        for target in unread:
            progress(f"[{done() + 1}/{total}] "
                     f"{target.name} C={unread_clients}, {args.unread_stdout:,} rounds, "
                     "stdout never read ...")
            cell = _guarded(target, unread_clients, functools.partial(
                unread_stdout.measure, target, unread_clients, args.unread_stdout, args.duration,
                path))
            unread_cells.append(cell)
            progress(f"    {unread_stdout.check([cell], args.unread_stdout)['detail']}")
        for target in chosen if args.idle else []:
            progress(f"[{done() + 1}/{total}] {target.name} "
                     f"{args.idle} idle connections ...")
            row = _guarded(target, args.idle, functools.partial(
                runner.measure_idle, target, args.idle, path))
            idle.append(row)
            per = row.get("rss_per_connection_bytes")
            progress(f"    {per / 1024:.1f} kB per connection" if per else
                     f"    failed: {row.get('failures')}")
    report.add_ratios(cells, runner.threads_at(settings.switch_interval))
    report.add_store_cost(cells)
    unread_stdout.add_usual_rate(unread_cells, cells)
    # Not the slow-stdout or no-store cells: their stage names are not stages.
    layers_of = {t.name: t.layers for t in chosen
                 if t.layers is not None and not t.uvloop and t.results}
    every = Layers(True, True, True, True)
    all_async = next((n for n, got in layers_of.items() if got == every), "all-async")
    all_threads = next((n for n, got in layers_of.items() if got == Layers()), "all-threads")
    mixed = {name for name in layers_of if name not in (all_async, all_threads)}
    checks = report.check_targets(cells, idle, all_threads, all_async, mixed,
                                  runner.threads_at(settings.switch_interval))
    if unread_cells:
        checks.append(unread_stdout.check(unread_cells, args.unread_stdout))
    document = {"machine": report.machine(), "warmup_s": args.warmup,
                "duration_s": args.duration, "passes": args.passes, "windows": args.windows,
                "patterns": patterns, "wall_s": round(time.monotonic() - started, 1),
                "cells": cells, "idle": idle, "unread_stdout": unread_cells, "targets": checks,
                "stages": {name: list(layers.names) for name, layers in layers_of.items()}}
    if cells:
        print(report.table([cell for cell in cells if not cell.get("slow_stdout")]))
    if slow:
        print()
        print(report.slow_stdout_table([cell for cell in cells if cell.get("slow_stdout")]))
    if unread_cells:
        print()
        print(unread_stdout.table(unread_cells))
    if idle:
        print()
        print(report.idle_table(idle))
    print()
    print(report.targets_text(checks))
    if args.out:
        report.write_json(args.out, document)
    if args.plot and cells:
        report.plot(args.plot, cells)
    return 0


def _guarded(target: Target, count: int,
             measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One cell's result; a server that cannot start is a result too, not the end."""
    try:
        return measure()
    except RuntimeError as error:
        return {"stage": target.name, "clients": count, "failed": count,
                "failures": [str(error)]}


def summary(cell: dict[str, Any]) -> str:
    if cell.get("rounds") is None:
        return f"failed: {cell.get('failures')}"
    cpu = cell.get("server_cpu_us_per_round")
    text = (f"{cell.get('pattern', '-')}: {cell['rounds_per_s']:,.0f} rounds/s, "
            f"p50 {cell['p50_ms']:.2f} ms, "
            f"p99 {cell['p99_ms']:.2f} ms, {cpu or 0:.1f} µs CPU/round, "
            f"{(cell.get('peak_rss_bytes') or 0) / 2**20:.0f} MB, "
            f"{cell.get('peak_threads')} threads, loadgen {cell['loadgen_cpu_share']:.0%}, "
            f"first reply p50/p99/max {cell.get('first_reply_p50_ms', 0):.0f}/"
            f"{cell.get('first_reply_p99_ms', 0):.0f}/{cell.get('first_reply_max_ms', 0):.0f} ms, "
            f"{cell.get('threads_after', '-')} threads after")
    if cell.get("slow_stdout"):
        text += f", {cell.get('reports_dropped')} reports dropped, stop {cell['stop_s']:.1f} s"
    if cell.get("failed") or cell.get("stalled"):
        text += f", {cell['failed']} failed, {cell['stalled']} stalled {cell.get('failures')}"
    return text
