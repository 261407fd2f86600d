"""What of a security domain must never be seen outside the holders' hands, as the strings a
log, an Event or a status could carry it in: the root secret, each decrypted share, the pool
secret the domain protects, and the holders' private keys."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from strongroom.securitydomain import jwe
from strongroom.securitydomain.document import open_data, read_download, thumbprint
from strongroom.securitydomain.offline import Holder, recover_root


def encodings(secret: bytes) -> list[str]:
    """The forms a secret could be written in: hex, base64, base64url (unpadded), and the text
    itself when it is text. Only forms long enough to mean something are kept."""
    forms = {
        secret.hex(),
        base64.b64encode(secret).decode().rstrip("="),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
    }
    try:
        forms.add(secret.decode())
    except UnicodeDecodeError:
        pass
    return sorted(form for form in forms if len(form) >= 16)


def canaries(domain: str, certificates: Sequence[Path], keys: Sequence[Path]) -> dict[str, bytes]:
    """Each secret of the domain by what it is (every holder's share, the root, the pool's
    protected items, each private key's parts), recovered the way the holders would."""
    holders = []
    for certificate_path, key_path in zip(certificates, keys, strict=True):
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        holders.append(Holder(x509.load_pem_x509_certificate(certificate_path.read_bytes()), key))
    found: dict[str, bytes] = {}
    root = recover_root(domain, holders)
    found["root secret"] = root
    document = read_download(domain)
    by_thumbprint = {thumbprint(h.certificate): h for h in holders}
    for i, share in enumerate(document.shares):
        holder = by_thumbprint[share.x5t_256]
        found[f"share {i}"] = jwe.decrypt_with_key(share.enc_key, holder.private_key)
    for tag, plaintext in open_data(root, document.data, "security domain").items():
        found[f"item {tag}"] = plaintext
    for i, holder in enumerate(holders):
        numbers = holder.private_key.private_numbers()
        size = (holder.private_key.key_size + 7) // 8
        found[f"holder {i} private exponent"] = numbers.d.to_bytes(size, "big")
        found[f"holder {i} prime"] = numbers.p.to_bytes(size // 2, "big")
        pem = holder.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # A line of the PEM body, as a log would carry a piece of it.
        found[f"holder {i} PEM line"] = pem.splitlines()[5]
    return found


def leaks(text: str, secrets: dict[str, bytes]) -> list[str]:
    """Which of the secrets `text` holds, in any of their encodings."""
    return [
        what for what, secret in secrets.items() if any(form in text for form in encodings(secret))
    ]
