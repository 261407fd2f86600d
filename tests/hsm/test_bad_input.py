"""Bad input gets the right status and an Azure-shaped error, and nothing is stored."""

import base64
import time
from typing import Any

import pytest
import requests

from .conftest import DevServer

API = "?api-version=7.6"


class Raw:
    def __init__(self, dev: DevServer, token: str | None) -> None:
        self.dev = dev
        self.session = requests.Session()
        self.session.verify = dev.ca
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None, query: str = API
    ) -> requests.Response:
        return self.session.request(
            method,
            self.dev.url + path + query,
            json=body,
            data=raw,
            verify=self.dev.ca,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )


@pytest.fixture(scope="module")
def admin(dev: DevServer) -> Raw:
    return Raw(dev, dev.token)


def error_of(response: requests.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"code", "message"} and error["message"]
    return error


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def stored_key_names(admin: Raw) -> set[str]:
    listed = admin.call("GET", "/keys", query=API + "&maxresults=25")
    names = set()
    body = listed.json()
    while True:
        names |= {item["kid"].split("/")[4] for item in body["value"]}
        if not body.get("nextLink"):
            return names
        body = admin.session.get(body["nextLink"], timeout=30, verify=admin.dev.ca).json()


def test_malformed_json_is_rejected_and_nothing_is_stored(admin: Raw) -> None:
    error = error_of(admin.call("POST", "/keys/malformed/create", raw=b'{"kty": "EC"'), 400)
    assert error["code"] == "BadParameter" and "JSON" in error["message"]
    error_of(admin.call("PUT", "/secrets/malformed", raw=b"[1, 2]"), 400)
    assert "malformed" not in stored_key_names(admin)
    assert admin.call("GET", "/secrets/malformed").status_code == 404


@pytest.mark.parametrize(
    "body,fragment",
    [
        ({"kty": "DSA"}, "'kty' must be one of"),
        ({"kty": "RSA", "crv": "P-256"}, "no curve"),
        ({"kty": "RSA", "key_size": 1024}, "key_size"),
        ({"kty": "EC", "crv": "P-256K"}, "crv"),
        ({"kty": "oct-HSM", "key_size": 512}, "key_size"),
        ({"kty": "EC", "key_ops": ["encrypt"]}, "not valid for key type"),
    ],
)
def test_impossible_keys_are_rejected(admin: Raw, body: dict[str, Any], fragment: str) -> None:
    error = error_of(admin.call("POST", "/keys/impossible/create", body), 400)
    assert fragment in error["message"]
    assert "impossible" not in stored_key_names(admin)


def test_crypto_operations_check_algorithm_key_ops_type_and_digest(admin: Raw) -> None:
    ec_key = admin.call(
        "POST", "/keys/bad-ec/create", {"kty": "EC-HSM", "crv": "P-256", "key_ops": ["verify"]}
    ).json()
    version = ec_key["key"]["kid"].rsplit("/", 1)[1]
    digest = b64(b"\x01" * 32)
    unknown = admin.call("POST", f"/keys/bad-ec/{version}/sign", {"alg": "XS256", "value": digest})
    assert "XS256" in error_of(unknown, 400)["message"]
    not_in_ops = admin.call(
        "POST", f"/keys/bad-ec/{version}/sign", {"alg": "ES256", "value": digest}
    )
    assert "key_ops" in error_of(not_in_ops, 403)["message"]
    admin.call("PATCH", f"/keys/bad-ec/{version}", {"key_ops": ["sign", "verify"]})
    wrong_size = admin.call(
        "POST", f"/keys/bad-ec/{version}/sign", {"alg": "ES256", "value": b64(b"\x01" * 20)}
    )
    assert "32-byte digest" in error_of(wrong_size, 400)["message"]
    wrong_curve = admin.call(
        "POST", f"/keys/bad-ec/{version}/sign", {"alg": "ES384", "value": b64(b"\x01" * 48)}
    )
    assert "curve" in error_of(wrong_curve, 400)["message"]
    oct_key = admin.call("POST", "/keys/bad-oct/create", {"kty": "oct-HSM", "key_size": 128})
    oct_version = oct_key.json()["key"]["kid"].rsplit("/", 1)[1]
    cannot = admin.call(
        "POST", f"/keys/bad-oct/{oct_version}/sign", {"alg": "ES256", "value": digest}
    )
    assert error_of(cannot, 403)["code"] == "Forbidden"  # sign is not in an AES key's key_ops
    wrong_size_alg = admin.call(
        "POST", f"/keys/bad-oct/{oct_version}/encrypt", {"alg": "A256GCM", "value": b64(b"data")}
    )
    assert "256-bit key" in error_of(wrong_size_alg, 400)["message"]
    not_b64 = admin.call(
        "POST", f"/keys/bad-oct/{oct_version}/encrypt", {"alg": "A128GCM", "value": "***"}
    )
    assert "base64url" in error_of(not_b64, 400)["message"]


