from .audit import AuditEntry
from .connection import Connection
from .exchange import AuthCodeExchange
from .magic_link import MagicLink

__all__ = ["AuditEntry", "AuthCodeExchange", "Connection", "MagicLink"]
