"""Bad input that fuzzing against Microsoft's Key Vault spec found (schemathesis):
each gets a 4xx in Key Vault's error body, and nothing is stored."""

import asyncio
import base64
import datetime
import json
import uuid
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from strongroom.hsm.client import HsmClient
from strongroom.vault.objects import Attributes, SecretEntry, SecretVersion

from .conftest import DevServer
from .test_bad_input import API, Raw, b64, error_of


@pytest.fixture(scope="module")
def admin(dev: DevServer) -> Raw:
    return Raw(dev, dev.token)


def ok(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def key_version(admin: Raw, name: str, body: dict[str, Any]) -> str:
    created = ok(admin.call("POST", f"/keys/{name}/create", body))
    return str(created["key"]["kid"].rsplit("/", 1)[1])


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def json_error(response: requests.Response, status: int) -> dict[str, str]:
    assert response.headers["Content-Type"].startswith("application/json"), response.text
    return error_of(response, status)


@pytest.mark.parametrize(
    "policy",
    [
        {"attributes": "P90D"},
        {"attributes": ["P90D"]},
        {"attributes": 7},
        {"attributes": {"expiryTime": "P²8D"}},  # "²".isdigit(), but int("²") fails
        {"lifetimeActions": "rotate"},
        {"lifetimeActions": [{"action": {"type": 5}, "trigger": {"timeAfterCreate": "P30D"}}]},
        {"lifetimeActions": [{"action": {"type": ["Rotate"]}, "trigger": {}}]},
        {"lifetimeActions": [{"action": "Rotate", "trigger": {"timeAfterCreate": "P30D"}}]},
        {"lifetimeActions": [{"action": {"type": "Rotate"}, "trigger": "P30D"}]},
        {"lifetimeActions": [{"action": {"type": "Rotate"}, "trigger": []}]},
        {"lifetimeActions": [{"action": {"type": "Rotate"}, "trigger": {"timeAfterCreate": 30}}]},
        {
            "lifetimeActions": [
                {"action": {"type": "Rotate"}, "trigger": {"timeAfterCreate": "P³D"}}
            ]
        },
    ],
)
def test_a_wrong_typed_rotation_policy_is_refused(admin: Raw, policy: dict[str, Any]) -> None:
    key_version(admin, "policy-types", {"kty": "EC"})
    before = ok(admin.call("GET", "/keys/policy-types/rotationpolicy"))
    error = json_error(admin.call("PUT", "/keys/policy-types/rotationpolicy", policy), 400)
    assert error["code"] == "BadParameter"
    assert ok(admin.call("GET", "/keys/policy-types/rotationpolicy")) == before


@pytest.mark.parametrize("expiry", [0, False, [], {}, 30, ["P90D"]])
def test_a_rotation_policy_expiry_time_is_a_string(admin: Raw, expiry: object) -> None:
    key_version(admin, "policy-expiry", {"kty": "EC"})
    put = admin.call(
        "PUT", "/keys/policy-expiry/rotationpolicy", {"attributes": {"expiryTime": expiry}}
    )
    assert "expiryTime" in json_error(put, 400)["message"]
    stored = ok(admin.call("GET", "/keys/policy-expiry/rotationpolicy"))
    assert "expiryTime" not in stored["attributes"]


def test_a_rotation_policy_expiry_time_gives_no_exp_beyond_the_limits(admin: Raw) -> None:
    key_version(admin, "policy-far", {"kty": "EC"})
    # A rotation would set exp = now + expiryTime: far beyond any int64 for this one.
    put = admin.call(
        "PUT",
        "/keys/policy-far/rotationpolicy",
        {"attributes": {"expiryTime": "P99999999999999999999Y"}},
    )
    json_error(put, 400)
    rotated = ok(admin.call("POST", "/keys/policy-far/rotate"))
    assert "exp" not in rotated["attributes"]
    fine = admin.call(
        "PUT", "/keys/policy-far/rotationpolicy", {"attributes": {"expiryTime": "P90D"}}
    )
    assert ok(fine)["attributes"]["expiryTime"] == "P90D"


def test_values_that_do_not_decrypt_are_one_fixed_400(admin: Raw) -> None:
    aes = key_version(admin, "undecryptable-aes", {"kty": "oct-HSM", "key_size": 256})
    rsa = key_version(admin, "undecryptable-rsa", {"kty": "RSA", "key_size": 2048})
    sealed = ok(
        admin.call(
            "POST",
            f"/keys/undecryptable-aes/{aes}/encrypt",
            {"alg": "A256GCM", "value": b64(b"sixteen byte msg")},
        )
    )
    wrong_tag = bytes(16)
    padded = ok(
        admin.call(
            "POST",
            f"/keys/undecryptable-aes/{aes}/encrypt",
            {"alg": "A256CBCPAD", "value": b64(b"x")},
        )
    )
    bad_padding = unb64(padded["value"])[:-1] + bytes([unb64(padded["value"])[-1] ^ 1])
    cases = [
        (
            "aes",
            "decrypt",
            {"alg": "A256GCM", "value": sealed["value"], "iv": sealed["iv"], "tag": b64(wrong_tag)},
        ),
        (
            "aes",
            "decrypt",
            {"alg": "A256GCM", "value": "", "iv": sealed["iv"], "tag": sealed["tag"]},
        ),
        ("aes", "decrypt", {"alg": "A256CBCPAD", "value": b64(bad_padding), "iv": padded["iv"]}),
        ("aes", "decrypt", {"alg": "A256CBCPAD", "value": "", "iv": padded["iv"]}),
        ("aes", "unwrapkey", {"alg": "A256KW", "value": b64(bytes(24))}),
        ("aes", "unwrapkey", {"alg": "A256KW", "value": ""}),
        ("rsa", "decrypt", {"alg": "RSA-OAEP", "value": b64(b"\x01" * 256)}),
        ("rsa", "decrypt", {"alg": "RSA-OAEP-256", "value": ""}),
        ("rsa", "unwrapkey", {"alg": "RSA-OAEP", "value": b64(b"\x01" * 255)}),
    ]
    messages = set()
    for kind, op, body in cases:
        version = aes if kind == "aes" else rsa
        answer = admin.call("POST", f"/keys/undecryptable-{kind}/{version}/{op}", body)
        error = json_error(answer, 400)
        assert error["code"] == "BadParameter", (op, body, error)
        messages.add(error["message"])
    assert len(messages) == 1, messages
    # What the vault sealed still opens.
    opened = admin.call(
        "POST",
        f"/keys/undecryptable-aes/{aes}/decrypt",
        {"alg": "A256GCM", "value": sealed["value"], "iv": sealed["iv"], "tag": sealed["tag"]},
    )
    assert unb64(ok(opened)["value"]) == b"sixteen byte msg"


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/secrets/a%0Ab"),
        ("GET", "/secrets/odd%0A"),
        ("GET", "/secrets/odd/%0A"),
        ("PATCH", "/secrets/odd/%0A"),
        ("PUT", "/secrets/%0D%0A"),
        ("GET", "/keys/a%0Ab/versions"),
        ("GET", "/keys/odd/%0A%F0%9F%94%91"),
        ("POST", "/keys/odd/%0A/sign"),
        ("DELETE", "/deletedkeys/%0A"),
        ("GET", "/%0A"),
        ("POST", "/healthz"),
    ],
)
def test_odd_characters_in_a_path_get_a_key_vault_error(admin: Raw, method: str, path: str) -> None:
    answer = admin.call(method, path, {"value": "v"} if method in ("PUT", "PATCH") else None)
    assert answer.status_code in (400, 404, 405), answer.text
    json_error(answer, answer.status_code)


