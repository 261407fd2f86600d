"""The security domain's formats (strongroom/securitydomain): Shamir over GF(257) with
16-bit share words, the SP 800-108 KDF, A256CBC-HS512 compact JWEs against an independent
implementation built here from `cryptography`'s primitives, the published vectors, and the
download and upload documents with every refusal."""

import base64
import datetime
import hashlib
import hmac
import itertools
import json
import os
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID

from strongroom import base64url
from strongroom.securitydomain import document, jwe, kdf, offline, shamir

# --- Shamir over GF(257) -----------------------------------------------------------------

# The notes' vector: secret 007fff80, M = 3, per byte (a1, a2) = (2,1), (0,256), (200,100), (5,3).
VECTOR_SHARES = ["03027e0229028802", "08047b041b049604", "0f067606d506aa06", "18086f085508c408"]


def test_the_shares_of_the_published_vector() -> None:
    draws = iter([2, 1, 0, 256, 200, 100, 5, 3])
    shares = shamir.split(bytes.fromhex("007fff80"), 3, 4, coefficient=lambda: next(draws))
    assert [s.hex() for s in shares] == VECTOR_SHARES


@pytest.mark.parametrize("chosen", list(itertools.permutations(range(4), 3)))
def test_any_three_vector_shares_in_any_order_combine(chosen: tuple[int, ...]) -> None:
    shares = [bytes.fromhex(VECTOR_SHARES[i]) for i in chosen]
    assert shamir.combine(shares) == bytes.fromhex("007fff80")


def test_a_share_word_is_the_index_over_nine_bits_of_value_little_endian() -> None:
    share = shamir.split(b"\xff" * 4, 2, 3)[2]
    for i in range(0, len(share), 2):
        word = int.from_bytes(share[i : i + 2], "little")
        assert word >> 9 == 3 and (word & 0x1FF) < 257


@pytest.mark.parametrize(("required", "count"), [(2, 3), (3, 5), (5, 10), (10, 10)])
def test_every_quorum_of_a_random_split_gives_the_secret(required: int, count: int) -> None:
    secret = os.urandom(32)
    shares = shamir.split(secret, required, count)
    assert len(shares) == count and all(len(s) == 64 for s in shares)
    for chosen in itertools.islice(itertools.combinations(shares, required), 30):
        assert shamir.combine(list(chosen)) == secret


def test_fewer_shares_than_the_quorum_do_not_give_the_secret() -> None:
    secret = os.urandom(32)
    shares = shamir.split(secret, 3, 5)
    for chosen in itertools.combinations(shares, 2):
        try:
            assert shamir.combine(list(chosen)) != secret
        except shamir.ShareError:
            pass  # a byte out of range: no secret either


def test_every_byte_has_its_own_coefficients() -> None:
    """A constant secret must not give constant shares (the CLI's reused coefficients do)."""
    shares = shamir.split(b"\x00" * 32, 2, 3)
    values = {int.from_bytes(shares[0][i : i + 2], "little") & 0x1FF for i in range(0, 64, 2)}
    assert len(values) > 1


def test_shares_that_are_no_shares_are_refused() -> None:
    a, b, _ = shamir.split(os.urandom(8), 2, 3)
    with pytest.raises(shamir.ShareError, match="same index"):
        shamir.combine([a, a])
    with pytest.raises(shamir.ShareError, match="different lengths"):
        shamir.combine([a, b[:-2]])
    with pytest.raises(shamir.ShareError, match="more than one share index"):
        shamir.combine([a[:2] + b[2:], b])
    with pytest.raises(shamir.ShareError):
        shamir.combine([a])
    with pytest.raises(shamir.ShareError):
        shamir.split(b"x", 1, 3)
    with pytest.raises(shamir.ShareError):
        shamir.split(b"x", 4, 3)


# --- SP 800-108 ----------------------------------------------------------------------------


