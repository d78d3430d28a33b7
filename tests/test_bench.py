"""A tiny run of `guessgame bench`: the report's structure, never its speed; and its stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from guessgame import cli
from guessgame.bench import command, report, runner
from guessgame.config import Layers
from peers import eventually
from timing import UNIT

CONFIG = Path(__file__).resolve().parent.parent / "guessgame.toml"


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_bench_reports_every_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results.json"
    code = cli.main(["bench", "--config", str(CONFIG), "--stage", "all-threads", "all-async",
                     "--clients", "1,2", "--pattern", "book", "short", "--passes", "2",
                     "--windows", "2", "--warmup", "0.1", "--duration", "0.2", "--settle", "0",
                     "--slow-stdout", "0", "--out", str(out), "-q"])
    assert code == 0
    results = json.loads(out.read_text())
    stages = ["baseline-threads", "baseline-threads-1ms", "baseline-streams", "baseline-mixed",
              "all-threads", "all-async"]
    assert [(cell["stage"], cell["pattern"], cell["clients"]) for cell in results["cells"]] == [
        (stage, pattern, clients) for clients in (1, 2) for pattern in ("book", "short")
        for stage in stages]
    assert results["patterns"] == ["book", "short"] and results["passes"] == 2
    for cell in results["cells"]:
        assert cell["failed"] == 0, cell
        assert cell["rounds"] > 0 and cell["passes"] == 2
        assert len(cell["windows"]) == 4  # two passes of two windows, the median of them
        assert cell["server_cpu_us_per_round"] is not None
        assert cell["p50_ms"] <= cell["p99_ms"]
        assert cell["peak_rss_bytes"] > 0 and cell["peak_threads"] >= 1
        assert cell["loadgen_cpu_share"] >= 0
        assert cell["server_exit"] in (0, -15)  # a baseline simply dies of SIGTERM
    by = {(cell["stage"], cell["pattern"], cell["clients"]): cell for cell in results["cells"]}
    assert by["baseline-threads", "book", 1]["x_threads"] == 1.0
    assert by["baseline-threads-1ms", "short", 2]["x_threads_same"] == 1.0
    assert by["baseline-streams", "short", 2]["x_streams"] == 1.0
    assert by["baseline-mixed", "book", 1]["x_mixed"] == 1.0
    assert results["stages"] == {"all-threads": [],
                                 "all-async": ["connection", "session", "client", "server"]}
    assert {check["target"] for check in results["targets"]}
    table = capsys.readouterr().out
    assert "| all-async | 2 | short |" in table


def test_the_targets_hold_under_every_pattern() -> None:
    cells = [{"stage": stage, "pattern": pattern, "clients": 100,
              "server_cpu_us_per_round": cost}
             for pattern, costs in (("book", (40.0, 20.0, 30.0, 24.0, 45.0, 30.0)),
                                    ("batched", (40.0, 20.0, 30.0, 36.0, 60.0, 30.0)))
             for stage, cost in zip(("baseline-threads-1ms", "baseline-streams",
                                     "baseline-mixed", "all-async", "all-threads",
                                     "async-session"), costs, strict=True)]
    report.add_ratios(cells, "baseline-threads-1ms")
    found = report.check_targets(cells, [], "all-threads", "all-async", {"async-session"},
                                 "baseline-threads-1ms")
    checks = {word: next(check for check in found if word in check["target"]
                         and "CPU/round" in check["target"])
              for word in ("all-async", "all-threads", "every other")}
    assert checks["all-async"]["met"] is False
    assert checks["all-async"]["detail"] == "all-async batched C=100: 1.80x"
    assert checks["all-threads"]["met"] is False
    assert "baseline-threads-1ms" in checks["all-threads"]["target"]
    assert checks["all-threads"]["detail"] == "all-threads batched C=100: 1.50x"
    assert checks["every other"]["met"] is True


@pytest.mark.timeout(60)
def test_bench_measures_the_results_store_beside_a_run_without_it(tmp_path: Path) -> None:
    out = tmp_path / "store.json"
    code = cli.main(["bench", "--config", str(CONFIG), "--stage", "all-async", "--store-cost",
                     "--clients", "2", "--pattern", "short", "--passes", "2", "--warmup", "0.1",
                     "--duration", "0.2", "--settle", "0", "--slow-stdout", "0",
                     "--no-baselines", "--out", str(out), "-q"])
    assert code == 0
    document = json.loads(out.read_text())
    on, off = document["cells"]
    assert (on["stage"], on["results"]) == ("all-async", "on")
    assert (off["stage"], off["results"]) == ("all-async (no store)", "none")
    assert on["passes"] == off["passes"] == 2 and on["failed"] == off["failed"] == 0
    assert on["x_no_store"] == pytest.approx(
        on["server_cpu_us_per_round"] / off["server_cpu_us_per_round"])
    assert "x_no_store" not in off
    assert document["stages"] == {"all-async": ["connection", "session", "client", "server"]}
    [target] = [t for t in document["targets"] if t["target"].startswith("the results store")]
    assert target["met"] is None  # spoken to at 100 clients only


def test_passes_alternate_which_twin_goes_first() -> None:
    twins = [runner.Target("all-async", Layers(True, True, True, True)),
             runner.Target("all-async" + report.NO_STORE_SUFFIX,
                            Layers(True, True, True, True), results=False)]
    orders = [[target.results for target in command.pass_order(twins, turn)]
              for turn in range(4)]
    assert orders == [[True, False], [False, True], [True, False], [False, True]]


def test_the_store_cost_target_holds_at_every_stage_and_pattern() -> None:
    cells = [{"stage": stage + suffix, "pattern": pattern, "clients": 100,
              "results": results, "server_cpu_us_per_round": cost}
             for stage, pattern, on, none in (("all-async", "short", 44.0, 40.0),
                                              ("all-threads", "short", 50.0, 40.0),
                                              ("all-threads", "book", 30.0, 30.0))
             for suffix, results, cost in (("", "on", on),
                                           (report.NO_STORE_SUFFIX, "none", none))]
    report.add_store_cost(cells)
    assert [cell.get("x_no_store") for cell in cells] == [1.1, None, 1.25, None, 1.0, None]
    found = report.check_targets(cells, [], "all-threads", "all-async", set())
    [check] = [check for check in found if check["target"].startswith("the results store")]
    assert check["met"] is False
    assert check["detail"] == "all-threads short C=100: 1.25x"


@pytest.mark.timeout(30)
def test_bench_measures_idle_connections(tmp_path: Path) -> None:
    out = tmp_path / "idle.json"
    code = cli.main(["bench", "--config", str(CONFIG), "--stage", "all-async", "--idle", "20",
                     "--no-baselines", "--out", str(out), "-q"])
    assert code == 0
    (row,) = json.loads(out.read_text())["idle"]
    assert row["stage"] == "all-async"
    assert row["connected"] == 20 and row["failed"] == 0
    assert row["rss_per_connection_bytes"] is not None


def test_bench_refuses_an_unknown_stage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "--config", str(CONFIG), "--stage", "nope"]) == 2
    assert "unknown stage 'nope'" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_bench_reload_cell_goes_through_every_stage_and_back(tmp_path: Path) -> None:
    out = tmp_path / "reload.json"
    code = cli.main(["bench", "--config", str(CONFIG), "--reload", "--clients", "10",
                     "--reload-every", "0.3", "--out", str(out), "-q"])
    assert code == 0
    cell = json.loads(out.read_text())["reload"]
    stages = ["all-threads", "async-connection", "async-session", "async-server", "all-async"]
    assert cell["path"] == stages + stages[-2::-1]
    assert [(step["from"], step["to"]) for step in cell["reloads"]] == list(
        zip(cell["path"], cell["path"][1:], strict=False))
    assert cell["reloads_unanswered"] == 0, cell["reloads"]
    assert cell["games"] > 0 and cell["failed"] == 0, cell["failures"]
    assert cell["server_refused"] == 0 and cell["server_exit"] == 0
    assert cell["threads_after_drain"] == cell["fresh_threads"]


@pytest.mark.timeout(60)
def test_bench_reports_a_burst_the_threads_left_and_a_slow_stdout(tmp_path: Path) -> None:
    out = tmp_path / "burst.json"
    code = cli.main(["bench", "--config", str(CONFIG), "--stage", "async-server",
                     "--clients", "20", "--arrival", "burst", "--pattern", "short",
                     "--passes", "1", "--warmup", "0.2",
                     "--duration", "0.3", "--settle", "0.2", "--slow-stdout", "5",
                     "--no-baselines", "--out", str(out), "-q"])
    assert code == 0
    burst, slow = json.loads(out.read_text())["cells"]
    assert burst["stage"] == "async-server" and burst["arrival"] == "burst"
    assert burst["pattern"] == slow["pattern"] == "short"
    assert burst["failed"] == 0 and burst["unanswered"] == 0
    assert 0 < burst["first_reply_p50_ms"] <= burst["first_reply_max_ms"]
    assert burst["threads_after"] >= 1 and burst["settle_s"] == 0.2
    assert slow["stage"] == "async-server (slow stdout)" and slow["slow_stdout"]
    assert slow["failed"] == 0 and slow["server_exit"] == 0
    assert slow["reports_dropped"] >= 0


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_bench_plays_on_while_nobody_reads_stdout(tmp_path: Path) -> None:
    out = tmp_path / "unread.json"
    code = cli.main(["bench", "--config", str(CONFIG), "--stage", "all-threads",
                     "--clients", "1", "--duration", "0.3", "--settle", "0",
                     "--slow-stdout", "5", "--unread-stdout", "3000", "--no-baselines",
                     "--out", str(out), "-q"])
    assert code == 0
    document = json.loads(out.read_text())
    [cell] = document["unread_stdout"]
    assert cell["stage"] == "all-threads" and cell["clients"] == 5
    assert cell["rounds"] >= 3000 and cell["windows"] >= 1
    assert cell["newcomer_rounds"] > 0
    assert cell["server_exit"] == 0 and cell["stop_s"] < 2
    [target] = [t for t in document["targets"] if t["target"].startswith("stdout never read")]
    assert target["met"] is True, target["detail"]


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return [int(child) for child in listing.read().split()]


def _running(pid: int) -> bool:
    """Alive and not a zombie. subprocess does not wait for a child it kills on Ctrl-C,
    and the zombie is reaped by whoever adopts it once the bench has exited."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def _command_line(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as line:
            return line.read().decode().split("\0")
    except FileNotFoundError:  # it has just exited
        return []


@pytest.mark.timeout(60)
def test_sigterm_stops_the_bench_and_the_server_of_its_cell() -> None:
    bench = subprocess.Popen(
        [sys.executable, "-m", "guessgame", "bench", "--config", str(CONFIG),
         "--stage", "all-threads", "--no-baselines", "--clients", "1", "--warmup", "0",
         "--duration", "120", "--settle", "0", "--slow-stdout", "0", "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    children: list[int] = []

    def started() -> list[int]:
        return [child for child in _children(bench.pid)
                if {"serve", "guessgame.bench.loadgen"} & set(_command_line(child))]

    try:
        # The load generator starts once the cell's server is listening: both then run.
        eventually(lambda: len(started()) == 2, "the cell's server and load generator")
        children = started()
        bench.send_signal(signal.SIGTERM)
        _, errors = bench.communicate(timeout=6 * UNIT)
        assert bench.returncode == 130
        assert errors.decode().strip() == "guessgame: interrupted"
        # Killed on the way out, but SIGKILL takes effect when the kernel gets to it.
        eventually(lambda: not any(map(_running, children)),
                   lambda: f"the bench's children to stop: {list(filter(_running, children))}")
    finally:
        bench.kill()
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