def test_an_oversized_body_is_refused(admin: Raw) -> None:
    error = error_of(admin.call("PUT", "/secrets/huge", {"value": "x" * 400_000}), 413)
    assert error["code"] == "RequestBodyTooLarge"
    assert admin.call("GET", "/secrets/huge").status_code == 404


@pytest.mark.parametrize(
    "name", ["..", "a..b/..", "..%2F..%2Fetc", "a%2Fb", "x" * 200, "a%00b", "under_score", "%2E%2E"]
)
def test_hostile_names_are_refused(admin: Raw, name: str) -> None:
    for method, path, body in (
        ("PUT", f"/secrets/{name}", {"value": "v"}),
        ("POST", f"/keys/{name}/create", {"kty": "EC"}),
    ):
        response = admin.call(method, path, body)
        assert response.status_code in (400, 404, 405), response.text
        # `a..b/..` arrives as /secrets/ (the client removes dot segments), which takes GET.
        refusal = "MethodNotAllowed" if response.status_code == 405 else "BadParameter"
        assert response.json()["error"]["code"] == refusal
    listed = admin.call("GET", "/secrets").json()["value"]
    assert not any("under_score" in item["id"] or ".." in item["id"] for item in listed)


def test_a_missing_token_gets_the_bearer_challenge(dev: DevServer) -> None:
    response = Raw(dev, None).call("GET", "/secrets")
    error_of(response, 401)
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and 'authorization="' in challenge
    assert 'resource="' in challenge


@pytest.mark.parametrize("kind", ["expired", "wrong-audience", "garbage", "forged"])
def test_bad_tokens_are_refused(dev: DevServer, kind: str) -> None:
    if kind == "expired":
        token = dev.issue("dev:admin", ttl=60, now=time.time() - 3600)
    elif kind == "wrong-audience":
        token = dev.issue("dev:admin", audience="https://kubernetes.default.svc")
    elif kind == "garbage":
        token = "not-a-token"
    else:
        header, claims, _ = dev.token.split(".")
        token = f"{header}.{claims}.{b64(b'0' * 64)}"
    response = Raw(dev, token).call("GET", "/secrets")
    error_of(response, 401)
    assert "WWW-Authenticate" in response.headers


def test_callers_without_permission_are_refused(dev: DevServer, admin: Raw) -> None:
    admin.call("PUT", "/secrets/guarded", {"value": "v"})
    reader = Raw(dev, dev.issue("dev:reader"))
    assert reader.call("GET", "/secrets/guarded").status_code == 200
    refused = error_of(reader.call("PUT", "/secrets/guarded", {"value": "overwrite"}), 403)
    assert "set" in refused["message"]
    stranger = Raw(dev, dev.issue("system:serviceaccount:other:app"))
    error_of(stranger.call("GET", "/secrets/guarded"), 403)
    error_of(stranger.call("POST", "/rng", {"count": 8}), 403)
    assert admin.call("GET", "/secrets/guarded").json()["value"] == "v"


def test_unknown_api_versions_and_routes(admin: Raw) -> None:
    assert (
        "not recognized"
        in error_of(admin.call("GET", "/secrets", query="?api-version=1.0"), 400)["message"]
    )
    error_of(admin.call("GET", "/nothing-here"), 404)
    error_of(admin.call("POST", "/rng", {"count": 1000}), 400)
