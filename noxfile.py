"""The suite on every Python this project supports: `nox` (or `nox -p 3.13` for one).

nox looks for `python3.11`, `python3.12` and `python3.13` on PATH; pyenv keeps its
interpreters out of PATH unless they are selected, so their directories are added
here. A version the machine does not have is skipped, and said so.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

PYTHONS = ["3.11", "3.12", "3.13"]

pyenv_versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
if pyenv_versions.is_dir():
    found = sorted(str(bin_dir) for bin_dir in pyenv_versions.glob("3.*/bin"))
    os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])

nox.options.sessions = ["tests"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Install the project with its test extra in a fresh venv and run the whole suite."""
    session.install("-q", "-e", ".[test]")
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *session.posargs)
