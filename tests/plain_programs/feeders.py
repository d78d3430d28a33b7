"""Worker threads hand what they find to the event loop, which keeps the tally."""

import asyncio
import sys
import threading

tally: list[tuple[int, int]] = []


async def record(worker: int, value: int) -> int:
    tally.append((worker, value))
    return len(tally)


def feed(worker: int, loop: asyncio.AbstractEventLoop) -> None:
    value = worker * 10
    count = asyncio.run_coroutine_threadsafe(record(worker, value), loop).result()
    sys.stdout.write(f"worker {worker} recorded, {count} so far\n")


async def main(workers: int) -> None:
    loop = asyncio.get_running_loop()
    threads = [threading.Thread(target=feed, args=(n, loop), name=f"feeder-{n}")
               for n in range(workers)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        await asyncio.sleep(0.01)
    print(f"tally: {sorted(tally)}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
    sys.exit(3)
