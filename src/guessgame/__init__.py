"""The number-guessing game, with each layer written both with threads and with asyncio."""
