"""The four layers written with asyncio coroutines."""
