"""The small exception tree that callers of the HSM layer see.

No message here ever carries key material, a PIN or a secret value: messages
name objects and operations only.
"""


class HsmError(Exception):
    """Base of every error raised by the HSM layer."""


class HsmUnavailable(HsmError):
    """The HSM (the sidecar's PKCS#11 socket) cannot be reached or is failing."""


class TokenNotFound(HsmError):
    """No token exists for the requested vault."""


class KeyNotFound(HsmError):
    """The key object does not exist in the token."""


class KeyNotLoaded(KeyNotFound):
    """The working key is not among the HSM's loaded keys: load it from its wrapped blob."""


class OperationNotAllowed(HsmError):
    """The HSM refused the operation for this key (its attributes forbid it)."""


class InvalidInput(HsmError):
    """The input to a cryptographic operation is malformed (wrong length, bad padding)."""


class NotActivated(HsmError):
    """The pool is not activated yet: it serves no key or secret until its security domain
    is downloaded (a new pool) or uploaded (a pool being restored)."""


class DomainConflict(HsmError):
    """The security-domain operation does not fit the pool's state (a second download, an
    upload into an activated pool)."""