@pytest.mark.parametrize(
    "method,path",
    [
        ("PUT", "/keys/bodyless/rotationpolicy"),
        ("PATCH", "/keys/bodyless/"),
        ("PATCH", "/secrets/bodyless/"),
    ],
)
def test_a_missing_required_body_is_refused(admin: Raw, method: str, path: str) -> None:
    key_version(admin, "bodyless", {"kty": "EC"})
    ok(admin.call("PUT", "/secrets/bodyless", {"value": "v", "tags": {"kept": "yes"}}))
    error = json_error(admin.call(method, path), 400)
    assert "body is required" in error["message"]
    assert ok(admin.call("GET", "/secrets/bodyless"))["tags"] == {"kept": "yes"}


def test_out_content_type_takes_only_what_key_vault_supports(admin: Raw) -> None:
    ok(admin.call("PUT", "/secrets/out-plain", {"value": "v"}))
    ok(
        admin.call(
            "PUT",
            "/secrets/out-pem",
            {"value": "-----BEGIN X-----", "contentType": "application/x-pem-file"},
        )
    )
    for value in ("text/html", "application/json", "", "application/x-pem-file%0A"):
        answer = admin.call("GET", "/secrets/out-plain", query=f"{API}&outContentType={value}")
        assert "outContentType" in json_error(answer, 400)["message"]
    # Key Vault converts only a certificate's PFX to PEM: a plain secret does not convert.
    for value in ("application/x-pem-file", "application/x-pkcs12"):
        answer = admin.call("GET", "/secrets/out-plain", query=f"{API}&outContentType={value}")
        assert "cannot be converted" in json_error(answer, 400)["message"]
    same = admin.call(
        "GET", "/secrets/out-pem", query=f"{API}&outContentType=application/x-pem-file"
    )
    assert ok(same)["value"] == "-----BEGIN X-----"
    assert ok(admin.call("GET", "/secrets/out-plain"))["value"] == "v"


