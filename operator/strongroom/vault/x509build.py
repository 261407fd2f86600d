"""X.509 for certificates whose private key is in the HSM: self-signed certificates and
signing requests signed there, PKCS#12 and PEM bundles, and reading what a caller brings.

`cryptography` builds a certificate only with a private key it holds, and the vault's
keys are in the HSM. So the certificate (or request) is built and signed with a
throwaway key of the same family, made once per process and used for nothing else;
its to-be-signed part, which holds the real public key and the signature algorithm, is
then signed by the HSM, and the DER is put together again with that signature and
checked against the real public key before it is used.
"""

import base64
import datetime
import hashlib
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ObjectIdentifier

from .certpolicy import PEM, parse_subject
from .errors import BadParameter

Signer = Callable[[str, bytes], Awaitable[bytes]]  # (alg, digest) -> signature from the HSM
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

UPN_OID = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
_HASHES: dict[str, hashes.SHA256 | hashes.SHA384 | hashes.SHA512] = {
    "SHA256": hashes.SHA256(),
    "SHA384": hashes.SHA384(),
    "SHA512": hashes.SHA512(),
}
_CURVE_ALG = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_CURVES = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
_USAGE_FIELDS = {
    "digitalSignature": "digital_signature",
    "nonRepudiation": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
    "keyCertSign": "key_cert_sign",
    "cRLSign": "crl_sign",
    "encipherOnly": "encipher_only",
    "decipherOnly": "decipher_only",
}
_throwaway: dict[str, PrivateKey] = {}
MAX_CHAIN = 10


def signature_alg(kty: str, crv: str | None) -> str:
    """The JWA algorithm the HSM signs a certificate of this key with."""
    if kty.startswith("RSA"):
        return "RS256"
    return _CURVE_ALG[crv or "P-256"]


def _stand_in(family: str) -> PrivateKey:
    """The throwaway key that signs before the HSM does: its signature is discarded."""
    if family not in _throwaway:
        _throwaway[family] = (
            rsa.generate_private_key(65537, 2048)
            if family == "RSA"
            else ec.generate_private_key(ec.SECP256R1())
        )
    return _throwaway[family]


def public_key(kty: str, crv: str | None, public: dict[str, str]) -> PublicKey:
    """The public key of a key version's stored parts (hex)."""
    if kty.startswith("RSA"):
        return rsa.RSAPublicNumbers(int(public["e"], 16), int(public["n"], 16)).public_key()
    curve = _CURVES[crv or "P-256"]
    return ec.EllipticCurvePublicNumbers(
        int(public["x"], 16), int(public["y"], 16), curve
    ).public_key()


def _der_items(der: bytes) -> list[bytes]:
    """The elements (whole TLVs) inside the outer SEQUENCE of a DER structure."""

    def header(at: int) -> tuple[int, int]:
        first = der[at + 1]
        if first < 0x80:
            return 2, first
        count = first & 0x7F
        return 2 + count, int.from_bytes(der[at + 2 : at + 2 + count], "big")

    size, _ = header(0)
    at, items = size, []
    while at < len(der):
        head, length = header(at)
        items.append(der[at : at + head + length])
        at += head + length
    return items


