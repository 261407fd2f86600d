"""PINs of a vault's token, derived from the pool's secret so none is ever stored."""

import hashlib
import hmac
from pathlib import Path

POOL_SECRET_BYTES = 32


def read_pool_secret(path: Path) -> bytes:
    """Read the pool secret (hex or raw bytes) from a file mounted from a Kubernetes Secret."""
    raw = path.read_bytes().strip()
    try:
        secret = bytes.fromhex(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        secret = raw
    if len(secret) < 16:
        raise ValueError(f"pool secret in {path} is shorter than 16 bytes")
    return secret


def _derive(pool_secret: bytes, purpose: str, vault: str) -> str:
    mac = hmac.new(pool_secret, f"strongroom/{purpose}/{vault}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


def user_pin(pool_secret: bytes, vault: str) -> str:
    return _derive(pool_secret, "user-pin", vault)


def so_pin(pool_secret: bytes, vault: str) -> str:
    return _derive(pool_secret, "so-pin", vault)
