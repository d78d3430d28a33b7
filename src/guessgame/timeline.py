"""The trace as a picture: Chrome trace-event JSON, one lane per thread and per task.

`Timeline` is a trace sink. It keeps every record, and `write()` turns them into the
JSON that Perfetto (ui.perfetto.dev) and chrome://tracing open. Each event is an
instant on the lane of the task that traced it, or of its thread outside a task, so
the picture shows at a glance which thread or coroutine handled each message.

Lanes are Chrome "threads" (tid) of one process (pid). A task's lane is named after
the task and the thread its loop runs in, e.g. `session 127.0.0.1:50312 [MainThread]`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from guessgame.trace import Record


class Timeline:
    def __init__(self, process_name: str = "guessgame") -> None:
        self.process_name = process_name
        self._start = time.monotonic()
        self._records: list[Record] = []
        self._lock = threading.Lock()

    def __call__(self, record: Record) -> None:
        # Called with tracing on only; formatting waits until write().
        with self._lock:
            self._records.append(record)

    @staticmethod
    def lane_of(record: Record) -> str:
        return record.thread if record.task == "-" else f"{record.task} [{record.thread}]"

    def events(self) -> list[dict[str, Any]]:
        """The trace-event list: metadata naming the process and each lane, then instants."""
        pid = os.getpid()
        with self._lock:
            records = list(self._records)
        lanes: dict[str, int] = {}
        instants = []
        for record in records:
            lane = self.lane_of(record)
            tid = lanes.setdefault(lane, len(lanes) + 1)
            instants.append({
                "name": record.event, "cat": record.layer, "ph": "i", "s": "t",
                "ts": round((record.time - self._start) * 1e6, 3), "pid": pid, "tid": tid,
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
        return meta + instants

    def write(self, path: str | Path) -> None:
        document = {"traceEvents": self.events(), "displayTimeUnit": "ms"}
        Path(path).write_text(json.dumps(document, indent=0) + "\n", encoding="utf-8")
