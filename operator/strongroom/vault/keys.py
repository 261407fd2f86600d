"""Keys of one vault: lifecycle (keylife.py), cryptography (keycrypto.py) and rotation
policies (keyrotation.py), together as the vault's KeyStore."""

from .keycrypto import DECRYPT_FAILED, KNOWN_ALGORITHMS, KeyCrypto
from .keyrotation import KeyRotation
from .objects import parse_duration

__all__ = ["DECRYPT_FAILED", "KNOWN_ALGORITHMS", "KeyStore", "parse_duration"]


class KeyStore(KeyRotation, KeyCrypto):
    """The keys of one vault."""
