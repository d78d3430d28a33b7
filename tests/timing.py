"""One unit for every deadline the suite waits on, scaled by one environment variable.

Every wait is a multiple of UNIT: five seconds for something that takes milliseconds
when all is well. On a slow or loaded machine, `GUESSGAME_TEST_SCALE=3` makes every
deadline, and pytest-timeout's limit per test (conftest.py), three times as long. A
bound the docs promise (a stop within 2 s, a first reply within 2 s) is a claim being
tested, not a deadline, and does not scale.
"""

from __future__ import annotations

import os

SCALE = float(os.environ.get("GUESSGAME_TEST_SCALE", "1"))
UNIT = 5.0 * SCALE
