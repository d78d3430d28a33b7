"""A thread waits for a coroutine that waits for the thread, through a full janus queue.

The thread put one item and then waits, in run_coroutine_threadsafe, for `fill`; `fill`
waits for room in the queue, which only the thread would make. A line on stdin tells the
main task to drain the queue, and everything ends.
"""

import asyncio
import sys
import threading

import janus


async def fill(queue: janus.AsyncQueue[int], count: int) -> int:
    for number in range(count):
        await queue.put(number)
    return count


def producer(loop: asyncio.AbstractEventLoop, queue: janus.SyncQueue[int]) -> None:
    queue.put(-1)
    filled = asyncio.run_coroutine_threadsafe(fill(queue_async, 4), loop).result()
    print(f"filled {filled}")


def wait_for_go() -> str:
    print("stuck: send a line to go on", flush=True)
    return sys.stdin.readline()


async def main() -> None:
    global queue_async
    queue: janus.Queue[int] = janus.Queue(2)
    queue_async = queue.async_q
    thread = threading.Thread(target=producer, args=(asyncio.get_running_loop(), queue.sync_q),
                              name="producer")
    thread.start()
    await asyncio.to_thread(wait_for_go)
    drained = []
    while len(drained) < 5:
        drained.append(await queue.async_q.get())
    await asyncio.to_thread(thread.join)
    queue.close()
    await queue.wait_closed()
    print(f"drained {drained}")


queue_async: janus.AsyncQueue[int]

if __name__ == "__main__":
    asyncio.run(main())
