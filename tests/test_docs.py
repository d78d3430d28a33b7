"""The docs cannot drift from the code: runnable examples are run, links resolve."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
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
