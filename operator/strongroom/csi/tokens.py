"""Local verification of ServiceAccount tokens, so that pods of one subject can share a fetch.

The keys come from the cluster's issuer (its JWKS document, which the API server
serves at /openid/v1/jwks) or, in dev, from a file. Verification here only
decides whether two pods may share a cached object; the vault itself checks
every token it is sent.
"""

import base64
import json
import time
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
_HASHES: dict[str, hashes.HashAlgorithm] = {
    "256": hashes.SHA256(),
    "384": hashes.SHA384(),
    "512": hashes.SHA512(),
}


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int(text: str) -> int:
    return int.from_bytes(_b64(text), "big")


def public_key(jwk: dict[str, Any]) -> Any:
    if jwk.get("kty") == "RSA":
        return rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()
    if jwk.get("kty") == "EC":
        curve = _CURVES[jwk["crv"]]
        return ec.EllipticCurvePublicNumbers(_int(jwk["x"]), _int(jwk["y"]), curve).public_key()
    raise ValueError(f"unsupported JWK type {jwk.get('kty')!r}")


class TokenVerifier:
    def __init__(self, jwks: dict[str, Any], audience: str) -> None:
        self._keys: list[tuple[str | None, Any]] = []
        for jwk in jwks.get("keys", []):
            try:
                self._keys.append((jwk.get("kid"), public_key(jwk)))
            except (KeyError, ValueError):
                continue
        self._audience = audience

    @classmethod
    def from_file(cls, path: Path, audience: str) -> "TokenVerifier":
        return cls(json.loads(path.read_text()), audience)

    def subject(self, token: str) -> str | None:
        """The token's verified subject, or None when it cannot be verified here."""
        try:
            header_b64, claims_b64, signature_b64 = token.split(".")
            header = json.loads(_b64(header_b64))
            claims = json.loads(_b64(claims_b64))
            signature = _b64(signature_b64)
        except (ValueError, TypeError):
            return None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return None
        alg = str(header.get("alg", ""))
        signed = f"{header_b64}.{claims_b64}".encode()
        if not any(
            self._verify(key, alg, signed, signature)
            for kid, key in self._keys
            if kid in (None, header.get("kid"))
        ):
            return None
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else audiences
        if not isinstance(audiences, list) or self._audience not in audiences:
            return None
        expires = claims.get("exp")
        if not isinstance(expires, int) or expires < time.time():
            return None
        subject = claims.get("sub")
        return subject if isinstance(subject, str) and subject else None

    @staticmethod
    def _verify(key: Any, alg: str, signed: bytes, signature: bytes) -> bool:
        chosen = _HASHES.get(alg[2:])
        if chosen is None:
            return False
        try:
            if alg.startswith("RS") and isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, signed, padding.PKCS1v15(), chosen)
                return True
            if alg.startswith("ES") and isinstance(key, ec.EllipticCurvePublicKey):
                half = len(signature) // 2
                der = encode_dss_signature(
                    int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
                )
                key.verify(der, signed, ec.ECDSA(chosen))
                return True
        except InvalidSignature:
            return False
        return False
