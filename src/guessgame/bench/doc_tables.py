"""The tables of docs/performance.md, generated from the bench JSON committed beside it.

A region of the page between

    <!-- bench-table: KIND FILE [FILE ...] -->
    <!-- /bench-table -->

is replaced by the table KIND made from the named JSON files (paths relative to the
page, as `guessgame bench --out` writes them). KIND is one of:

- `cells`: one row per stage and client count (slow-stdout cells left out). A `clients`
  column appears when the counts differ, a `pattern` column (the load generator's client
  pattern) when the patterns do, an `x mixed` column when any cell was measured
  beside baseline-mixed, and `threads after` when any cell counted them (`--settle`);
  `x threads` and `x streams` when a cell has them, `x threads same SI` instead of
  `x threads` when the run has the thread baseline at the threaded stages' switch
  interval;
- `patterns`: one row per server, one column per client pattern and count: CPU µs per
  round and, for a stage, its multiple of the yardstick its target names (all-async:
  baseline-streams; all-threads: the thread baseline at its switch interval; the
  others: baseline-mixed);
- `unread-stdout`: the cells whose transcript went to a pipe nobody read;
- `store`: each stage measured with the results store on and with `--results none` in
  the same passes (`bench --store-cost`): per client pattern, the ratio of their CPU per
  round and the µs between;
- `targets`: every target the cells of all the files can speak to, checked by
  `report.check_targets`, with the misses named; `unread-rounds=N` among the files
  checks the unread-stdout cells against N rounds (`bench --unread-stdout N`).

`named` among the files keeps the cells of the stages the config names and of the
baselines (a run of every combination, shown short). `python -m
guessgame.bench.doc_tables` rewrites the page; `--check` only says whether it
is current (exit 1 if not). tests/test_docs.py fails when the page and the JSON differ.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from guessgame.bench import report, unread_stdout

PAGE = Path("docs/performance.md")
REGION = re.compile(r"(<!-- bench-table: ([^>]*?) -->\n)(.*?)(<!-- /bench-table -->)", re.S)
ALL_LAYERS = {"connection", "session", "client", "server"}

Cell = dict[str, Any]
_num = report._num  # numbers formatted as in the bench's own tables


def _row(values: Iterable[str]) -> str:
    return "| " + " | ".join(values) + " |"


def _markdown(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    return "\n".join([_row(head), "|" + "---|" * len(head), *map(_row, rows)])


def _share(cells: list[Cell], key: str) -> bool:
    return any(cell.get(key) is not None for cell in cells)


def cells_table(cells: list[Cell]) -> str:
    """Throughput, cost against the baselines, admission and threads, per stage and count."""
    cells = [cell for cell in cells if not cell.get("slow_stdout")]
    columns: list[tuple[str, Callable[[Cell], str]]] = [("stage", lambda c: c["stage"])]
    if len({cell.get("pattern") for cell in cells}) > 1:
        columns.append(("pattern", lambda c: str(c.get("pattern") or "-")))
    if len({cell["clients"] for cell in cells}) > 1:
        columns.append(("clients", lambda c: _num(c["clients"])))
    columns += [
        ("rounds/s", lambda c: _num(c.get("rounds_per_s"), 0)),
        ("first reply max ms", lambda c: _num(c.get("first_reply_max_ms"), 0)),
        ("CPU µs/round", lambda c: _num(c.get("server_cpu_us_per_round"))),
    ]
    # Against the thread baseline at the threaded stages' switch interval, if measured.
    if _share(cells, "x_threads_same"):
        columns.append(("x threads same SI", lambda c: _num(c.get("x_threads_same"), 2)))
    elif _share(cells, "x_threads"):
        columns.append(("x threads", lambda c: _num(c.get("x_threads"), 2)))
    if _share(cells, "x_streams"):
        columns.append(("x streams", lambda c: _num(c.get("x_streams"), 2)))
    if _share(cells, "x_mixed"):
        columns.append(("x mixed", lambda c: _num(c.get("x_mixed"), 2)))
    if _share(cells, "threads_after"):
        columns.append(("threads after", lambda c: _num(c.get("threads_after"))))
    columns.append(("failed", lambda c: _num(c.get("failed"))))
    return _markdown([name for name, _ in columns],
                     [[value(cell) for _, value in columns] for cell in cells])


def patterns_table(cells: list[Cell], stages: dict[str, set[str]]) -> str:
    """CPU per round per server, pattern and count, each stage beside its yardstick."""
    cells = [cell for cell in cells if not cell.get("slow_stdout")]
    ratio = {name: "x_streams" if layers == ALL_LAYERS
             else "x_threads_same" if not layers else "x_mixed"
             for name, layers in stages.items()}
    columns = list(dict.fromkeys((str(cell.get("pattern") or "-"), cell["clients"])
                                 for cell in cells))
    rows: dict[str, dict[tuple[str, int], str]] = {}
    for cell in cells:
        us = _num(cell.get("server_cpu_us_per_round"))
        key = ratio.get(cell["stage"])
        if key is not None and cell.get(key) is not None:
            us += f" ({_num(cell[key], 2)}x)"
        rows.setdefault(cell["stage"], {})[
            (str(cell.get("pattern") or "-"), cell["clients"])] = us
    head = ["server", *(f"{pattern} {_num(clients)}" for pattern, clients in columns)]
    return _markdown(head, [[stage, *(found.get(column, "-") for column in columns)]
                            for stage, found in rows.items()])


def unread_stdout_table(cells: list[Cell]) -> str:
    """The rounds played with stdout never read, RSS at both ends, the newcomer and the stop."""
    head = ("stage", "rounds", "RSS first MB", "RSS last MB", "newcomer rounds", "stop s",
            "exit")
    rows = [(cell["stage"], _num(cell.get("rounds")), _num(cell["rss_first_bytes"] / 2**20),
             _num(cell["rss_last_bytes"] / 2**20), _num(cell.get("newcomer_rounds")),
             _num(cell.get("stop_s"), 2), _num(cell.get("server_exit")))
            for cell in cells]
    return _markdown(head, rows)


def store_table(cells: list[Cell]) -> str:
    """Per stage (and count, when they differ), one column per client pattern: CPU per
    round with the results store on as a multiple of `--results none`, and the µs between."""
    off = {(cell["stage"].removesuffix(report.NO_STORE_SUFFIX), cell.get("pattern"),
            cell["clients"]): cell for cell in cells if cell.get("results") == "none"}
    pairs = [(cell, twin) for cell in cells if cell.get("results") == "on"
             and (twin := off.get((cell["stage"], cell.get("pattern"), cell["clients"])))]
    patterns = list(dict.fromkeys(str(cell.get("pattern") or "-") for cell, _ in pairs))
    counts = len({cell["clients"] for cell, _ in pairs}) > 1
    rows: dict[tuple[str, int], dict[str, str]] = {}
    for cell, twin in pairs:
        on, none = cell.get("server_cpu_us_per_round"), twin.get("server_cpu_us_per_round")
        rows.setdefault((cell["stage"], cell["clients"]), {})[
            str(cell.get("pattern") or "-")] = (
            f"{_num(cell.get('x_no_store'), 2)} ({on - none:+.1f} µs)" if on and none else "-")
    head = ["stage", *(["clients"] if counts else []), *(f"x no store, {p}" for p in patterns)]
    return _markdown(head, [[stage, *([_num(clients)] if counts else []),
                             *(found.get(p, "-") for p in patterns)]
                            for (stage, clients), found in rows.items()])


def targets_table(documents: list[dict[str, Any]], unread_rounds: int | None) -> str:
    """The targets the cells speak to, checked by the bench's own rules."""
    cells = [cell for document in documents for cell in document["cells"]]
    idle = [row for document in documents for row in document.get("idle", [])]
    stages: dict[str, set[str]] = {}
    for document in documents:
        stages.update({name: set(layers) for name, layers in document["stages"].items()})
    all_threads = next((name for name, layers in stages.items() if not layers), "all-threads")
    all_async = next((name for name, layers in stages.items() if layers == ALL_LAYERS),
                     "all-async")
    mixed = set(stages) - {all_threads, all_async}
    # The thread baseline at the threaded stages' switch interval, where a run has it.
    same = next((cell["stage"] for cell in cells
                 if cell["stage"].startswith(report.THREADS + "-")), None)
    checks = report.check_targets(cells, idle, all_threads, all_async, mixed, same)
    unread = [cell for document in documents for cell in document.get("unread_stdout", [])]
    if unread and unread_rounds is not None:
        checks.append(unread_stdout.check(unread, unread_rounds))
    marks = {True: "met", False: "**missed**", None: "not measured"}
    return _markdown(("target", "result", "misses"),
                     [(check["target"], marks[check["met"]],
                       check["detail"] if check["met"] is False else "")
                      for check in checks])


