"""The four layers written with threads and blocking I/O."""
