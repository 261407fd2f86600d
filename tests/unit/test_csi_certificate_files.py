"""A certificate's files come from one fetched version of its secret: the chain leaf first,
the private key only when the secret holds one, a PKCS#12 as the secret holds it."""

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from strongroom.csi.fetch import FetchError, render_files
from strongroom.csi.volume import parse_volume
from tests.unit.test_csi_volume import volume


def _issued(name: str, issuer: Any = None) -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_key, signer_name = (key, subject) if issuer is None else (issuer[0], issuer[1].subject)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(signer_key, hashes.SHA256())
    )
    return key, cert


CA = _issued("ca")
LEAF_KEY, LEAF = _issued("leaf", CA)
KID = "https://v-vault.ns.svc/keys/web/0123"


def pem_of(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem() -> bytes:
    return LEAF_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def pfx_body(with_key: bool) -> dict[str, Any]:
    blob = pkcs12.serialize_key_and_certificates(
        None, LEAF_KEY if with_key else None, LEAF, [CA[1]], serialization.NoEncryption()
    )
    value = base64.b64encode(blob).decode()
    return {"value": value, "contentType": "application/x-pkcs12", "kid": KID}


def pem_body(with_key: bool) -> dict[str, Any]:
    value = ((key_pem() if with_key else b"") + pem_of(LEAF, CA[1])).decode()
    return {"value": value, "contentType": "application/x-pem-file", "kid": KID}


def obj(**fields: str) -> Any:
    [parsed] = parse_volume(volume([{"kind": "certificate", "name": "web"} | fields])).objects
    return parsed


@pytest.mark.parametrize("body", [pfx_body(True), pem_body(True)], ids=["pkcs12", "pem"])
def test_pem_writes_the_chain_leaf_first_and_the_key(body: dict[str, Any]) -> None:
    files = dict(render_files(obj(), body))
    assert list(files) == ["tls.crt", "tls.key"]
    assert files["tls.crt"] == pem_of(LEAF, CA[1])
    assert files["tls.key"] == key_pem()


@pytest.mark.parametrize("body", [pfx_body(False), pem_body(False)], ids=["pkcs12", "pem"])
def test_without_a_key_in_the_secret_only_the_chain_is_written(body: dict[str, Any]) -> None:
    assert render_files(obj(), body) == [("tls.crt", pem_of(LEAF, CA[1]))]
    with pytest.raises(FetchError) as refused:
        render_files(obj(keyPath="tls.key"), body)
    assert refused.value.status == 400 and "not exportable" in str(refused.value)


def test_pfx_is_the_secret_as_it_holds_it_or_built_from_pem() -> None:
    body = pfx_body(True)
    [(path, blob)] = render_files(obj(format="pfx", path="web.pfx"), body)
    assert path == "web.pfx" and blob == base64.b64decode(body["value"])
    [(_, built)] = render_files(obj(format="pfx", path="web.pfx"), pem_body(True))
    key, leaf, extra = pkcs12.load_key_and_certificates(built, None)
    assert key is not None and leaf == LEAF and extra == [CA[1]]


def test_a_secret_that_is_no_certificates_is_refused() -> None:
    for body in (
        {"value": "x", "contentType": "text/plain"},
        pem_body(True) | {"kid": None},
    ):
        with pytest.raises(FetchError, match="not a certificate's secret"):
            render_files(obj(), body)
    with pytest.raises(FetchError) as refused:
        render_files(obj(), pfx_body(True) | {"value": "bm90IGEgcGZ4"})
    assert refused.value.status == 502