@pytest.mark.parametrize("field", ["exp", "nbf"])
@pytest.mark.parametrize("value", [-1, 2**63, 2**64 + 5, 1.5, "1700000000", True])
def test_times_out_of_range_are_refused_on_every_write(
    admin: Raw, field: str, value: object
) -> None:
    attributes = {field: value}
    json_error(
        admin.call("POST", "/keys/times/create", {"kty": "EC", "attributes": attributes}), 400
    )
    json_error(admin.call("PUT", "/secrets/times", {"value": "v", "attributes": attributes}), 400)
    key_version(admin, "times-ok", {"kty": "EC"})
    ok(admin.call("PUT", "/secrets/times-ok", {"value": "v"}))
    json_error(admin.call("PATCH", "/keys/times-ok/", {"attributes": attributes}), 400)
    json_error(admin.call("PATCH", "/secrets/times-ok/", {"attributes": attributes}), 400)
    for item in (
        ok(admin.call("GET", "/keys/times-ok/"))["attributes"],
        ok(admin.call("GET", "/secrets/times-ok"))["attributes"],
    ):
        assert field not in item
    assert admin.call("GET", "/secrets/times").status_code == 404


def test_a_restored_backup_with_times_out_of_range_is_refused(dev: DevServer, admin: Raw) -> None:
    """A blob this vault sealed, as an older strongroom without the limits could have made it."""
    version = SecretVersion(uuid.uuid4().hex, "v", attributes=Attributes(exp=2**63))
    entry = SecretEntry("restored-times", [version])
    plaintext = json.dumps({"kind": "secret", "entry": json.loads(entry.dump())}).encode()

    async def seal() -> bytes:
        hsm = HsmClient(dev.state / "hsm.sock")
        try:
            sealed: bytes = await hsm.seal("dev", plaintext, b"strongroom-backup:dev")
            return sealed
        finally:
            await hsm.close()

    blob = b64(asyncio.run(seal()))
    error = json_error(admin.call("POST", "/secrets/restore", {"value": blob}), 400)
    assert "exp" in error["message"]
    assert admin.call("GET", "/secrets/restored-times").status_code == 404


@pytest.mark.parametrize(
    "method,path,allow",
    [
        ("DELETE", "/keys", "GET"),
        ("PATCH", "/deletedkeys/some-key", "DELETE, GET"),
        ("POST", "/keys/some-key/rotationpolicy", "GET, PUT"),
        ("DELETE", f"/keys/some-key/{'0' * 32}/sign", "POST"),
        ("GET", "/rng", "POST"),
        ("PUT", "/deletedsecrets/some-secret/recover", "POST"),
    ],
)
def test_a_method_the_path_does_not_take_is_405_with_allow(
    admin: Raw, method: str, path: str, allow: str
) -> None:
    answer = admin.call(method, path)
    assert json_error(answer, 405)["code"] == "MethodNotAllowed"
    assert answer.headers["Allow"] == allow


