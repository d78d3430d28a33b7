"""The docs cannot drift from the code: runnable examples are run, links resolve."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from guessgame.bench import doc_tables
from timing import UNIT

PAGES = [ROOT / "README.md", ROOT / "migration_plan.md",
         *sorted((ROOT / "docs").glob("*.md"))]

RUNNABLE = re.compile(r"<!-- runnable[^>]*-->\n```console\n(.*?)```", re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def runnable_examples() -> list[tuple[str, list[str]]]:
    """(command, expected stdout lines) for each `$ guessgame ...` in a marked block."""
    examples = []
    for page in PAGES:
        for block in RUNNABLE.findall(page.read_text(encoding="utf-8")):
            command, *output = block.splitlines()
            assert command.startswith("$ guessgame "), f"{page.name}: {command}"
            examples.append((command.removeprefix("$ "), output))
    return examples


def test_the_readme_has_runnable_examples() -> None:
    assert len(runnable_examples()) >= 3


@pytest.mark.parametrize(("command", "expected"), runnable_examples(),
                         ids=[command for command, _ in runnable_examples()])
def test_a_runnable_example_prints_what_the_docs_show(command: str,
                                                      expected: list[str]) -> None:
    argv = [sys.executable, "-m", "guessgame", *shlex.split(command)[1:]]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                          timeout=6 * UNIT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == expected


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def links() -> list[tuple[Path, str]]:
    found = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        found += [(page, target) for target in LINK.findall(text)
                  if not target.startswith(("http://", "https://", "mailto:"))]
    return found


def test_every_link_in_the_docs_resolves() -> None:
    broken = []
    for page, target in links():
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{page.name}: {target} (no such file)")
        elif anchor and anchor not in anchors(resolved):
            broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []
    assert len(links()) >= 10


def test_the_readme_stays_short() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


def test_the_readme_layout_names_every_module_outside_bench() -> None:
    """The README's layout block is the project's one map of its modules."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):readme.index("## Read next")]
    package = ROOT / "src" / "guessgame"
    missing = []
    for path in [*sorted(package.rglob("*.py")), package / "default.toml"]:
        inside = path.relative_to(package)
        if inside.parts[0] in ("bench", "threaded", "aio") or path.name == "__init__.py":
            continue  # the bench has its own page; the twins are named as a pair
        folder_named = len(inside.parts) == 1 or f"{inside.parts[0]}/" in layout
        if path.name not in layout or not folder_named:
            missing.append(str(inside))
    assert not missing, f"README.md's layout does not name {missing}"


def test_the_top_level_shows_the_technique_first() -> None:
    entries = [path.name for path in (ROOT / "src" / "guessgame").iterdir()
               if path.name != "__pycache__"]
    assert len(entries) <= 23, sorted(entries)


# A path of this project as the docs write it: `src/guessgame/app.py:57`,
# `guessgame/compose.py(67)` (pdb's form), `tests/test_cli.py::test_name`, `workers.py`.
PATH = re.compile(r"(?<![\w/.<>-])((?:[\w.-]+/)*[\w-]+\.(?:py|md|json|toml|png|svg))"
                  r"(?::(\d+)|\((\d+)\)|::(\w+))?")
MODULE = re.compile(r"(?<![\w/.])guessgame(?:\.[A-Za-z_]\w*)+")
NOT_MODULES = {"guessgame.toml", "guessgame.stage"}  # the config file; a key in an error
TEST_NAME = re.compile(r"`(test_\w+)`")
# Files the docs name that are not this project's: the standard library's, other
# projects', and the ones a reader makes.
FOREIGN = {"threading.py", "socket.py", "selectors.py", "events.py", "base_events.py",
           "streams.py", "locks.py", "_threads.py", "example_code/item_61.py", "deadlock.py",
           "results.json", "demo.json", "t.json", "t.png", "demo.svg", "profile.txt",
           "load.json", "setup.cfg", "absent.toml"}
WHERE = [ROOT, ROOT / "src", ROOT / "src" / "guessgame", ROOT / "tests", ROOT / "docs",
         ROOT / ".vscode",
         *(path for path in (ROOT / "src" / "guessgame").rglob("*")
           if path.is_dir() and path.name != "__pycache__")]


def _project_file(name: str, page: Path) -> Path | None:
    """The file a name in the docs stands for; None for another project's or a placeholder."""
    if name.split("/")[0] == "asyncio" or name in FOREIGN or re.search(r"[A-Z]{3}", name):
        return None
    for base in [page.parent, *WHERE]:
        if (base / name).is_file():
            return base / name
    return Path(name)  # not found: reported by the caller


def named_files() -> list[tuple[str, str, Path | None, int | None, str | None]]:
    """(page, as written, the file, the line it cites, the test it names)."""
    found = []
    for page in PAGES:
        for match in PATH.finditer(page.read_text(encoding="utf-8")):
            name, colon, paren, test = match.groups()
            line = colon or paren
            found.append((page.name, match.group(0), _project_file(name, page),
                          int(line) if line else None, test))
    return found


