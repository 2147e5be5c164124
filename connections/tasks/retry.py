import random


def backoff(retries: int, *, base: float = 2.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter, so retries of many tasks do not align."""
    return random.uniform(base / 2, min(cap, base * 2**retries))  # noqa: S311