@pytest.mark.parametrize(
    "body",
    [
        {"kty": "EC", "attributes": {"exportable": True}},
        {"kty": "EC", "attributes": {"exportable": "no"}},
        {"kty": "EC", "release_policy": {"data": "e30"}},
        {"kty": "EC", "release_policy": "none"},
    ],
)
def test_keys_are_never_exportable_or_released(admin: Raw, body: dict[str, Any]) -> None:
    json_error(admin.call("POST", "/keys/unexportable/create", body), 400)
    assert admin.call("GET", "/keys/unexportable/").status_code == 404
    key_version(admin, "unexportable-ok", {"kty": "EC", "attributes": {"exportable": False}})
    patch = {k: v for k, v in body.items() if k != "kty"}
    json_error(admin.call("PATCH", "/keys/unexportable-ok/", patch), 400)
    attributes = ok(admin.call("GET", "/keys/unexportable-ok/"))["attributes"]
    assert attributes["exportable"] is False


@pytest.mark.parametrize("field", ["iv", "aad", "tag"])
@pytest.mark.parametrize("op", ["encrypt", "wrapkey", "decrypt", "unwrapkey"])
def test_crypto_fields_take_only_strings(admin: Raw, field: str, op: str) -> None:
    version = key_version(admin, "crypto-types", {"kty": "RSA", "key_size": 2048})
    body = {"alg": "RSA-OAEP", "value": b64(b"k" * 32), field: [1]}
    error = json_error(admin.call("POST", f"/keys/crypto-types/{version}/{op}", body), 400)
    assert field in error["message"]


CERT_POLICY = {"x509_props": {"subject": "CN=typed.example"}, "issuer": {"name": "Self"}}


