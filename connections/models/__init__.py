from .connection import Connection
from .exchange import AuthCodeExchange

__all__ = ["AuthCodeExchange", "Connection"]
