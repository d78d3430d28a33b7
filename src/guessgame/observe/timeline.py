"""The trace as a picture: Chrome trace-event JSON, one lane per thread and per task.

`Timeline` is a trace sink. It keeps every record, and `write()` turns them into the
JSON that Perfetto (ui.perfetto.dev) and chrome://tracing open. Each event is a slice
on the lane of the task that traced it, or of its thread outside a task, lasting until
that lane's next event, so the picture shows at a glance which thread or coroutine
handled each message. Each crossing of a bridge is an arrow (a flow: `ph` `s` then
`f`, bound by `id`) from the lane that sent it to the lane that took it.

Lanes are Chrome "threads" (tid) of one process (pid). A task's lane is named after
the task and the thread its loop runs in, e.g. `session 127.0.0.1:50312 [MainThread]`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from guessgame.observe.trace import Record


class Timeline:
    def __init__(self, process_name: str = "guessgame") -> None:
        self.process_name = process_name
        self.start = time.monotonic()
        self._records: list[Record] = []
        self._lock = threading.Lock()

    def __call__(self, record: Record) -> None:
        # Called with tracing on only; formatting waits until write().
        with self._lock:
            self._records.append(record)

    @staticmethod
    def lane_of(record: Record) -> str:
        return record.thread if record.task == "-" else f"{record.task} [{record.thread}]"

    def records(self) -> list[Record]:
        with self._lock:
            return list(self._records)

    def lanes(self) -> dict[str, int]:
        """Each lane's tid, in order of first appearance."""
        lanes: dict[str, int] = {}
        for record in self.records():
            lanes.setdefault(self.lane_of(record), len(lanes) + 1)
        return lanes

    def micros(self, seconds: float) -> float:
        return round((seconds - self.start) * 1e6, 3)

    def events(self) -> list[dict[str, Any]]:
        """The trace-event list: metadata naming the process and each lane, a slice per
        record, and a flow (an arrow) per crossing, from the lane that sent it to the
        lane that took it."""
        pid = os.getpid()
        records = self.records()
        lanes = self.lanes()
        slices = []
        for record, end in zip(records, slice_ends(records, self.lane_of), strict=True):
            lane = self.lane_of(record)
            slices.append({
                "name": record.event, "cat": record.layer, "ph": "X",
                "ts": self.micros(record.time), "dur": round((end - record.time) * 1e6, 3),
                "pid": pid, "tid": lanes[lane],
                "args": {"thread": record.thread, "task": record.task,
                         "session": record.session, "layer": record.layer},
            })
        meta: list[dict[str, Any]] = [
            {"name": "process_name", "ph": "M", "pid": pid, "args": {"name": self.process_name}},
        ]
        for lane, tid in lanes.items():
            meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                         "args": {"name": lane}})
            # Keep lanes in order of first appearance rather than by name.
            meta.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                         "args": {"sort_index": tid}})
        flows = []
        for sent, taken in crossings(records):
            name = " ".join(sent.event.split()[:2])  # mechanism and direction
            # A flow's two ends must share name, category and id. "s" binds to the slice
            # that encloses it; "f" with bp "e" to its enclosing slice too, not the next.
            flows.append({"name": name, "cat": "bridge", "ph": "s", "id": sent.flow,
                          "ts": self.micros(sent.time), "pid": pid,
                          "tid": lanes[self.lane_of(sent)]})
            flows.append({"name": name, "cat": "bridge", "ph": "f", "bp": "e", "id": sent.flow,
                          "ts": self.micros(taken.time), "pid": pid,
                          "tid": lanes[self.lane_of(taken)]})
        return meta + slices + flows

    def write(self, path: str | Path) -> None:
        document = {"traceEvents": self.events(), "displayTimeUnit": "ms"}
        Path(path).write_text(json.dumps(document, indent=0) + "\n", encoding="utf-8")


MIN_SLICE = 20e-6
"""Seconds a lane's last record lasts, so that it shows as a slice, not a hairline."""


def slice_ends(records: list[Record], lane_of: Callable[[Record], str]) -> list[float]:
    """When each record's slice ends: at the next record on the same lane, which is when
    that lane was next seen doing something else (a trace marks calls, not returns)."""
    ends = [record.time + MIN_SLICE for record in records]
    last: dict[str, int] = {}
    for index, record in enumerate(records):
        lane = lane_of(record)
        if lane in last:
            ends[last[lane]] = max(record.time, records[last[lane]].time + 1e-6)
        last[lane] = index
    return ends


def crossings(records: list[Record]) -> list[tuple[Record, Record]]:
    """(sent, taken) for each crossing both of whose sides were recorded."""
    sent: dict[int, Record] = {}
    taken: dict[int, Record] = {}
    for record in records:
        if record.flow:
            (taken if record.arrives else sent).setdefault(record.flow, record)
    return [(sent[flow], taken[flow]) for flow in sorted(sent) if flow in taken]
