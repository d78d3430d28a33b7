"""An event loop in the main thread that ticks until a line arrives on stdin."""

import asyncio
import sys


async def main() -> int:
    stop = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
    ticks = 0
    while not stop.done():
        ticks += 1
        print(f"tick {ticks}", flush=True)
        await asyncio.sleep(0.01)
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
