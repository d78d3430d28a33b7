"""The timeline is valid Chrome trace-event JSON whose lanes match the stage."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import CONFIG
from guessgame import app, trace
from guessgame.config import Layers, Settings
from guessgame.timeline import Timeline


def demo_timeline(settings: Settings, path: Path) -> dict[str, Any]:
    picture = Timeline("guessgame demo")
    trace.add_sink(picture)
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
    instants = [e for e in events if e["ph"] != "M"]
    assert instants
    for event in instants:
        assert event["ph"] == "i" and event["s"] == "t"
        assert isinstance(event["ts"], (int, float)) and event["ts"] >= 0  # microseconds
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
    instants = [e["args"] for e in document["traceEvents"] if e["ph"] == "i"]
    tasks = {e["task"]: e["thread"] for e in instants if e["task"] != "-"}
    threads = {e["thread"] for e in instants if e["task"] == "-"}

    # Task lanes appear exactly when some layer is async, all on the one loop's thread:
    # the main thread when the demo's top-level component (its client) is async.
    loop_thread = "MainThread" if layers.client else "event-loop"
    assert bool(tasks) == layers.any_async
    assert set(tasks.values()) <= {loop_thread}
    # Lanes of plain threads appear exactly when some layer is threaded.
    plain = threads - {loop_thread} if layers.any_async else threads
    assert bool(plain) == (layers != Layers(True, True, True, True))
    if layers == Layers(True, True, True, True):
        assert threads <= {"MainThread"}
        assert all(name == "MainThread" or name.endswith(" [MainThread]")
                   for name in lanes.values())
    if layers == Layers():
        assert not any("[" in name for name in lanes.values())


def test_timeline_option_writes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "demo.json"
    subprocess.run([sys.executable, "-m", "guessgame", "demo", "--config", str(CONFIG),
                    "--stage", "async-session", "--timeline", str(path), "-q"],
                   capture_output=True, timeout=15, check=True)
    lanes = check_structure(json.loads(path.read_text()))
    assert "MainThread" in lanes.values()
    assert any(name.endswith("[event-loop]") for name in lanes.values())
