import sys

from guessgame.cli import main

sys.exit(main())
