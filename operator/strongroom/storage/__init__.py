"""Where a pool keeps its vaults' records: an interface, and SQLite behind it.

The HSM keeps keys; the storage keeps records (object heads, versions, vault
configs), each already sealed by the HSM before it gets here. The storage never
sees a plaintext value and never needs to: it stores opaque blobs under clear
keys (vault, kind, lower-cased name, version) plus the few clear columns that
let it page, count and find what is due (deleted or not, when to purge).
"""

from .base import ObjectRow, Storage, StorageError, Write
from .sqlite import SqliteStorage

__all__ = ["ObjectRow", "SqliteStorage", "Storage", "StorageError", "Write"]