def _der(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


async def _hsm_signed(tbs: bytes, template_der: bytes, alg: str, sign: Signer) -> bytes:
    """`template_der` (signed by the stand-in) with the HSM's signature over `tbs`."""
    hash_name = "SHA" + alg[2:]
    digest = hashlib.new(hash_name.lower(), tbs).digest()
    signature = await sign(alg, digest)
    if alg.startswith("ES"):
        half = len(signature) // 2
        signature = encode_dss_signature(
            int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
        )
    algorithm = _der_items(template_der)[1]
    return _der(0x30, tbs + algorithm + _der(0x03, b"\x00" + signature))


def _general_names(sans: dict[str, list[str]]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    names += [x509.DNSName(n) for n in sans.get("dns_names", [])]
    names += [x509.RFC822Name(n) for n in sans.get("emails", [])]
    names += [x509.OtherName(UPN_OID, _der(0x0C, n.encode())) for n in sans.get("upns", [])]
    names += [x509.IPAddress(ipaddress.ip_address(n)) for n in sans.get("ipAddresses", [])]
    names += [x509.UniformResourceIdentifier(n) for n in sans.get("uris", [])]
    return names


def _extensions(x509_props: dict[str, Any]) -> list[tuple[x509.ExtensionType, bool]]:
    out: list[tuple[x509.ExtensionType, bool]] = []
    sans = _general_names(x509_props.get("sans", {}))
    if sans:
        out.append((x509.SubjectAlternativeName(sans), False))
    usage = set(x509_props.get("key_usage", []))
    if usage:
        flags = {field: name in usage for name, field in _USAGE_FIELDS.items()}
        out.append((x509.KeyUsage(**flags), True))
    ekus = x509_props.get("ekus", [])
    if ekus:
        out.append((x509.ExtendedKeyUsage([ObjectIdentifier(o) for o in ekus]), False))
    return out


def _subject(x509_props: dict[str, Any]) -> x509.Name:
    subject = x509_props.get("subject") or ""
    return parse_subject(subject) if subject else x509.Name([])


def add_months(moment: datetime.datetime, months: int) -> datetime.datetime:
    month = moment.month - 1 + months
    year, month = moment.year + month // 12, month % 12 + 1
    days = [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28, 31, 30, 31,
            30, 31, 31, 30, 31, 30, 31][month - 1]  # fmt: skip
    return moment.replace(year=year, month=month, day=min(moment.day, days))


async def self_signed(
    policy: dict[str, Any], key: PublicKey, serial: bytes, sign: Signer, now: int
) -> x509.Certificate:
    """A certificate for `key` signed by its own private key in the HSM."""
    props = policy["x509_props"]
    kty = policy["key_props"]["kty"]
    alg = signature_alg(kty, policy["key_props"].get("crv"))
    start = datetime.datetime.fromtimestamp(now, datetime.UTC)
    subject = _subject(props)
    ski = x509.SubjectKeyIdentifier.from_public_key(key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key)
        .serial_number(int.from_bytes(serial, "big") >> 1 or 1)
        .not_valid_before(start)
        .not_valid_after(add_months(start, props["validity_months"]))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    for extension, critical in _extensions(props):
        builder = builder.add_extension(extension, critical=critical)
    template = builder.sign(_stand_in(kty.removesuffix("-HSM")), _HASHES["SHA" + alg[2:]])
    der = await _hsm_signed(
        template.tbs_certificate_bytes, template.public_bytes(serialization.Encoding.DER), alg, sign
    )
    certificate = x509.load_der_x509_certificate(der)
    certificate.verify_directly_issued_by(certificate)  # the HSM signed with this very key
    return certificate


async def signing_request(
    policy: dict[str, Any], key: PublicKey, sign: Signer
) -> x509.CertificateSigningRequest:
    """A PKCS#10 request for `key` with the policy's subject and extensions."""
    kty = policy["key_props"]["kty"]
    alg = signature_alg(kty, policy["key_props"].get("crv"))
    builder = x509.CertificateSigningRequestBuilder().subject_name(_subject(policy["x509_props"]))
    for extension, critical in _extensions(policy["x509_props"]):
        builder = builder.add_extension(extension, critical=critical)
    # cryptography puts the signer's own public key in a request: the stand-in's is
    # replaced by the real one in the to-be-signed part before the HSM signs it.
    template = builder.sign(_stand_in(kty.removesuffix("-HSM")), _HASHES["SHA" + alg[2:]])
    info = _replace_public_key(template.tbs_certrequest_bytes, key)
    der = await _hsm_signed(info, template.public_bytes(serialization.Encoding.DER), alg, sign)
    request = x509.load_der_x509_csr(der)
    if not request.is_signature_valid:
        raise ValueError("the HSM's signature over the signing request does not verify")
    return request


def _replace_public_key(info: bytes, key: PublicKey) -> bytes:
    """CertificationRequestInfo ::= SEQUENCE { version, subject, subjectPKInfo, attributes }
    with subjectPKInfo replaced by `key`'s."""
    items = _der_items(info)
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _der(0x30, items[0] + items[1] + spki + b"".join(items[3:]))


def secret_value(
    content_type: str,
    certificate: x509.Certificate,
    chain: list[x509.Certificate],
    private: PrivateKey | None,
) -> str:
    """The certificate's secret: PKCS#12 (base64) or PEM, with the private key only when
    it is given (the policy is exportable)."""
    if content_type == PEM:
        parts = []
        if private is not None:
            parts.append(
                private.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode()
            )
        for cert in [certificate, *chain]:
            parts.append(cert.public_bytes(serialization.Encoding.PEM).decode())
        return "".join(parts)
    blob = pkcs12.serialize_key_and_certificates(
        None, private, certificate, chain or None, serialization.NoEncryption()
    )
    return base64.b64encode(blob).decode()


def load_private(der: bytes) -> PrivateKey:
    key = serialization.load_der_private_key(der, None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise BadParameter("only RSA and EC keys are supported")
    return key


def thumbprint(der: bytes) -> bytes:
    return hashlib.sha1(der, usedforsecurity=False).digest()


def parse_chain(raw: object) -> list[x509.Certificate]:
    """A merge's x5c: base64 DER certificates, the leaf first."""
    if not isinstance(raw, list) or not raw or not all(isinstance(c, str) for c in raw):
        raise BadParameter("'x5c' must be a non-empty list of base64 DER certificates")
    if len(raw) > MAX_CHAIN:
        raise BadParameter(f"'x5c' holds at most {MAX_CHAIN} certificates")
    out = []
    for index, text in enumerate(raw):
        try:
            out.append(x509.load_der_x509_certificate(base64.b64decode(text, validate=True)))
        except ValueError:
            raise BadParameter(f"'x5c[{index}]' is not a base64 DER X.509 certificate") from None
    return out


def same_key(certificate: x509.Certificate, key: PublicKey) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(
        certificate.public_key().public_bytes(serialization.Encoding.DER, spki)
        == key.public_bytes(serialization.Encoding.DER, spki)
    )


def key_parts(key: PublicKey) -> tuple[str, int | None, str | None, dict[str, str]]:
    """(family, size, curve, hex parts) of a public key, as a key version stores them."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        return "RSA", key.key_size, None, {"n": n.hex(), "e": e.hex()}
    names = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
    crv = names.get(key.curve.name)
    if crv is None:
        raise BadParameter(f"EC curve {key.curve.name} is not supported")
    size = {"P-256": 32, "P-384": 48, "P-521": 66}[crv]
    point = key.public_numbers()
    return (
        "EC",
        None,
        crv,
        {
            "x": point.x.to_bytes(size, "big").hex(),
            "y": point.y.to_bytes(size, "big").hex(),
        },
    )


def pem_blocks(text: str, kind: str) -> list[bytes]:
    """The DER of every PEM block of this kind ("CERTIFICATE", "PRIVATE KEY") in `text`."""
    out = []
    begin, end = f"-----BEGIN {kind}-----", f"-----END {kind}-----"
    for part in text.split(begin)[1:]:
        body, found, _ = part.partition(end)
        if not found:
            raise BadParameter(f"a PEM {kind} block has no end line")
        try:
            out.append(base64.b64decode("".join(body.split()), validate=True))
        except ValueError:
            raise BadParameter(f"a PEM {kind} block is not base64") from None
    return out


def convert(value: str, source: str, target: str) -> str:
    """A certificate's secret value in the other content type (PKCS#12 <-> PEM)."""
    if source == target:
        return value
    if source == PEM:
        keys = pem_blocks(value, "PRIVATE KEY")
        certs = [x509.load_der_x509_certificate(d) for d in pem_blocks(value, "CERTIFICATE")]
        private = load_private(keys[0]) if keys else None
        return secret_value(target, certs[0], certs[1:], private)
    key, cert, extra = pkcs12.load_key_and_certificates(base64.b64decode(value), None)
    if cert is None:
        raise BadParameter("the certificate's secret holds no certificate")
    if key is not None and not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise BadParameter("only RSA and EC keys are supported")
    return secret_value(target, cert, list(extra), key)
