"""The holders' side of a restore, run where their private keys are: decrypt a quorum of
shares, combine them into the root secret, open the protected data, and encrypt it again
under a fresh key wrapped to the new pool's transfer key. Nothing here sends anything:
the result is the body the holders upload.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from . import jwe, shamir
from .document import DomainError, build_upload, open_data, read_download, thumbprint


@dataclass(frozen=True)
class Holder:
    """One holder's certificate and private key."""

    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey

    def __post_init__(self) -> None:
        public = self.certificate.public_key()
        if not isinstance(public, rsa.RSAPublicKey) or (
            public.public_numbers() != self.private_key.public_key().public_numbers()
        ):
            raise DomainError("a private key is not the key of its certificate")


def recover_root(domain: str, holders: Sequence[Holder]) -> bytes:
    """The root secret from the shares of `holders`; DomainError when they are too few."""
    document = read_download(domain)
    by_thumbprint = {thumbprint(h.certificate): h for h in holders}
    shares: list[bytes] = []
    used: set[str] = set()
    for encrypted in document.shares:
        holder = by_thumbprint.get(encrypted.x5t_256)
        if holder is None or encrypted.x5t_256 in used:
            continue
        try:
            shares.append(jwe.decrypt_with_key(encrypted.enc_key, holder.private_key))
        except jwe.JweError as exc:
            raise DomainError(f"a share does not decrypt: {exc}") from None
        used.add(encrypted.x5t_256)
        if len(shares) == document.required:
            break
    if len(shares) < document.required:
        raise DomainError(
            f"the security domain needs {document.required} shares; the keys given open "
            f"{len(shares)}"
        )
    try:
        root = shamir.combine(shares)
    except shamir.ShareError as exc:
        raise DomainError(f"the shares do not combine: {exc}") from None
    # The data must open with the combined root: otherwise the shares are not this domain's.
    open_data(root, document.data, "security domain")
    return root


def restore_blob(domain: str, holders: Sequence[Holder], transfer: x509.Certificate) -> str:
    """The upload body's `value` for the pool whose transfer certificate is `transfer`."""
    document = read_download(domain)
    root = recover_root(domain, holders)
    plaintexts = open_data(root, document.data, "security domain")
    return build_upload(os.urandom(32), transfer, plaintexts)
