"""The timeline is valid Chrome trace-event JSON whose lanes match the stage."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import CONFIG
from guessgame import app
from guessgame import reports as reports_module
from guessgame.config import Layers, Settings
from guessgame.observe import trace
from guessgame.observe.timeline import Timeline, crossings
from guessgame.protocol import GameStarted
from guessgame.reports import Reports
from timing import UNIT


def demo_timeline(settings: Settings, path: Path) -> dict[str, Any]:
    picture = Timeline("guessgame demo")
    trace.add_sink(picture, flows=True)
    try:
        assert app.demo(settings, 1, io.StringIO()) == 0
    finally:
        trace.remove_sink(picture)
    picture.write(path)
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def check_structure(document: dict[str, Any]) -> dict[int, str]:
    """Every event is well formed; returns each lane's name by tid."""
    events = document["traceEvents"]
    assert isinstance(events, list) and events
    pids = {event["pid"] for event in events}
    assert len(pids) == 1
    lanes = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert len(set(lanes.values())) == len(lanes), "one lane per thread or task"
    instants = [e for e in events if e["ph"] == "X"]
    assert instants
    assert {e["ph"] for e in events} <= {"M", "X", "s", "f"}
    for event in instants:
        assert isinstance(event["ts"], (int, float)) and event["ts"] >= 0  # microseconds
        assert isinstance(event["dur"], (int, float)) and event["dur"] > 0
        assert event["tid"] in lanes
        assert isinstance(event["name"], str) and event["cat"] in {
            "connection", "session", "client", "server", "bridge"}
        assert lanes[event["tid"]] == Timeline.lane_of(trace.Record(
            0, event["args"]["thread"], event["args"]["task"], event["args"]["session"],
            event["cat"], event["name"]))
    assert [e["ts"] for e in instants] == sorted(e["ts"] for e in instants)
    return lanes


def test_timeline_lanes_match_the_stage(layers: Layers, settings: Settings,
                                        tmp_path: Path) -> None:
    document = demo_timeline(settings, tmp_path / "timeline.json")
    lanes = check_structure(document)
    instants = [e["args"] for e in document["traceEvents"] if e["ph"] == "X"]
    tasks = {e["task"]: e["thread"] for e in instants if e["task"] != "-"}
    threads = {e["thread"] for e in instants if e["task"] == "-"}

    # Task lanes appear exactly when some layer is async, all on the one loop's thread:
    # the main thread when the demo's top-level component (its client) is async.
    loop_thread = "MainThread" if layers.client else "event-loop"
    assert bool(tasks) == layers.any_async
    assert set(tasks.values()) <= {loop_thread}
    # Lanes of plain threads appear exactly when some layer is threaded, besides the
    # worker that async sessions reach the results store through.
    store = {name for name in threads if name.startswith("blocking-results")}
    plain = (threads - {loop_thread} if layers.any_async else threads) - store
    assert bool(plain) == (layers != Layers(True, True, True, True))
    if layers == Layers(True, True, True, True):
        assert threads - store <= {"MainThread"}
        assert all(name == "MainThread" or name.endswith(" [MainThread]") or name in store
                   for name in lanes.values())
    if layers == Layers():
        assert not any("[" in name for name in lanes.values())


def test_timeline_option_writes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "demo.json"
    subprocess.run([sys.executable, "-m", "guessgame", "demo", "--config", str(CONFIG),
                    "--stage", "async-session", "--timeline", str(path), "-q"],
                   capture_output=True, timeout=3 * UNIT, check=True)
    lanes = check_structure(json.loads(path.read_text()))
    assert "MainThread" in lanes.values()
    assert any(name.endswith("[event-loop]") for name in lanes.values())


def test_every_crossing_is_an_arrow_from_the_lane_that_sent_it_to_the_lane_that_took_it(
        layers: Layers, settings: Settings, tmp_path: Path) -> None:
    lines: list[trace.Record] = []
    trace.add_sink(lines.append)  # what --trace prints: one line per crossing
    try:
        document = demo_timeline(settings, tmp_path / "timeline.json")
    finally:
        trace.remove_sink(lines.append)
    events = document["traceEvents"]
    lanes = check_structure(document)
    starts = {e["id"]: e for e in events if e["ph"] == "s"}
    ends = {e["id"]: e for e in events if e["ph"] == "f"}
    crossings = [r for r in lines if r.layer == "bridge"]
    assert len(crossings) == len(starts) == len(ends), (len(crossings), len(starts), len(ends))
    # At all-async the one crossing left is the results store's.
    assert bool(crossings) == layers.any_async
    slices = {(e["tid"], e["ts"]) for e in events if e["ph"] == "X"}
    for flow, start in starts.items():
        end = ends[flow]
        assert end["bp"] == "e" and end["name"] == start["name"] and end["cat"] == "bridge"
        assert start["ts"] <= end["ts"]
        assert start["tid"] != end["tid"], "a crossing goes from one lane to another"
        # Each end sits on a slice of its lane, so that Perfetto binds the arrow to it.
        assert (start["tid"], start["ts"]) in slices and (end["tid"], end["ts"]) in slices
        # From a thread to a task's lane, or back: the lanes say which world each is.
        worlds = {"[" in lanes[start["tid"]], "[" in lanes[end["tid"]]}
        assert worlds == {True, False}, (lanes[start["tid"]], lanes[end["tid"]])


def test_timeline_png_draws_lanes_and_arrows(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "demo.png"
    subprocess.run([sys.executable, "-m", "guessgame", "demo", "--config", str(CONFIG),
                    "--stage", "async-session", "--timeline", str(path), "-q"],
                   capture_output=True, timeout=6 * UNIT, check=True)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_a_picture_without_matplotlib_is_a_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "matplotlib.py"
    blocker.write_text("raise ImportError('not installed')\n")
    done = subprocess.run([sys.executable, "-m", "guessgame", "demo", "--config", str(CONFIG),
                           "--timeline", str(tmp_path / "demo.svg"), "-q"],
                          capture_output=True, text=True, timeout=3 * UNIT,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 2
    assert done.stderr == ("guessgame: --timeline FILE.png or .svg needs matplotlib: "
                           "pip install 'guessgame[plot]'\n")


def test_a_dropped_report_takes_its_crossing_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the printer is behind, reports past the bound are dropped. Each arrow must
    still join the sending and the taking of one report, before and after the drops."""
    monkeypatch.setattr(reports_module, "REPORTS_BOUND", 2)
    picture = Timeline("reports")

    def burst(reports: Reports, uppers: range) -> None:
        for upper in uppers:
            reports.put_from_thread(GameStarted(1, upper))

    async def print_two_bursts() -> list[str]:
        printed: list[str] = []
        reports = Reports(printed.append)
        await reports.start_task()
        for uppers, kept in ((range(10, 15), 2), (range(20, 21), 3)):
            # Joined on the loop's own thread, so the printer cannot take any meanwhile.
            producer = threading.Thread(target=burst, args=(reports, uppers))
            producer.start()
            producer.join()
            while len(printed) < kept:  # the printer's turn on the loop
                await asyncio.sleep(0.001)
        await reports.stop_task()
        return printed

    trace.add_sink(picture, flows=True)
    try:
        printed = asyncio.run(print_two_bursts())
    finally:
        trace.remove_sink(picture)
    assert printed == ["server: new game 1..10", "server: new game 1..11",
                       "server: new game 1..20"]
    arrows = crossings(picture.records())
    assert [(sent.event, taken.event) for sent, taken in arrows] == [
        (f"SimpleQueue thread->loop report {line}",) * 2 for line in printed]
