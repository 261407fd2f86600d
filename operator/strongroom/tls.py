"""Certificates: a small CA (the dev CA, the operator's CA for pool endpoints and its client
CA), what it issues, and a vault server's live TLS context whose certificate can be replaced.
"""

import datetime
import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The operator's identity towards pools: the subject CN of its client certificate.
OPERATOR_CLIENT_NAME = "strongroom-operator"


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca(common_name: str, days: int = 3650) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue_server_cert(ca: Issued, hosts: list[str], days: int = 365) -> Issued:
    """A certificate for exactly these host names (or IP addresses): no wildcard is added."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return _issue(
        ca,
        hosts[0],
        days,
        ExtendedKeyUsageOID.SERVER_AUTH,
        x509.SubjectAlternativeName(names),
    )


def issue_client_cert(ca: Issued, name: str, days: int) -> Issued:
    """A TLS client certificate: subject CN `name`, for client authentication only."""
    return _issue(ca, name, days, ExtendedKeyUsageOID.CLIENT_AUTH, None)


def _issue(
    ca: Issued,
    common_name: str,
    days: int,
    usage: x509.ObjectIdentifier,
    alt_names: x509.SubjectAlternativeName | None,
) -> Issued:
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if alt_names is not None:
        builder = builder.add_extension(alt_names, critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def write_pair(issued: Issued, cert_path: Path, key_path: Path) -> None:
    cert_path.write_bytes(issued.cert_pem)
    key_path.touch(mode=0o600)
    key_path.write_bytes(issued.key_pem)


def load_cert_chain_pem(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """Load a certificate chain and its key held in memory into `context`.

    `ssl` reads them only from a file: an anonymous memory file (memfd) where Linux has one,
    so the key never reaches a disk; else a file in a private directory removed at once.
    """
    pem = cert_pem.rstrip(b"\n") + b"\n" + key_pem
    if hasattr(os, "memfd_create") and Path("/proc/self/fd").is_dir():
        fd = os.memfd_create("strongroom-tls", os.MFD_CLOEXEC)
        try:
            with open(fd, "wb", closefd=False) as handle:
                handle.write(pem)
            context.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="strongroom-tls-") as private:  # mode 0700
        path = Path(private) / "pair.pem"
        path.touch(mode=0o600)
        path.write_bytes(pem)
        context.load_cert_chain(str(path))


@dataclass(frozen=True)
class ServedCertificate:
    """What the server's certificate names, and until when it is valid."""

    dns_names: tuple[str, ...]
    not_after: datetime.datetime


class ServerTls:
    """A vault server's TLS: its certificate, replaceable while it runs, and client certificates
    asked for (not required) and verified against the client CA only.

    A replaced certificate serves every new handshake; connections already open keep theirs.
    """

    def __init__(self, client_ca: Path | None) -> None:
        # Not create_default_context: it would trust the system's CAs for client certificates.
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        if client_ca is not None:
            self.context.load_verify_locations(cafile=str(client_ca))
            # Asked for, not required: workloads come with bearer tokens and no certificate.
            # A certificate that is sent and does not verify fails the handshake.
            self.context.verify_mode = ssl.CERT_OPTIONAL
        self.verifies_clients = client_ca is not None
        self.served: ServedCertificate | None = None
        self._key_kind = ""

    @classmethod
    def from_files(cls, cert: Path, key: Path, client_ca: Path | None) -> "ServerTls":
        tls = cls(client_ca)
        tls.replace(cert.read_bytes(), key.read_bytes())
        return tls

    def replace(self, cert_pem: bytes, key_pem: bytes) -> ServedCertificate:
        """Serve this chain and key from the next handshake on; ValueError says what is wrong
        (never with key material in it)."""
        served, kind = _check_pair(cert_pem, key_pem, self._key_kind)
        try:
            load_cert_chain_pem(self.context, cert_pem, key_pem)
        except ssl.SSLError:
            raise ValueError("the certificate and key cannot be loaded") from None
        self.served, self._key_kind = served, kind
        return served


def _check_pair(cert_pem: bytes, key_pem: bytes, key_kind: str) -> tuple[ServedCertificate, str]:
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise ValueError("'certificate' is not a PEM certificate chain") from None
    try:
        key = serialization.load_pem_private_key(key_pem, None)
    except (ValueError, TypeError):
        raise ValueError("'privateKey' is not an unencrypted PEM private key") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        kind = "EC"
    elif isinstance(key, rsa.RSAPrivateKey):
        kind = "RSA"
    else:
        raise ValueError("the private key must be an EC or RSA key")
    # OpenSSL keeps one certificate per key type: a second type would serve beside the first.
    if key_kind and kind != key_kind:
        raise ValueError(f"the private key must be an {key_kind} key like the one served now")
    leaf = chain[0]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ) != key.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise ValueError("the certificate does not belong to the private key")
    now = datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc <= now:
        raise ValueError("the certificate has expired")
    if leaf.not_valid_before_utc > now + datetime.timedelta(minutes=5):
        raise ValueError("the certificate is not valid yet")
    try:
        alt = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise ValueError("the certificate names no host (no subjectAltName)") from None
    names = tuple(alt.get_values_for_type(x509.DNSName))
    return ServedCertificate(names, leaf.not_valid_after_utc), kind
