"""`strongroom security-domain`: the holders' offline side of a pool's security domain.

- `jwk CERT.pem`: a certificate as a download request names it.
- `restore-blob`: decrypt a quorum of shares of a downloaded security domain with the
  holders' private keys (PEM files, here on this machine), combine them, and encrypt the
  domain again for the transfer key of the pool to restore; writes the upload's `value`.

Nothing is sent anywhere, and no private key or share is written or printed.
"""

import argparse
import json
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .document import DomainError, certificate_jwk, read_transfer_key
from .offline import Holder, restore_blob


def _certificate(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise DomainError(f"{path} holds no X.509 certificate") from None


def _private_key(path: Path, passphrase: bytes | None) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), passphrase)
    except (ValueError, TypeError):
        raise DomainError(
            f"{path} holds no PEM private key that opens (with --passphrase-file if it is "
            "encrypted)"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DomainError(f"{path} holds no RSA private key")
    return key


def holders(
    cert_paths: list[Path], key_paths: list[Path], passphrase: bytes | None = None
) -> list[Holder]:
    """Each private key with the certificate of its public key, whatever their order."""
    certificates = [_certificate(p) for p in cert_paths]
    out = []
    for path in key_paths:
        key = _private_key(path, passphrase)
        numbers = key.public_key().public_numbers()
        match = [
            c
            for c in certificates
            if isinstance(c.public_key(), rsa.RSAPublicKey)
            and c.public_key().public_numbers() == numbers  # type: ignore[union-attr]
        ]
        if not match:
            raise DomainError(f"no --cert given is the certificate of the key in {path}")
        out.append(Holder(match[0], key))
    return out


def make_restore_blob(
    domain_file: Path,
    transfer_key_file: Path,
    cert_paths: list[Path],
    key_paths: list[Path],
    passphrase: bytes | None = None,
) -> str:
    domain = domain_file.read_text()
    try:
        # A file the Azure CLI wrote holds the document; the SDK's answer may hold it in `value`.
        loaded = json.loads(domain)
    except ValueError:
        raise DomainError(f"{domain_file} is not JSON") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("value"), str):
        domain = loaded["value"]
    transfer = read_transfer_key(transfer_key_file.read_text())
    return restore_blob(domain, holders(cert_paths, key_paths, passphrase), transfer)


def _jwk(args: argparse.Namespace) -> None:
    print(json.dumps(certificate_jwk(_certificate(args.certificate))))


def _restore_blob(args: argparse.Namespace) -> None:
    passphrase = None
    if args.passphrase_file is not None:
        passphrase = args.passphrase_file.read_bytes().rstrip(b"\r\n")
    value = make_restore_blob(args.domain, args.transfer_key, args.cert, args.key, passphrase)
    args.out.write_text(value)
    print(f"wrote the upload blob for the transfer key to {args.out}", file=sys.stderr)


def run(args: argparse.Namespace) -> None:
    try:
        args.action(args)
    except (DomainError, OSError) as exc:
        sys.exit(f"strongroom security-domain: {exc}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action_name", required=True)
    jwk = actions.add_parser("jwk", help="print a certificate as a download request's JWK")
    jwk.add_argument("certificate", type=Path, help="PEM or DER certificate")
    jwk.set_defaults(action=_jwk)
    blob = actions.add_parser(
        "restore-blob",
        help="combine a quorum of shares with their private keys and encrypt the security "
        "domain for a pool's transfer key (offline)",
    )
    blob.add_argument("--domain", type=Path, required=True, help="the downloaded security domain")
    blob.add_argument(
        "--transfer-key",
        type=Path,
        required=True,
        help="the new pool's transfer key: GET /securitydomain/upload's answer, or its JWK",
    )
    blob.add_argument(
        "--cert", type=Path, action="append", required=True, help="a holder's certificate"
    )
    blob.add_argument(
        "--key", type=Path, action="append", required=True, help="a holder's PEM private key"
    )
    blob.add_argument("--passphrase-file", type=Path, help="the passphrase of encrypted keys")
    blob.add_argument("--out", type=Path, required=True, help="where to write the upload blob")
    blob.set_defaults(action=_restore_blob)