def test_the_kdf_gives_the_published_vector() -> None:
    out = kdf.sp800_108(b"A" * 32, b"label", b"context", 256)
    assert out.hex() == "f0ca51f6308791404bf68b56024ee7c64d6c737716f81d47e1e68b5c4e399575"


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        (
            "hsm_backup",
            "2d34f55a1dd64e68d793ce19439e032e913bc2c83a99237a33c1bde888fb91da"
            "91626f37c72aaff2d718d3e7a37f0a39417a66839669da3c76fe4336aec9747c",
        ),
        (
            "x",
            "8e510787ae968b58d5fc848db542e5792b12d6ed9417e0c102ddb90ada1c7940"
            "fd8b877b2c8f8eff9e2c96df8fabefbd9d5a8c2f722c2567d0f03eaacc0b568b",
        ),
    ],
)
def test_the_data_key_of_a_tag(tag: str, expected: str) -> None:
    assert kdf.data_key(bytes(range(32)), tag).hex() == expected


def test_the_kdf_is_one_hmac_block_as_written_out() -> None:
    key = os.urandom(32)
    block = b"\x00\x00\x00\x01" + b"tag" + b"\x00" + b"\x00\x00\x02\x00"
    assert kdf.data_key(key, "tag") == hmac.new(key, block, hashlib.sha512).digest()


# --- A256CBC-HS512 and compact JWE ------------------------------------------------------------

RFC_KEY = bytes(range(64))
RFC_PLAIN = (
    b"A cipher system must not be required to be secret, and it must be able to fall into "
    b"the hands of the enemy without inconvenience"
)
RFC_IV = bytes.fromhex("1af38c2dc2b96ffdd866940923 41bc04".replace(" ", ""))
RFC_AAD = b"The second principle of Auguste Kerckhoffs"
RFC_CIPHERTEXT = bytes.fromhex(
    "4affaaadb78c31c5da4b1b590d10ffbd3dd8d5d302423526912da037ecbcc7bd"
    "822c301dd67c373bccb584ad3e9279c2e6d12a1374b77f077553df829410446b"
    "36ebd97066296ae6427ea75c2e0846a11a09ccf5370dc80bfecbad28c73f09b3"
    "a3b75e662a2594410ae496b2e2e6609e31e6e02cc837f053d21f37ff4f51950b"
    "be2638d09dd7a4930930806d0703b1f6"
)
RFC_TAG = bytes.fromhex("4dd3b4c088a7f45c216839645b2012bf2e6269a8c56a816dbc1b267761955bc5")


def test_a256cbc_hs512_gives_rfc_7518_appendix_b3() -> None:
    iv, ciphertext, tag = jwe.cbc_hs512_encrypt(RFC_KEY, RFC_PLAIN, RFC_AAD, RFC_IV)
    assert (iv, ciphertext, tag) == (RFC_IV, RFC_CIPHERTEXT, RFC_TAG)
    assert jwe.cbc_hs512_decrypt(RFC_KEY, RFC_IV, RFC_CIPHERTEXT, RFC_TAG, RFC_AAD) == RFC_PLAIN


