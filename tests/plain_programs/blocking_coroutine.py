"""A coroutine that blocks its loop with a plain sleep."""

import asyncio
import time


async def tick(count: int) -> int:
    for _ in range(count):
        await asyncio.sleep(0)
    return count


async def handle() -> str:
    time.sleep(0.3)
    return "handled"


async def main() -> None:
    ticks, handled = await asyncio.gather(tick(3), handle())
    print(f"{handled} after {ticks} ticks")


if __name__ == "__main__":
    asyncio.run(main())
