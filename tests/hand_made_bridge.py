"""The hand-made bridge docs/debugging.md shows ("Your own program"), announced at the
seam; run as a program, it crosses once and prints the answer."""

import asyncio
import threading

from guessgame import crossing


def call_in_loop(loop, fn):  # type: ignore[no-untyped-def]
    """A thread runs fn() on the loop and waits: a hand-made bridge, announced."""
    seen = (crossing.sent("run_coroutine_threadsafe", crossing.THREAD_TO_LOOP,
                          fn.__qualname__) if crossing.observed else None)
    # Arriving announces taken and finished around the work, in the taker.
    work = fn if seen is None else crossing.Arriving(fn, seen)
    done, box = threading.Event(), []

    def on_loop():  # type: ignore[no-untyped-def]
        try:
            box.append(work())
        finally:
            done.set()

    loop.call_soon_threadsafe(on_loop)
    done.wait()
    if seen is not None:
        crossing.returned(seen)  # in the sender, as it goes on
    return box[0]


def answer() -> int:
    return 42


def main() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="loop-runner")
    thread.start()
    print(call_in_loop(loop, answer))
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()


if __name__ == "__main__":
    main()
