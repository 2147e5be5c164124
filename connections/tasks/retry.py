import random


def backoff(retries: int, *, base: float = 2.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter, so retries of many tasks do not align."""
    return random.uniform(base / 2, min(cap, base * 2**retries))  # noqa: S311


def database_backoff(retries: int) -> float:
    """After a lost database connection: seconds, not minutes. A terminated backend needs
    only a fresh connection; a failover or a restart is over in seconds too."""
    return backoff(retries, base=2.0, cap=30.0)