def certificate_pem() -> tuple[str, str]:
    """(PEM of a private key and its self-signed certificate, base64 of the certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "typed.example")])
    start = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem = (private + certificate.public_bytes(serialization.Encoding.PEM)).decode()
    return pem, base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


@pytest.mark.parametrize("content_type", [0, False, [], {}, 5, ["application/x-pkcs12"]])
def test_a_certificate_policy_content_type_is_a_string(admin: Raw, content_type: object) -> None:
    """A wrong-typed contentType that is falsy was taken as none given (the default)."""
    policy = CERT_POLICY | {"secret_props": {"contentType": content_type}}
    create = admin.call("POST", "/certificates/typed-content/create", {"policy": policy})
    assert "contentType" in json_error(create, 400)["message"]
    assert admin.call("GET", "/certificates/typed-content/").status_code == 404
    made = admin.call("POST", "/certificates/typed-content-ok/create", {"policy": CERT_POLICY})
    assert made.status_code == 202, made.text
    try:
        before = ok(admin.call("GET", "/certificates/typed-content-ok/policy"))
        bad = {"secret_props": {"contentType": content_type}}
        json_error(admin.call("PATCH", "/certificates/typed-content-ok/policy", bad), 400)
        json_error(admin.call("PATCH", "/certificates/typed-content-ok/", {"policy": bad}), 400)
        after = ok(admin.call("GET", "/certificates/typed-content-ok/policy"))
        assert (
            after["secret_props"]
            == before["secret_props"]
            == {"contentType": "application/x-pkcs12"}
        )
    finally:
        deleted = admin.call("DELETE", "/certificates/typed-content-ok")
        assert deleted.status_code == 200, deleted.text
        purged = admin.call("DELETE", "/deletedcertificates/typed-content-ok")
        assert purged.status_code == 204, purged.text


@pytest.mark.parametrize("path", ["/certificates", "/deletedcertificates"])
def test_include_pending_is_a_boolean(admin: Raw, path: str) -> None:
    for value in ("-9377022843", "yes", "1", "", "true%0A"):
        answer = admin.call("GET", path, query=f"{API}&includePending={value}")
        assert "includePending" in json_error(answer, 400)["message"], value
    for value in ("true", "false", "True", "FALSE"):
        answer = admin.call("GET", path, query=f"{API}&includePending={value}")
        assert isinstance(ok(answer)["value"], list), value


def test_setting_an_issuer_names_its_provider(admin: Raw) -> None:
    """A set replaces the issuer: without a provider it is refused, not merged with the
    stored one (an update keeps the stored provider)."""
    ok(admin.call("PUT", "/certificates/issuers/typed-issuer", {"provider": "Test"}))
    try:
        for body in ({}, {"attributes": None}, {"provider": None}, {"provider": 5}):
            error = json_error(admin.call("PUT", "/certificates/issuers/typed-issuer", body), 400)
            assert "provider" in error["message"]
        json_error(admin.call("PUT", "/certificates/issuers/typed-issuer-new", {}), 400)
        assert admin.call("GET", "/certificates/issuers/typed-issuer-new").status_code == 404
        updated = admin.call(
            "PATCH", "/certificates/issuers/typed-issuer", {"attributes": {"enabled": False}}
        )
        assert ok(updated)["provider"] == "Test"
    finally:
        gone = admin.call("DELETE", "/certificates/issuers/typed-issuer")
        assert gone.status_code == 200, gone.text


@pytest.mark.parametrize("field", ["nbf", "exp"])
@pytest.mark.parametrize("value", [1.5, "1700000000", True, -1, 2**63, [1]])
def test_certificate_times_are_unix_times_wherever_given(
    admin: Raw, field: str, value: object
) -> None:
    """nbf and exp of a certificate's attributes and of its policy's attributes were read
    nowhere, so any type passed."""
    times = {field: value}
    cases = [
        ("/create", {"policy": CERT_POLICY, "attributes": times}),
        ("/create", {"policy": CERT_POLICY | {"attributes": times}}),
        ("/import", {"value": certificate_pem()[0], "attributes": times}),
    ]
    for action, body in cases:
        answer = admin.call("POST", f"/certificates/typed-times{action}", body)
        assert field in json_error(answer, 400)["message"], (action, body)
    assert admin.call("GET", "/certificates/typed-times/").status_code == 404
    made = admin.call("POST", "/certificates/typed-times-ok/create", {"policy": CERT_POLICY})
    assert made.status_code == 202, made.text
    try:
        before = ok(admin.call("GET", "/certificates/typed-times-ok/policy"))
        policy = {"attributes": times}
        answer = admin.call("PATCH", "/certificates/typed-times-ok/policy", policy)
        assert field in json_error(answer, 400)["message"]
        assert ok(admin.call("GET", "/certificates/typed-times-ok/policy")) == before
    finally:
        deleted = admin.call("DELETE", "/certificates/typed-times-ok")
        assert deleted.status_code == 200, deleted.text
        purged = admin.call("DELETE", "/deletedcertificates/typed-times-ok")
        assert purged.status_code == 204, purged.text
    pending = {"policy": CERT_POLICY | {"issuer": {"name": "Unknown"}}}
    made = admin.call("POST", "/certificates/typed-times-pending/create", pending)
    assert made.status_code == 202, made.text
    try:
        merge = {"x5c": [certificate_pem()[1]], "attributes": times}
        answer = admin.call("POST", "/certificates/typed-times-pending/pending/merge", merge)
        assert field in json_error(answer, 400)["message"]
        still = ok(admin.call("GET", "/certificates/typed-times-pending/pending"))
        assert still["status"] == "inProgress"
    finally:
        dropped = admin.call("DELETE", "/certificates/typed-times-pending/pending")
        assert dropped.status_code == 200, dropped.text


@pytest.mark.parametrize("enabled", ["yes", 1, 0, [], {}])
def test_a_merge_takes_only_a_boolean_enabled(admin: Raw, enabled: object) -> None:
    """A merge read attributes.enabled only when it was a boolean, and dropped any other."""
    pending = {"policy": CERT_POLICY | {"issuer": {"name": "Unknown"}}}
    made = admin.call("POST", "/certificates/typed-merge/create", pending)
    assert made.status_code == 202, made.text
    try:
        merge = {"x5c": [certificate_pem()[1]], "attributes": {"enabled": enabled}}
        answer = admin.call("POST", "/certificates/typed-merge/pending/merge", merge)
        assert "enabled" in json_error(answer, 400)["message"]
        assert ok(admin.call("GET", "/certificates/typed-merge/pending"))["status"] == (
            "inProgress"
        )
    finally:
        dropped = admin.call("DELETE", "/certificates/typed-merge/pending")
        assert dropped.status_code == 200, dropped.text