def test_a_tag_of_another_length_or_value_is_refused_before_decryption() -> None:
    with pytest.raises(jwe.JweError, match="16 bytes, not 32"):
        jwe.cbc_hs512_decrypt(RFC_KEY, RFC_IV, RFC_CIPHERTEXT, RFC_TAG[:16], RFC_AAD)
    bad = bytes([RFC_TAG[0] ^ 1]) + RFC_TAG[1:]
    with pytest.raises(jwe.JweError, match="does not verify"):
        jwe.cbc_hs512_decrypt(RFC_KEY, RFC_IV, RFC_CIPHERTEXT, bad, RFC_AAD)
    with pytest.raises(jwe.JweError, match="does not verify"):
        jwe.cbc_hs512_decrypt(RFC_KEY, RFC_IV, RFC_CIPHERTEXT, RFC_TAG, RFC_AAD + b"!")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _oaep() -> OAEP:
    return OAEP(mgf=MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def independent_decrypt(compact: str, cek: bytes | None, private: Any = None) -> bytes:
    """RFC 7516/7518 written out again from the primitives: no strongroom code."""
    header_b64, key_b64, iv_b64, ct_b64, tag_b64 = compact.split(".")
    if cek is None:
        cek = private.decrypt(_b64d(key_b64), _oaep())
    assert cek is not None
    aad, iv, ciphertext = header_b64.encode(), _b64d(iv_b64), _b64d(ct_b64)
    mac = hmac.new(
        cek[:32], aad + iv + ciphertext + (len(aad) * 8).to_bytes(8, "big"), hashlib.sha512
    )
    assert hmac.compare_digest(mac.digest()[:32], _b64d(tag_b64))
    decryptor = Cipher(algorithms.AES(cek[32:]), modes.CBC(iv)).decryptor()
    unpadder = sym_padding.PKCS7(128).unpadder()
    return (
        unpadder.update(decryptor.update(ciphertext) + decryptor.finalize()) + unpadder.finalize()
    )


def independent_encrypt(header: dict[str, str], cek: bytes, plain: bytes, key: bytes) -> str:
    protected = _b64e(json.dumps(header).encode())
    iv = os.urandom(16)
    padder = sym_padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(cek[32:]), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()
    aad = protected.encode()
    tag = hmac.new(
        cek[:32], aad + iv + ciphertext + (len(aad) * 8).to_bytes(8, "big"), hashlib.sha512
    ).digest()[:32]
    return ".".join([protected, _b64e(key), _b64e(iv), _b64e(ciphertext), _b64e(tag)])


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def test_an_rsa_oaep_256_jwe_opens_independently_and_the_reverse(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    plain = os.urandom(64)
    compact = jwe.encrypt_to_key(rsa_key.public_key(), plain)
    header = json.loads(_b64d(compact.split(".")[0]))
    assert header == {"alg": "RSA-OAEP-256", "enc": "A256CBC-HS512", "kid": "not used"}
    assert independent_decrypt(compact, None, rsa_key) == plain
    cek = os.urandom(64)
    made = independent_encrypt(
        {"alg": "RSA-OAEP-256", "enc": "A256CBC-HS512", "kid": "not used"},
        cek,
        plain,
        rsa_key.public_key().encrypt(cek, _oaep()),
    )
    assert jwe.decrypt_with_key(made, rsa_key) == plain


def test_a_dir_jwe_opens_independently_and_the_reverse() -> None:
    cek, plain = os.urandom(64), os.urandom(1000)
    compact = jwe.encrypt_dir(cek, "strongroom_pool", plain)
    assert compact.split(".")[1] == ""
    assert independent_decrypt(compact, cek) == plain
    made = independent_encrypt({"alg": "dir", "enc": "A256CBC-HS512", "kid": "t"}, cek, plain, b"")
    assert jwe.decrypt_dir(made, cek, "t") == plain
    with pytest.raises(jwe.JweError, match="kid"):
        jwe.decrypt_dir(made, cek, "other")
    wrong_enc = independent_encrypt(
        {"alg": "dir", "enc": "A128CBC-HS256", "kid": "t"}, cek, b"x", b""
    )
    with pytest.raises(jwe.JweError, match="alg dir and enc A256CBC-HS512"):
        jwe.decrypt_dir(wrong_enc, cek, "t")


def test_malformed_jwes_are_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    compact = jwe.encrypt_to_key(rsa_key.public_key(), b"x" * 64)
    parts = compact.split(".")
    for bad in (
        "a.b.c",
        ".".join(parts[:4] + [parts[4][:22]]),  # a 16-byte tag
        ".".join([parts[0], parts[1], parts[2], parts[3][:-2] + "AA", parts[4]]),
        ".".join([_b64e(b'{"alg":"RSA1_5","enc":"A256CBC-HS512"}')] + parts[1:]),
        ".".join(["!!"] + parts[1:]),
    ):
        with pytest.raises(jwe.JweError):
            jwe.decrypt_with_key(bad, rsa_key)
    other = rsa.generate_private_key(65537, 2048)
    with pytest.raises(jwe.JweError, match="does not decrypt"):
        jwe.decrypt_with_key(compact, other)


# --- the documents ----------------------------------------------------------------------------


def make_certificate(
    name: str, bits: int = 2048, key: Any = None
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = key or rsa.generate_private_key(65537, bits)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate, key


@pytest.fixture(scope="module")
def holders() -> list[tuple[x509.Certificate, rsa.RSAPrivateKey]]:
    return [make_certificate(f"holder {i}") for i in range(4)]


def request_of(certs: list[x509.Certificate], required: int = 2) -> dict[str, Any]:
    return {"certificates": [document.certificate_jwk(c) for c in certs], "required": required}


def test_a_certificate_jwk_is_what_the_clients_send(holders: list[Any]) -> None:
    certificate = holders[0][0]
    jwk = document.certificate_jwk(certificate)
    der = certificate.public_bytes(serialization.Encoding.DER)
    assert base64.b64decode(jwk["x5c"][0]) == der
    assert jwk["x5t#S256"] == _b64e(hashlib.sha256(der).digest())
    assert "kid" not in jwk and jwk["alg"] == "RSA-OAEP-256"
    read, required = document.read_certificate_request(
        {
            "certificates": [jwk | {"key_ops": ["sign", "decrypt"]}]
            + [document.certificate_jwk(c) for c, _ in holders[1:3]]
        }
    )
    assert required == 2 and read[0] == certificate


def _refused(body: Any, match: str) -> None:
    with pytest.raises(document.DomainError, match=match):
        document.read_certificate_request(body)


def test_download_requests_outside_the_rules_are_refused(holders: list[Any]) -> None:
    certs = [c for c, _ in holders]
    _refused(request_of(certs[:2]), "3 to 10 certificates, not 2")
    _refused({"certificates": [document.certificate_jwk(certs[0])] * 11}, "not 11")
    _refused(request_of(certs[:3], 1), "from 2 to 10")
    _refused(request_of(certs[:3], 11), "from 2 to 10")
    _refused(request_of(certs[:3], 4), "cannot be more than the number of certificates")
    _refused(request_of(certs[:3], True), "must be an integer")  # type: ignore[arg-type]
    _refused(request_of([certs[0], certs[1], certs[0]]), "1 and 3 are the same certificate")
    small, _ = make_certificate("small", 1024)
    _refused(request_of([small, *certs[:2]]), "1024 bits")
    body = request_of(certs[:3])
    body["certificates"][1]["x5t#S256"] = body["certificates"][0]["x5t#S256"]
    _refused(body, "certificate 2: 'x5t#S256' is not the SHA-256 thumbprint")
    body = request_of(certs[:3])
    body["certificates"][2]["n"] = body["certificates"][0]["n"]
    _refused(body, "certificate 3: 'n' and 'e' are not the key")
    body = request_of(certs[:3])
    body["certificates"][0]["x5c"] = ["not a certificate"]
    _refused(body, "does not hold an X.509 certificate")
    eckey = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec")])
    now = datetime.datetime.now(datetime.UTC)
    ec_cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(eckey.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(eckey, hashes.SHA256())
    )
    body = request_of(certs[:3])
    body["certificates"][0]["x5c"] = [
        base64.b64encode(ec_cert.public_bytes(serialization.Encoding.DER)).decode()
    ]
    _refused(body, "not an RSA key")
    _refused({"certificates": "x"}, "must be a list")
    _refused([], "JSON object")


ITEMS = {"strongroom_pool": b'{"pool": 1}', "other": os.urandom(3000)}


def _download(holders: list[Any], required: int = 2) -> tuple[bytes, str]:
    root = os.urandom(32)
    blob = document.build_download(root, [c for c, _ in holders[:3]], required, ITEMS)
    return root, blob


def test_a_download_document_has_the_managed_hsm_shape(holders: list[Any]) -> None:
    root, blob = _download(holders)
    doc = json.loads(blob)
    assert doc["version"] == 2
    assert doc["SharedKeys"]["key_algorithm"] == "shamir_share"
    assert doc["SharedKeys"]["required"] == 2
    assert doc["EncData"]["kdf"] == "sp108_kdf"
    assert [s["x5t_256"] for s in doc["SharedKeys"]["enc_shares"]] == [
        document.thumbprint(c) for c, _ in holders[:3]
    ]
    # Shares and data open with the independent implementation.
    shares = [
        independent_decrypt(s["enc_key"], None, key)
        for s, (_, key) in zip(doc["SharedKeys"]["enc_shares"], holders[:3], strict=True)
    ]
    assert shamir.combine(shares[1:]) == root
    for item in doc["EncData"]["data"]:
        assert (
            independent_decrypt(item["compact_jwe"], kdf.data_key(root, item["tag"]))
            == (ITEMS[item["tag"]])
        )


@pytest.mark.parametrize("chosen", list(itertools.permutations(range(3), 2)))
def test_any_two_of_three_holders_make_the_upload(
    holders: list[Any], chosen: tuple[int, ...]
) -> None:
    root, blob = _download(holders)
    transfer, transfer_key = make_certificate("transfer", 3072)
    quorum = [offline.Holder(*holders[i]) for i in chosen]
    assert offline.recover_root(blob, quorum) == root
    value = offline.restore_blob(blob, quorum, transfer)
    upload = document.read_upload(value)
    assert upload.x5t_256 == document.thumbprint(transfer)
    key = jwe.decrypt_with_key(upload.enc_key, transfer_key)
    assert len(key) == 32 and key != root
    assert document.open_data(key, upload.data, "upload") == ITEMS
    assert ", " in value  # json.dumps' default spacing, as Azure's clients write it


def test_too_few_or_foreign_holders_make_no_upload(holders: list[Any]) -> None:
    _, blob = _download(holders)
    transfer, _ = make_certificate("transfer")
    with pytest.raises(document.DomainError, match="needs 2 shares; the keys given open 1"):
        offline.restore_blob(blob, [offline.Holder(*holders[0])], transfer)
    with pytest.raises(document.DomainError, match="open 1"):
        offline.restore_blob(
            blob, [offline.Holder(*holders[0]), offline.Holder(*holders[3])], transfer
        )
    with pytest.raises(document.DomainError, match="open 1"):
        offline.restore_blob(blob, [offline.Holder(*holders[0])] * 2, transfer)
    with pytest.raises(document.DomainError, match="not the key of its certificate"):
        offline.Holder(holders[0][0], holders[1][1])


def test_a_tampered_download_makes_no_upload(holders: list[Any]) -> None:
    _, blob = _download(holders)
    transfer, _ = make_certificate("transfer")
    quorum = [offline.Holder(*h) for h in holders[:2]]
    doc = json.loads(blob)
    item = doc["EncData"]["data"][1]
    parts = item["compact_jwe"].split(".")
    parts[3] = ("B" if parts[3][0] != "B" else "C") + parts[3][1:]
    item["compact_jwe"] = ".".join(parts)
    with pytest.raises(document.DomainError, match="'other' does not open: the authentication"):
        offline.restore_blob(json.dumps(doc), quorum, transfer)
    doc = json.loads(blob)
    doc["SharedKeys"]["key_algorithm"] = "split_keys"
    with pytest.raises(document.DomainError, match="shamir_share"):
        offline.restore_blob(json.dumps(doc), quorum, transfer)
    doc = json.loads(blob)
    doc["version"] = 1
    with pytest.raises(document.DomainError, match="version 1"):
        offline.restore_blob(json.dumps(doc), quorum, transfer)


def test_uploads_of_the_wrong_shape_are_refused() -> None:
    for value, match in (
        ("{", "not JSON"),
        ("[]", "JSON object"),
        (json.dumps({"EncData": {}, "SharedKeys": {}}), "no 'WrappedKey'"),
        (json.dumps({"WrappedKey": {"x5t_256": "a"}}), "needs 'x5t_256' and 'enc_key'"),
        (
            json.dumps(
                {"WrappedKey": {"x5t_256": "AAAA", "enc_key": "b"}, "EncData": {"kdf": "x"}}
            ),
            "kdf 'sp108_kdf'",
        ),
        (
            json.dumps(
                {
                    "WrappedKey": {"x5t_256": "AAAA", "enc_key": "b"},
                    "EncData": {"kdf": "sp108_kdf", "data": []},
                }
            ),
            "1 to 16 items",
        ),
    ):
        with pytest.raises(document.DomainError, match=match):
            document.read_upload(value)


def test_a_transfer_key_is_read_from_the_answer_the_jwk_text_or_the_jwk(holders: list[Any]) -> None:
    certificate = holders[0][0]
    jwk = document.certificate_jwk(certificate)
    answer = {"key_format": "jwk", "transfer_key": json.dumps(jwk)}
    for form in (answer, json.dumps(answer), json.dumps(jwk), jwk):
        assert document.read_transfer_key(form) == certificate
    with pytest.raises(document.DomainError, match="'jwk'"):
        document.read_transfer_key({"key_format": "pem", "transfer_key": "x"})


def test_base64url_of_the_library_is_the_one_used() -> None:
    assert base64url.encode(b"\xfb\xff") == "-_8"
