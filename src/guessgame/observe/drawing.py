"""The timeline as a picture: one row per lane, a bar per slice, an arrow per crossing.

`guessgame demo --timeline demo.png` (or `.svg`) draws what `--timeline demo.json`
shows in Perfetto, so a document can show it. matplotlib is optional (the `plot`
extra), imported only here and only when a picture is asked for.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from guessgame.config import ConfigError
from guessgame.observe.timeline import Timeline, crossings, slice_ends

COLOURS = {"connection": "#4c72b0", "session": "#55a868", "client": "#c44e52",
           "server": "#8172b2", "bridge": "#dd8452"}
ARROW = "#333333"


def require() -> Any:
    """matplotlib's pyplot, on a backend that needs no display; or a one-line error."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise ConfigError("--timeline FILE.png or .svg needs matplotlib: "
                          "pip install 'guessgame[plot]'") from None
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def draw(picture: Timeline, path: str | Path, title: str | None = None) -> None:
    plt = require()
    records = picture.records()
    lanes = picture.lanes()
    row = {lane: index for index, lane in enumerate(lanes)}  # first seen at the top
    ms = [(record.time - picture.start) * 1e3 for record in records]
    ends = [(end - picture.start) * 1e3
            for end in slice_ends(records, picture.lane_of)]
    figure, axes = plt.subplots(figsize=(10, 0.32 * len(lanes) + 1.1), dpi=72)
    for record, start, end in zip(records, ms, ends, strict=True):
        axes.broken_barh([(start, max(end - start, 0.02))], (row[picture.lane_of(record)] - 0.35,
                                                            0.7),
                         facecolors=COLOURS.get(record.layer, "#999999"), linewidth=0)
    for sent, taken in crossings(records):
        axes.annotate("", xy=((taken.time - picture.start) * 1e3, row[picture.lane_of(taken)]),
                      xytext=((sent.time - picture.start) * 1e3, row[picture.lane_of(sent)]),
                      arrowprops={"arrowstyle": "->", "color": ARROW, "linewidth": 0.6,
                                  "shrinkA": 0, "shrinkB": 0})
    axes.set_yticks(range(len(lanes)), [_short(lane) for lane in lanes], fontsize=7)
    axes.set_ylim(len(lanes) - 0.5, -0.5)
    axes.set_xlabel("ms since the trace started", fontsize=8)
    axes.tick_params(axis="x", labelsize=7)
    axes.set_title(title or picture.process_name, fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour) for colour in COLOURS.values()]
    figure.tight_layout(rect=(0, 0, 1, 0.9))
    figure.legend(handles, list(COLOURS), fontsize=6, loc="upper center", ncol=5,
                  frameon=False, title="slice colour = layer; arrow = a crossing of a bridge",
                  title_fontsize=6)
    figure.savefig(path)
    plt.close(figure)


def _short(lane: str, width: int = 48) -> str:
    return lane if len(lane) <= width else lane[:width - 1] + "…"