def test_every_file_and_line_named_in_the_docs_exists() -> None:
    missing = []
    for page, written, path, line, test in named_files():
        if path is None:
            continue
        if not path.is_file():
            missing.append(f"{page}: {written} (no such file)")
            continue
        if line is not None and len(path.read_text(encoding="utf-8").splitlines()) < line:
            missing.append(f"{page}: {written} (the file is shorter)")
        if test is not None and f"def {test}(" not in path.read_text(encoding="utf-8"):
            missing.append(f"{page}: {written} (no such test)")
    assert missing == []
    assert sum(path is not None for _, _, path, _, _ in named_files()) >= 50


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


def _short_names() -> dict[str, str]:
    """`crossing` -> `guessgame.crossing`, `rollout` -> `guessgame.live.rollout`: every
    module the docs may name by its last part alone (the twins' names are ambiguous)."""
    package = ROOT / "src" / "guessgame"
    full: dict[str, list[str]] = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        full.setdefault(parts[-1], []).append(".".join(parts))
    return {short: names[0] for short, names in full.items() if len(names) == 1}


# `module.name` in backticks, e.g. `compose.switch_interval` or `netutil.no_delay()`.
DOTTED = re.compile(r"`(\w+(?:\.\w+)+)(?:\(\))?`")


def test_every_module_and_test_named_in_the_docs_exists() -> None:
    defined = "\n".join(path.read_text(encoding="utf-8")
                        for path in (ROOT / "tests").glob("test_*.py"))
    missing = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        missing += [f"{page.name}: {name}" for name in set(MODULE.findall(text))
                    if name not in NOT_MODULES and not _resolves(name)]
        missing += [f"{page.name}: {name}" for name in set(TEST_NAME.findall(text))
                    if f"def {name}(" not in defined]
        short = _short_names()
        missing += [f"{page.name}: {name}" for name in set(DOTTED.findall(text))
                    if name.split(".")[0] in short
                    and name.rsplit(".", 1)[1] not in ("py", "toml", "md", "json")
                    and not _resolves(short[name.split(".")[0]] + name[name.index("."):])]
    assert missing == []


def test_the_performance_tables_are_the_committed_json() -> None:
    page = ROOT / "docs" / "performance.md"
    text = page.read_text(encoding="utf-8")
    assert text.count("<!-- bench-table:") >= 4
    assert doc_tables.render(text, page.parent) == text, (
        "docs/performance.md's tables differ from docs/bench-*.json; run "
        "python -m guessgame.bench.doc_tables")


def test_every_committed_bench_file_is_shown() -> None:
    text = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    shown = {name for spec in re.findall(r"<!-- bench-table: ([^>]*?) -->", text)
             for name in spec.split()[1:]}
    assert {path.name for path in (ROOT / "docs").glob("bench-*.json")} <= shown


def test_a_pattern_column_appears_when_the_cells_have_one() -> None:
    cell = {"stage": "all-async", "clients": 100, "rounds_per_s": 1000.0}
    plain = doc_tables.cells_table([cell])
    patterned = doc_tables.cells_table([{**cell, "pattern": "book"},
                                        {**cell, "pattern": "batched"}, cell])
    assert "pattern" not in plain and "x mixed" not in plain
    head, _, *rows = patterned.splitlines()
    assert head.startswith("| stage | pattern | rounds/s |")
    assert [row.split(" | ")[1] for row in rows] == ["book", "batched", "-"]


def test_the_store_table_pairs_each_stage_with_its_run_without_the_store() -> None:
    on = {"stage": "all-async", "pattern": "short", "clients": 100, "results": "on",
          "server_cpu_us_per_round": 44.0, "x_no_store": 1.1}
    off = {**on, "stage": "all-async (no store)", "results": "none",
           "server_cpu_us_per_round": 40.0}
    head, _, *rows = doc_tables.store_table([on, off, {"stage": "baseline-streams",
                                                        "clients": 100}]).splitlines()
    assert head == "| stage | x no store, short |"
    assert rows == ["| all-async | 1.10 (+4.0 µs) |"]


def test_the_testing_page_names_every_test_file() -> None:
    text = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    unnamed = [path.name for path in sorted((ROOT / "tests").glob("test_*.py"))
               if f"`{path.name}`" not in text]
    assert unnamed == [], f"docs/testing.md does not name {unnamed}"


def test_named_keeps_the_named_stages_and_the_baselines(tmp_path: Path) -> None:
    run = {"stages": {"all-threads": [], "async=server": ["server"]},
           "cells": [{"stage": stage, "clients": 1000, "rounds_per_s": 1.0}
                     for stage in ("baseline-streams", "all-threads", "async=server")]}
    (tmp_path / "run.json").write_text(json.dumps(run), encoding="utf-8")
    shown = doc_tables.table("cells run.json named", tmp_path)
    every = doc_tables.table("cells run.json", tmp_path)
    assert "async=server" in every and "async=server" not in shown
    assert "baseline-streams" in shown and "all-threads" in shown


def test_the_docs_read_in_an_hour() -> None:
    """At most 15,000 words, counted as `wc -w` counts them, across the pages a newcomer
    reads: the README, the migration plan and docs/."""
    pages = [ROOT / "README.md", ROOT / "migration_plan.md",
             *sorted((ROOT / "docs").glob("*.md"))]
    words = sum(len(page.read_bytes().split()) for page in pages)
    assert words <= 15_000, f"{words} words"
