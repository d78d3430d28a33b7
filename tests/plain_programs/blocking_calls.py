"""A coroutine hands its blocking work to threads: to_thread, the default executor, and a
pool of its own."""

import asyncio
import hashlib
import sys
from concurrent.futures import ThreadPoolExecutor


def checksum(data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    return digest[:12]


def shout(word: str) -> str:
    return word.upper()


async def main() -> None:
    loop = asyncio.get_running_loop()
    loud = await asyncio.to_thread(shout, "hello")
    print(f"to_thread: {loud}")
    default = await loop.run_in_executor(None, checksum, b"default")
    print(f"default executor: {default}")
    pool = ThreadPoolExecutor(2, thread_name_prefix="hashers")
    own = await loop.run_in_executor(pool, checksum, b"own pool")
    pool.shutdown()
    print(f"own pool: {own}")


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(4)
