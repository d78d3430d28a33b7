"""An event loop of its own in a background thread; the main thread sends it work."""

import asyncio
import sys
import threading


async def greet(name: str) -> str:
    await asyncio.sleep(0)
    return f"hello, {name}"


def serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


def main() -> int:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=serve, args=(loop,), name="loop-runner")
    thread.start()
    for name in ("ada", "bob"):
        reply = asyncio.run_coroutine_threadsafe(greet(name), loop).result()
        print(reply)
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()
    return 5


if __name__ == "__main__":
    sys.exit(main())
