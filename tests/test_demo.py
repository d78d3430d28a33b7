"""The whole system at every combination: the same seed gives the same transcript."""

from __future__ import annotations

import io

import pytest

from guessgame import app
from guessgame.config import Settings

EXPECTED_SEED_1 = """\
server: new game 1..5
server: 5 is UNSURE
server: 1 is SAME
server: 2 is WARMER
server: 4 is SAME
server: 3 is CORRECT
server: new game 10..15
server: 12 is CORRECT
client: game 1..5, secret 3
client: 5 is UNSURE
client: 1 is SAME
client: 2 is WARMER
client: 4 is SAME
client: 3 is CORRECT
client: game 10..15, secret 12
client: 12 is CORRECT
"""


@pytest.mark.parametrize("seed", [1, 7])
def test_demo_transcript_is_the_same_at_every_stage(settings: Settings, seed: int) -> None:
    out = io.StringIO()
    assert app.demo(settings, seed, out) == 0
    # The reference is the all-threads run, computed in this process, not a pasted copy.
    reference = io.StringIO()
    app.demo(settings.with_options(layers=type(settings.layers)()), seed, reference)
    assert out.getvalue() == reference.getvalue()
    if seed == 1:
        assert out.getvalue() == EXPECTED_SEED_1
