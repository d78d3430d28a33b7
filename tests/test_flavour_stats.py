"""The flavour counts at every combination: sessions, errors and replies land in the rows
of the flavours that served them."""

from __future__ import annotations

import asyncio
import time

from guessgame.bridge import loop_thread
from guessgame.config import SERVER_LAYERS, Layers, Settings
from guessgame.live.flavour_stats import FLAVOURS, FlavourStats
from guessgame.live.host import ServerHost
from peers import PROBE, PROBE_REPLY, Peer, wait_until_idle


def rows(stats: FlavourStats) -> dict[tuple[str, str], list[str]]:
    """(layer, flavour) -> [sessions, errors, replies, p50, p99], from the printed table."""
    table = {}
    for line in stats.table()[1:]:
        layer, *cells = (part.split() for part in line.split("|"))
        for flavour, cell in zip(FLAVOURS, cells, strict=True):
            table[layer[0], flavour] = cell
    return table


def test_each_session_counts_for_the_flavours_that_served_it(settings: Settings) -> None:
    stats = FlavourStats()
    with loop_thread(settings, SERVER_LAYERS) as bridge, \
            ServerHost(settings, bridge, stats=stats) as server:
        with Peer(server.port) as good:
            assert good.exchange(PROBE) == PROBE_REPLY
        with Peer(server.port) as bad:
            assert bad.exchange([b"HELLO\n"]) == ["ERROR unknown command 'HELLO'"]
            assert bad.probe() == PROBE_REPLY
        wait_until_idle(server)
    table = rows(stats)
    for layer in SERVER_LAYERS:
        used = FLAVOURS[getattr(settings.layers, layer)]
        unused = FLAVOURS[not getattr(settings.layers, layer)]
        # Two sessions; one ERROR; three replies: two numbers and the error.
        assert table[layer, used][:3] == ["2", "1", "3"], table
        assert table[layer, unused] == ["0", "0", "0", "-", "-"], table
        p50, p99 = (float(value) for value in table[layer, used][3:])
        assert 0 < p50 <= p99


def test_a_record_made_on_the_loop_never_waits_for_the_lock() -> None:
    """Under a burst, worker threads hold the lock to record their replies; the loop
    admitting sessions must not queue behind them. Its records wait, and count, later."""
    stats = FlavourStats()

    async def serve_one_line() -> None:
        meter = stats.session_started(Layers(connection=True, session=True))
        meter.replied(time.perf_counter(), "5")

    with stats._lock:  # a thread recording a reply: were the loop to wait, it never returns
        asyncio.run(serve_one_line())
    table = rows(stats)
    assert table["session", "asyncio"][:3] == ["1", "0", "1"]
    assert table["server", "threads"][:3] == ["1", "0", "1"]
