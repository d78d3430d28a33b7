"""A thread produces words into a janus queue; a coroutine consumes them and answers."""

import asyncio
import sys
import threading

import janus


def produce(words: list[str], requests: janus.SyncQueue[str | None],
            answers: janus.SyncQueue[int]) -> None:
    for word in words:
        requests.put(word)
        size = answers.get()
        print(f"{word}: {size}")
    requests.put(None)


async def consume(requests: janus.AsyncQueue[str | None], answers: janus.AsyncQueue[int]) -> int:
    served = 0
    while True:
        word = await requests.get()
        if word is None:
            return served
        served += 1
        await answers.put(len(word))


async def main(words: list[str]) -> None:
    requests: janus.Queue[str | None] = janus.Queue(2)
    answers: janus.Queue[int] = janus.Queue(2)
    thread = threading.Thread(target=produce, args=(words, requests.sync_q, answers.sync_q),
                              name="producer")
    thread.start()
    served = await consume(requests.async_q, answers.async_q)
    await asyncio.to_thread(thread.join)
    requests.close()
    answers.close()
    await requests.wait_closed()
    await answers.wait_closed()
    print(f"served {served}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or ["alpha", "be", "gamma"]))