def _named_only(document: dict[str, Any]) -> dict[str, Any]:
    """The document with only the cells of the named stages and of the baselines."""
    def kept(cell: Cell) -> bool:
        # A combination the config does not name is shown as `async=` plus its layers.
        return not cell["stage"].startswith("async=")
    return {**document, "cells": [cell for cell in document["cells"] if kept(cell)],
            "unread_stdout": [cell for cell in document.get("unread_stdout", [])
                              if kept(cell)]}


def table(spec: str, directory: Path) -> str:
    """The table a marker asks for: `KIND FILE [FILE ...]`, files relative to `directory`."""
    kind, *words = spec.split()
    options = dict(word.split("=", 1) for word in words if "=" in word)
    named = "named" in words
    names = [word for word in words if "=" not in word and word != "named"]
    if not names:
        raise ValueError(f"bench-table '{spec}' names no JSON file")
    documents = [json.loads((directory / name).read_text(encoding="utf-8")) for name in names]
    if named:
        documents = [_named_only(document) for document in documents]
    if kind == "cells":
        return cells_table([cell for document in documents for cell in document["cells"]])
    if kind == "patterns":
        stages = {name: set(layers) for document in documents
                  for name, layers in document["stages"].items()}
        return patterns_table([cell for document in documents for cell in document["cells"]],
                              stages)
    if kind == "unread-stdout":
        return unread_stdout_table([cell for document in documents
                                    for cell in document.get("unread_stdout", [])])
    if kind == "store":
        return store_table([cell for document in documents for cell in document["cells"]])
    if kind == "targets":
        rounds = options.get("unread-rounds")
        return targets_table(documents, int(rounds) if rounds else None)
    raise ValueError(f"bench-table '{spec}': unknown kind '{kind}'; "
                     "kinds are cells, patterns, unread-stdout, store, targets")


def render(text: str, directory: Path) -> str:
    """The page with every bench-table region made afresh from the JSON."""
    return REGION.sub(lambda found: (found.group(1) + table(found.group(2), directory) + "\n"
                                     + found.group(4)), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m guessgame.bench.doc_tables",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("page", nargs="?", type=Path, default=PAGE,
                        help=f"the page to rewrite (default {PAGE})")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if the page's tables are not current")
    args = parser.parse_args(argv)
    try:
        text = args.page.read_text(encoding="utf-8")
        fresh = render(text, args.page.parent)
    except (OSError, ValueError, KeyError) as error:
        print(f"doc_tables: {args.page}: {error}", file=sys.stderr)
        return 2
    if args.check:
        if fresh != text:
            print(f"doc_tables: {args.page}: tables differ from the JSON; run "
                  "python -m guessgame.bench.doc_tables", file=sys.stderr)
            return 1
        return 0
    if fresh != text:
        args.page.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
