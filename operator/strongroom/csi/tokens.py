"""Local verification of ServiceAccount tokens, so that pods of one subject can share a fetch.

The keys come from the cluster's issuer (its JWKS document, which the API server
serves at /openid/v1/jwks) or, in dev, from a file. Verification here only
decides whether two pods may share a cached object; the vault itself checks
every token it is sent.
"""

import json
from pathlib import Path
from typing import Any

from .. import jose, jwk


class TokenVerifier:
    def __init__(self, jwks: dict[str, Any], audience: str) -> None:
        self._keys: list[jose.VerificationKey] = []
        for document in jwks.get("keys", []):
            if not isinstance(document, dict):
                continue
            try:
                self._keys.append(jose.VerificationKey.from_jwk(document))
            except jwk.JwkError:
                continue  # not a public signing key this verifier uses
        self._audience = audience

    @classmethod
    def from_file(cls, path: Path, audience: str) -> "TokenVerifier":
        return cls(json.loads(path.read_text()), audience)

    def subject(self, token: str) -> str | None:
        """The token's verified subject, or None when it cannot be verified here."""
        try:
            claims = jose.verify(token, self._keys, (self._audience,), leeway=jose.LEEWAY_SECONDS)
        except jose.TokenRefused:
            return None
        subject = claims.get("sub")
        return subject if isinstance(subject, str) and subject else None
