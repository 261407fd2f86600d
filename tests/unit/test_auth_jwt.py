"""Bearer JWTs that must not verify: the dev token checker (vault/auth.py), the CSI driver's
token verifier (csi/tokens.py) and the module both use (strongroom/jose.py).

The forged tokens are built by hand, as an attacker would: no library would sign them.
"""

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from strongroom import base64url, jose, jwk
from strongroom.csi.tokens import TokenVerifier
from strongroom.vault.auth import DevIssuer
from strongroom.vault.config import SHARED_AUDIENCE, VaultConfig
from strongroom.vault.errors import Unauthorized

PAYMENTS = VaultConfig("payments", ("payments-vault.team-a.svc",), audience="https://payments")
SUBJECT = "system:serviceaccount:team-a:app"
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def claims(audience: str = "https://payments", **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": SUBJECT, "aud": [audience], "iat": now, "nbf": now, "exp": now + 600} | changes


def segment(part: dict[str, Any]) -> str:
    return base64url.encode(json.dumps(part).encode())


def unsigned(header: dict[str, Any], body: dict[str, Any], signature: bytes = b"") -> str:
    return f"{segment(header)}.{segment(body)}.{base64url.encode(signature)}"


def hs256(body: dict[str, Any], secret: bytes, **header: Any) -> str:
    signing_input = f"{segment({'alg': 'HS256', 'typ': 'JWT'} | header)}.{segment(body)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64url.encode(mac)}"


def public_key_secrets(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> list[bytes]:
    """What an attacker would try as the HMAC secret: the public key in its usual forms."""
    public = key.public_key()
    document = jwk.from_public_key(public)
    return [
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        json.dumps(document).encode(),
        json.dumps({"keys": [document]}).encode(),
    ]


def dev_outcome(token: str, issuer: DevIssuer | None = None) -> Any:
    authenticator = (issuer or DevIssuer(EC_KEY)).authenticator()
    try:
        return asyncio.run(authenticator.authenticate(token, PAYMENTS))
    except Unauthorized as exc:
        return exc


def refused(outcome: Any, words: str) -> None:
    assert isinstance(outcome, Unauthorized), outcome
    assert outcome.status == 401 and words in outcome.message, outcome.message


# The dev token checker: DevIssuer's tokens through DevAuthenticator.


def test_a_token_of_the_dev_issuer_is_accepted() -> None:
    token = DevIssuer(EC_KEY).issue(SUBJECT, "https://payments")
    assert dev_outcome(token) == SUBJECT
    assert jose.unverified_claims(token)["aud"] == ["https://payments"]


def test_alg_none_is_refused() -> None:
    body = claims()
    for header in ({"alg": "none"}, {"alg": "none", "typ": "JWT"}, {"alg": "None"}):
        refused(dev_outcome(unsigned(header, body)), "not a JWT")  # no signature segment
        refused(dev_outcome(unsigned(header, body, b"x")), "algorithm")
    # Even a key list that names `none` itself cannot make it verify.
    key = jose.VerificationKey(EC_KEY.public_key(), algorithms=("none",))
    with pytest.raises(jose.TokenRefused, match="algorithm"):
        jose.verify(unsigned({"alg": "none"}, body, b"x"), [key], ["https://payments"])


def test_hs256_with_the_public_key_as_the_secret_is_refused() -> None:
    for secret in public_key_secrets(EC_KEY):
        refused(dev_outcome(hs256(claims(), secret)), "algorithm")
    key = jose.VerificationKey(EC_KEY.public_key(), algorithms=("HS256",))
    with pytest.raises(jose.TokenRefused, match="algorithm"):
        jose.verify(hs256(claims(), public_key_secrets(EC_KEY)[0]), [key], ["https://payments"])


def test_a_token_expired_beyond_the_leeway_is_refused() -> None:
    issuer = DevIssuer(EC_KEY)
    issued = time.time() - jose.LEEWAY_SECONDS - 600
    expired = issuer.issue(SUBJECT, "https://payments", ttl=300, now=issued)
    refused(dev_outcome(expired, issuer), "expired")
    # Verified, a token has no leeway on exp at all: the leeway is for nbf and iat.
    key = jose.VerificationKey(EC_KEY.public_key())
    just_expired = jose.sign(claims(exp=int(time.time()) - 5), EC_KEY)
    with pytest.raises(jose.TokenRefused, match="expired"):
        jose.verify(just_expired, [key], ["https://payments"])


def test_a_token_for_another_audience_is_refused() -> None:
    issuer = DevIssuer(EC_KEY)
    for audience in ("https://ledger", "https://kubernetes.default.svc", "payments"):
        refused(dev_outcome(issuer.issue(SUBJECT, audience), issuer), "another audience")
    for body in (claims(aud=[]), {k: v for k, v in claims().items() if k != "aud"}):
        refused(dev_outcome(jose.sign(body, EC_KEY)), "another audience")
    # The shared audience is accepted (no namespace is configured here).
    assert dev_outcome(issuer.issue(SUBJECT, SHARED_AUDIENCE), issuer) == SUBJECT


def test_a_token_not_valid_yet_beyond_the_leeway_is_refused() -> None:
    later = int(time.time()) + jose.LEEWAY_SECONDS + 300
    refused(dev_outcome(jose.sign(claims(nbf=later), EC_KEY)), "not valid yet")
    soon = int(time.time()) + 10  # within the leeway: the issuer's clock may be ahead
    assert dev_outcome(jose.sign(claims(nbf=soon, iat=soon), EC_KEY)) == SUBJECT


def test_forged_and_misfit_tokens_are_refused() -> None:
    genuine = DevIssuer(EC_KEY).issue(SUBJECT, "https://payments")
    header, body, signature = genuine.split(".")
    tampered = segment(json.loads(base64url.decode(body)) | {"sub": "dev:admin"})
    refused(dev_outcome(f"{header}.{tampered}.{signature}"), "signature")
    refused(dev_outcome(f"{header}.{body}.{base64url.encode(bytes(64))}"), "signature")
    other_issuer = DevIssuer(ec.generate_private_key(ec.SECP256R1()))
    refused(dev_outcome(other_issuer.issue(SUBJECT, "https://payments")), "signature")
    # ES384 on a P-256 key, RS256 against an EC key: not the key's algorithms.
    refused(dev_outcome(jose.sign(claims(), ec.generate_private_key(ec.SECP384R1()))), "algorithm")
    refused(dev_outcome(jose.sign(claims(), RSA_KEY)), "algorithm")
    # Claims the library would coerce are refused: exp must be an integer, sub a name.
    refused(dev_outcome(jose.sign(claims(exp=str(int(time.time()) + 600)), EC_KEY)), "malformed")
    refused(dev_outcome(jose.sign(claims(sub=""), EC_KEY)), "names no user")


def test_size_and_shape_are_checked_before_anything_else() -> None:
    big = jose.sign(claims(padding="x" * jose.MAX_TOKEN_BYTES), EC_KEY)
    refused(dev_outcome(big), f"larger than {jose.MAX_TOKEN_BYTES} bytes")
    genuine = DevIssuer(EC_KEY).issue(SUBJECT, "https://payments")
    for token in (genuine + "=", genuine.replace(".", ".."), genuine + ".x", " " + genuine):
        refused(dev_outcome(token), "not a JWT")


# The CSI driver's verifier: a JWKS, kids, RSA and EC keys.


def rs256(body: dict[str, Any], key: rsa.RSAPrivateKey, kid: str | None = None) -> str:
    header = {"alg": "RS256", "typ": "JWT"} | ({"kid": kid} if kid else {})
    signing_input = f"{segment(header)}.{segment(body)}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{base64url.encode(signature)}"


def verifier(*keys: dict[str, Any]) -> TokenVerifier:
    return TokenVerifier({"keys": list(keys)}, SHARED_AUDIENCE)


def test_the_csi_verifier_checks_an_issuers_rsa_tokens() -> None:
    public = jwk.from_public_key(RSA_KEY.public_key()) | {"kid": "k1", "alg": "RS256"}
    check = verifier(public)
    body = claims(SHARED_AUDIENCE)
    assert check.subject(rs256(body, RSA_KEY, kid="k1")) == SUBJECT
    assert check.subject(rs256(body, RSA_KEY, kid="k2")) is None  # no key of that kid
    assert check.subject(rs256(body, RSA_KEY)) is None  # a kid'd key needs the kid
    assert check.subject(rs256(claims("https://payments"), RSA_KEY, kid="k1")) is None
    expired = claims(SHARED_AUDIENCE, exp=int(time.time()) - jose.LEEWAY_SECONDS - 60)
    assert check.subject(rs256(expired, RSA_KEY, kid="k1")) is None
    assert check.subject(unsigned({"alg": "none", "kid": "k1"}, body, b"x")) is None
    for secret in public_key_secrets(RSA_KEY):
        assert check.subject(hs256(body, secret, kid="k1")) is None
    # A JWK that names its algorithm allows that one only.
    assert check.subject(jose.sign(body, RSA_KEY, kid="k1")) == SUBJECT  # RS256
    only_rs512 = verifier(jwk.from_public_key(RSA_KEY.public_key()) | {"alg": "RS512"})
    assert only_rs512.subject(rs256(body, RSA_KEY)) is None


def test_the_csi_verifier_uses_only_public_signing_keys_it_knows() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - to be refused
    body = claims(SHARED_AUDIENCE)
    check = verifier(
        {"kty": "oct", "k": base64url.encode(b"secret")},
        jwk.from_public_key(EC_KEY.public_key()) | {"use": "enc"},
        {"kty": "EC", "crv": "P-256", "x": "AQ", "y": "AQ"},  # not on the curve
        jwk.from_public_key(weak.public_key()),
    )
    assert check.subject(jose.sign(body, EC_KEY)) is None
    assert check.subject(hs256(body, b"secret")) is None
    assert check.subject(rs256(body, weak)) is None  # under 2048 bits
    assert (
        verifier(jwk.from_public_key(EC_KEY.public_key())).subject(jose.sign(body, EC_KEY))
        == SUBJECT
    )


def test_the_dev_issuers_jwks_verifies_its_tokens_in_the_csi_verifier() -> None:
    issuer = DevIssuer(EC_KEY)
    check = TokenVerifier(issuer.jwks(), SHARED_AUDIENCE)
    assert check.subject(issuer.issue(SUBJECT, SHARED_AUDIENCE)) == SUBJECT
    assert check.subject(issuer.issue(SUBJECT, "https://payments")) is None


# The JWK and base64url modules.


@pytest.mark.parametrize(
    "key",
    [
        RSA_KEY.public_key(),
        EC_KEY.public_key(),
        ec.generate_private_key(ec.SECP384R1()).public_key(),
        ec.generate_private_key(ec.SECP521R1()).public_key(),
    ],
    ids=["RSA", "P-256", "P-384", "P-521"],
)
def test_public_jwks_round_trip(key: jwk.PublicKey) -> None:
    document = jwk.from_public_key(key)
    assert "d" not in document
    assert jwk.public_key(document).public_numbers() == key.public_numbers()
    hsm = document | {"kty": document["kty"] + "-HSM", "kid": "https://v/keys/k/1"}
    assert jwk.public_key(hsm).public_numbers() == key.public_numbers()


def test_a_jwk_with_private_members_gives_the_public_key_only() -> None:
    numbers = EC_KEY.private_numbers()
    document = jwk.from_public_key(EC_KEY.public_key())
    private = document | {"d": base64url.encode_uint(numbers.private_value, 32)}
    assert isinstance(jwk.public_key(private), ec.EllipticCurvePublicKey)
    assert jwk.public_members(private | {"p": "AQ"}) == document


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"kty": "oct", "k": "AQ"},
        {"kty": "RSA", "e": "AQAB"},
        {"kty": "RSA", "n": "a+b/", "e": "AQAB"},
        {"kty": "RSA", "n": "", "e": "AQAB"},
        {"kty": "RSA", "n": 5, "e": "AQAB"},
        {"kty": "EC", "crv": "P-256K", "x": "AQ", "y": "AQ"},
        {"kty": "EC", "crv": "P-256", "x": "AQ", "y": "AQ"},
        {"kty": "EC", "crv": "P-256", "x": base64url.encode(bytes(33)), "y": "AQ"},
    ],
)
def test_what_is_no_public_jwk_is_refused(document: dict[str, Any]) -> None:
    with pytest.raises(jwk.JwkError):
        jwk.public_key(document)


def test_base64url_is_strict_about_its_alphabet() -> None:
    assert base64url.decode(base64url.encode(b"\xfb\xff")) == b"\xfb\xff"
    assert base64url.encode(b"\xfb\xff") == "-_8"
    assert base64url.decode("-_8=") == b"\xfb\xff"
    for bad in ("+/8", "-_8 ", "-_\n8", "A", "-_8===", "=AA"):
        with pytest.raises(base64url.Base64UrlError):
            base64url.decode(bad)
    assert base64url.encode_uint(65537) == "AQAB"
    assert base64url.encode_uint(1, 4) == "AAAAAQ"
    assert base64url.decode_uint("AAAAAQ") == 1
    with pytest.raises(base64url.Base64UrlError):
        base64url.decode_uint("")
