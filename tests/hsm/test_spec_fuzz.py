"""Fuzzing the data plane against Key Vault's wire format, with schemathesis.

Every operation of strongroom's own description of the Key Vault data plane for keys,
secrets and certificates (tests/hsm/kvspec.py, api-version 2025-07-01) is sent
schemathesis' coverage cases (boundary values, wrong types, missing parts, methods the
description does not name) and then generated requests, valid ones and invalid ones,
over HTTPS with a real bearer token, to a `strongroom dev` of its own on SoftHSM2. Each
answer must be below 500 and valid against the description (status, content type,
headers, body); invalid requests must be refused with a 4xx; a method the path does not
take is a 405; a request without its token is refused; and every error carries Key
Vault's error body. Where strongroom deliberately departs from Key Vault's contract, the
exception is written down below with its reason (SPEC_EXCEPTIONS), as are the operations
where a check cannot apply (NO_405, NO_SUCCESS); nowhere else.

Path parameters are steered, two requests in three, to objects that exist (an RSA, an EC
and an AES key, a secret, a certificate, a certificate with a pending operation, an
issuer, a deleted key, secret and certificate, put back in their state before each
operation), with algorithms and lengths that fit them, so that requests reach the
cryptography in the HSM, the updates, the rotation and certificate policies, not only
the 404 of an unknown name; bodies that need a whole thing to work (a certificate
policy, a PEM to import, a chain to merge, a contact's address) get one, one request in
two. Each operation must get at least one success. Generation is derandomized: CI sends
the same requests every time.
"""

import base64
import datetime
import json
import random
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests
import schemathesis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from strongroom import base64url

from .conftest import DevServer, start_dev, stop_dev
from .kvspec import API_VERSION, key_vault_spec

# Generated examples per operation and generation mode: with the coverage cases (fixed)
# some thousands of requests over the 37 operations, a minute or two on 2 cores.
MAX_EXAMPLES = 40

Patch = Callable[[dict[str, Any]], None]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# The description's base64url strings are generated as base64url of bytes of the lengths that
# matter (none, an AES iv or tag, a key to wrap, an RSA-2048 block): arbitrary text would
# almost never get past the base64url check to the HSM.
schemathesis.openapi.format(
    "base64url",
    st.one_of(st.binary(max_size=48), st.binary(min_size=255, max_size=257)).map(_b64url),
)


# The request bodies' schemas, and the attributes in them.
REQUEST_DEFINITIONS = (
    "GetRandomBytesRequest",
    "KeyAttributes",
    "KeyCreateParameters",
    "KeyImportParameters",
    "KeyOperationsParameters",
    "KeyReleasePolicy",
    "KeyRestoreParameters",
    "KeyRotationPolicy",
    "KeyRotationPolicyAttributes",
    "KeySignParameters",
    "KeyUpdateParameters",
    "KeyVerifyParameters",
    "LifetimeActions",
    "LifetimeActionsTrigger",
    "LifetimeActionsType",
    "SecretAttributes",
    "SecretRestoreParameters",
    "SecretSetParameters",
    "SecretUpdateParameters",
    "Action",
    "AdministratorDetails",
    "CertificateAttributes",
    "CertificateCreateParameters",
    "CertificateImportParameters",
    "CertificateIssuerSetParameters",
    "CertificateIssuerUpdateParameters",
    "CertificateMergeParameters",
    "CertificateOperationUpdateParameter",
    "CertificatePolicy",
    "CertificateRestoreParameters",
    "CertificateUpdateParameters",
    "Contact",
    "Contacts",
    "IssuerAttributes",
    "IssuerCredentials",
    "IssuerParameters",
    "KeyProperties",
    "LifetimeAction",
    "OrganizationDetails",
    "SecretProperties",
    "SubjectAlternativeNames",
    "Trigger",
    "X509CertificateProperties",
)


def _nullable_optional_request_properties(spec: dict[str, Any]) -> None:
    for name in REQUEST_DEFINITIONS:
        definition = spec["definitions"][name]
        for field, schema in definition["properties"].items():
            if field not in definition.get("required", []):
                schema["x-nullable"] = True


# Where strongroom deliberately departs from Key Vault's contract as the description
# gives it: (what is changed, why, the change). Nothing else is relaxed.
SPEC_EXCEPTIONS: list[tuple[str, str, Patch]] = [
    (
        "an optional property of a request body may be null",
        "strongroom reads null in an optional request property (tags, contentType, "
        "attributes, nbf, exp, key_ops, iv, a policy's sections, ...) as not given, the "
        "way JSON serializers of the Azure SDKs may write an unset field; Key Vault's "
        "contract types these without null. Required properties stay non-null. The "
        "attributes' schemas are shared with answers, which strongroom writes without "
        "nulls.",
        _nullable_optional_request_properties,
    ),
]
# Operations on whose paths another method is no 405 (the unsupported-method check is not
# run on them; every other check is).
NO_405 = {
    "RestoreKey": "`restore` is also a key name: GET or DELETE /keys/restore is that key's",
    "RestoreSecret": "`restore` is also a secret name: GET, PUT or DELETE /secrets/restore "
    "is that secret's",
    "RestoreCertificate": "`restore` is also a certificate name: GET or DELETE "
    "/certificates/restore is that certificate's",
    "GetCertificateIssuers": "`issuers` is also a certificate name: DELETE "
    "/certificates/issuers is that certificate's",
}
# Operations that need not succeed once; every other one must, or the steering is broken.
NO_SUCCESS = {
    "RestoreKey": "the backups are of objects that exist, so a restore is a 409",
    "RestoreSecret": "the backups are of objects that exist, so a restore is a 409",
    "RestoreCertificate": "the backups are of objects that exist, so a restore is a 409",
}


def load_spec() -> dict[str, Any]:
    spec = key_vault_spec()
    for _, _, patch in SPEC_EXCEPTIONS:
        patch(spec)
    return spec


SCHEMA = schemathesis.openapi.from_dict(load_spec())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


@schemathesis.check
def content_type_unless_no_content(
    ctx: Any, response: schemathesis.Response, case: Case
) -> bool | None:
    """schemathesis' content type check, but for a 204: that has no content, so strongroom
    sends no Content-Type (RFC 9110); the check asks for one because a Swagger 2.0
    `produces` is per operation, not per answer."""
    if response.status_code == 204 and not response.content:
        return None
    return content_type_conformance(ctx, response, case)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_unless_no_content,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
    unsupported_method,
]


@schemathesis.check
def key_vault_error_body(ctx: Any, response: schemathesis.Response, case: Case) -> bool | None:
    """Every error is JSON in Key Vault's shape, with a code and a message that are not
    empty (the description's KeyVaultError requires both, but takes empty strings)."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), (
        f"a {response.status_code} answered with content type {content_type!r}"
    )
    error = json.loads(response.content)["error"]
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    return None


CHECKS.append(key_vault_error_body)

KEYS = {
    "fz-rsa": {"kty": "RSA", "key_size": 2048},
    "fz-ec": {"kty": "EC", "crv": "P-256"},
    "fz-oct": {"kty": "oct-HSM", "key_size": 256},
}
KEY_OPS = {
    "RSA": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
    "EC": ["sign", "verify"],
    "oct": ["encrypt", "decrypt", "wrapKey", "unwrapKey"],
}
# The keys that can do each operation, with the algorithms that fit them (the key whose
# failures are the HSM's first): most of Key Vault's algorithms fit no key, and a request
# with one stops at the algorithm check.
ALGORITHMS = {
    "sign": {"fz-ec": ["ES256", "ES384"], "fz-rsa": ["RS256", "PS384", "RS512"]},
    "encrypt": {
        "fz-oct": ["A256GCM", "A256CBCPAD", "A256CBC"],
        "fz-rsa": ["RSA-OAEP", "RSA-OAEP-256", "RSA1_5"],
    },
    "wrapkey": {"fz-oct": ["A256KW"], "fz-rsa": ["RSA-OAEP", "RSA-OAEP-256", "RSA1_5"]},
}
ALGORITHMS["verify"] = ALGORITHMS["sign"]
ALGORITHMS["decrypt"] = ALGORITHMS["encrypt"]
ALGORITHMS["unwrapkey"] = ALGORITHMS["wrapkey"]
# Byte lengths that pass the checks before the HSM: a digest for each signing algorithm,
# the iv of each AES mode (and GCM's 16-byte tag).
DIGEST = {"256": 32, "384": 48, "512": 64}
IV = {"GCM": 12, "CBC": 16, "CBCPAD": 16}
SECRET = "fz-secret"
# What a name or version may hold that a router or a decoder may choke on.
HOSTILE = ["\n", "\r\n", "\x00", "/", "%", "..", "?", "#", " ", "\t", "\u2028", "\ufeff", "é"]
GONE = "fz-gone"  # a deleted key and a deleted secret, for the deleted* operations
# Operations that make objects are steered to names of their own, so that the objects above
# keep their key types.
MADE = {"CreateKey": "fz-made", "SetSecret": "fz-made", "ImportKey": "fz-imported"}


def _private_jwks() -> dict[str, dict[str, str]]:
    """Private JWKs that ImportKey takes (one of each family), made once: a generated JWK
    is never one consistent key, so half the imports are steered to these."""
    rsa_numbers = rsa.generate_private_key(65537, 2048).private_numbers()
    ec_numbers = ec.generate_private_key(ec.SECP256R1()).private_numbers()
    rsa_values = {
        "n": rsa_numbers.public_numbers.n,
        "e": rsa_numbers.public_numbers.e,
        "d": rsa_numbers.d,
        "p": rsa_numbers.p,
        "q": rsa_numbers.q,
        "dp": rsa_numbers.dmp1,
        "dq": rsa_numbers.dmq1,
        "qi": rsa_numbers.iqmp,
    }
    ec_values = {
        "x": ec_numbers.public_numbers.x,
        "y": ec_numbers.public_numbers.y,
        "d": ec_numbers.private_value,
    }
    return {
        "rsa": {"kty": "RSA"} | {k: base64url.encode_uint(v) for k, v in rsa_values.items()},
        "ec": {"kty": "EC-HSM", "crv": "P-256"}
        | {k: base64url.encode_uint(v, 32) for k, v in ec_values.items()},
        "oct": {"kty": "oct", "k": _b64url(bytes(range(32)))},
    }


JWKS = _private_jwks()

CERTIFICATE = "fz-cert"  # a certificate the vault signed (Self)
PENDING = "fz-pending"  # a certificate whose creation waits for its merge (Unknown)
CERT_GONE = "fz-cert-gone"  # a deleted certificate
ISSUER = "fz-issuer"
CONTACTS = {"contacts": [{"email": "fuzz@example.com", "name": "Fuzz"}]}
MADE |= {"CreateCertificate": "fz-cert-made", "ImportCertificate": "fz-cert-imported"}
# The operations whose bodies are steered to a whole valid part, one request in two.
WHOLE_BODIES = {
    "CreateCertificate",
    "ImportCertificate",
    "MergeCertificate",
    "SetCertificateContacts",
}


def _policy(issuer: str) -> dict[str, Any]:
    """A policy the vault takes: an EC key (quick to make), a subject, the issuer."""
    return {
        "key_props": {"kty": "EC", "crv": "P-256", "exportable": False},
        "x509_props": {"subject": "CN=fuzz.example"},
        "issuer": {"name": issuer},
    }


# A certificate authority of the test's own, for the chains merged into pending requests
# and the certificate imported.
CA_KEY = ec.generate_private_key(ec.SECP256R1())
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz CA")])


def _issued(public_key: Any, subject: x509.Name) -> x509.Certificate:
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(CA_NAME)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=90))
        .sign(CA_KEY, hashes.SHA256())
    )


def _chain_for(csr: str) -> list[str]:
    """x5c for a pending request: the certificate the CA signs for its CSR."""
    request = x509.load_der_x509_csr(base64.b64decode(csr))
    leaf = _issued(request.public_key(), request.subject)
    return [base64.b64encode(leaf.public_bytes(serialization.Encoding.DER)).decode()]


def _import_pem() -> str:
    """A PEM that ImportCertificate takes: a PKCS#8 private key and its certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz-import.example")])
    certificate = _issued(key.public_key(), subject)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return (private + certificate.public_bytes(serialization.Encoding.PEM)).decode()


IMPORT_PEM = _import_pem()


class Counting(requests.Session):
    """Counts the requests of all its sessions, and keeps the statuses of its own."""

    sent = 0

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[int] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        Counting.sent += 1
        response = super().send(request, **kwargs)
        self.statuses.append(response.status_code)
        return response


class Draws:
    """The choices of steering: Hypothesis' for generated requests (0 and the first item
    are its simplest), a seeded generator's for the coverage phase's fixed list."""

    def __init__(self, data: st.DataObject | None = None, seed: int = 0) -> None:
        self.data = data
        self.seeded = random.Random(seed)

    def below(self, n: int) -> int:
        if self.data is None:
            return self.seeded.randrange(n)
        return int(self.data.draw(st.integers(0, n - 1)))

    def pick(self, items: list[str]) -> str:
        if self.data is None:
            return self.seeded.choice(items)
        return str(self.data.draw(st.sampled_from(items)))

    def raw(self, size: int) -> bytes:
        if self.data is None:
            return self.seeded.randbytes(size)
        return bytes(self.data.draw(st.binary(min_size=size, max_size=size)))


class Objects:
    """The objects that steered requests name, put back in a usable state on demand."""

    def __init__(self, dev: DevServer) -> None:
        self.dev = dev
        self.session = requests.Session()
        self.session.verify = dev.ca
        self.session.headers["Authorization"] = f"Bearer {dev.token}"
        self.versions: dict[str, list[str]] = {}
        self.backups: dict[str, list[str]] = {}
        self.merge_chain: list[str] = []

    def call(self, method: str, path: str, body: Any = None) -> requests.Response:
        return self.session.request(
            method,
            f"{self.dev.url}{path}?api-version={API_VERSION}",
            json=body,
            verify=self.dev.ca,
            timeout=60,
        )

    def _present(self, kind: str, name: str, method: str, path: str, body: Any) -> None:
        """Make the object live again: it is there, or recovered, or made anew."""
        if self.call("GET", f"/{kind}/{name}").status_code == 200:
            return
        recovered = self.call("POST", f"/deleted{kind}/{name}/recover")
        if recovered.status_code == 200:
            return
        assert recovered.status_code == 404, recovered.text
        created = self.call(method, path, body)
        assert created.status_code in (200, 202), created.text

    def _version_ids(self, kind: str, name: str) -> list[str]:
        """The version in use first (the simplest draw names it), then up to 25 others."""
        field = "kid" if kind == "keys" else "id"
        latest = self.call("GET", f"/{kind}/{name}/")
        assert latest.status_code == 200, latest.text
        body = latest.json()
        current = (body["key"]["kid"] if kind == "keys" else body["id"]).rsplit("/", 1)[1]
        listed = self.call("GET", f"/{kind}/{name}/versions")
        assert listed.status_code == 200, listed.text
        others = [item[field].rsplit("/", 1)[1] for item in listed.json()["value"]]
        return [current] + [v for v in others if v != current]

    def reset(self, operation: Any) -> None:
        """Put back the objects that the operation's requests are steered to (a certificate
        operation's are the certificates, the contacts and the issuer)."""
        kinds = ("keys", "secrets")
        if "certificates" in operation.path:
            kinds = ("certificates",)
            self._reset_certificates()
        else:
            self._reset_keys_and_secrets()
        for kind, name in (("keys", "fz-rsa"), ("secrets", SECRET), ("certificates", CERTIFICATE)):
            if kind in kinds and kind not in self.backups:
                backup = self.call("POST", f"/{kind}/{name}/backup")
                assert backup.status_code == 200, backup.text
                self.backups[kind] = [backup.json()["value"]]

    def _reset_keys_and_secrets(self) -> None:
        usable = {"enabled": True, "nbf": None, "exp": None}
        for name, body in KEYS.items():
            self._present("keys", name, "POST", f"/keys/{name}/create", body)
            current = self.call("GET", f"/keys/{name}/")
            assert current.status_code == 200, current.text
            kty = current.json()["key"]["kty"].removesuffix("-HSM")
            patched = self.call(
                "PATCH", f"/keys/{name}/", {"attributes": usable, "key_ops": KEY_OPS[kty]}
            )
            assert patched.status_code == 200, patched.text
            self.versions[name] = self._version_ids("keys", name)
        for kind, create in (
            ("keys", ("POST", f"/keys/{GONE}/create", {"kty": "EC"})),
            ("secrets", ("PUT", f"/secrets/{GONE}", {"value": "v"})),
        ):
            if self.call("GET", f"/deleted{kind}/{GONE}").status_code != 200:
                self._present(kind, GONE, *create)
                deleted = self.call("DELETE", f"/{kind}/{GONE}")
                assert deleted.status_code == 200, deleted.text
        self._present("secrets", SECRET, "PUT", f"/secrets/{SECRET}", {"value": "v"})
        patched = self.call("PATCH", f"/secrets/{SECRET}/", {"attributes": usable})
        assert patched.status_code == 200, patched.text
        self.versions[SECRET] = self._version_ids("secrets", SECRET)

    def _reset_certificates(self) -> None:
        for name in (CERTIFICATE, CERT_GONE):
            create = ("POST", f"/certificates/{name}/create", {"policy": _policy("Self")})
            if name == CERTIFICATE:
                self._present("certificates", name, *create)
            elif self.call("GET", f"/deletedcertificates/{name}").status_code != 200:
                self._present("certificates", name, *create)
                deleted = self.call("DELETE", f"/certificates/{name}")
                assert deleted.status_code == 200, deleted.text
        usable = {"enabled": True}  # a certificate's nbf and exp are its X.509 validity
        patched = self.call("PATCH", f"/certificates/{CERTIFICATE}/", {"attributes": usable})
        assert patched.status_code == 200, patched.text
        self.versions[CERTIFICATE] = self._version_ids("certificates", CERTIFICATE)
        # A creation in progress (cancelled, merged or deleted ones are begun anew).
        pending = self.call("GET", f"/certificates/{PENDING}/pending")
        if pending.status_code != 200 or pending.json()["status"] != "inProgress":
            body = {"policy": _policy("Unknown")}
            made = self.call("POST", f"/certificates/{PENDING}/create", body)
            assert made.status_code == 202, made.text
            pending = self.call("GET", f"/certificates/{PENDING}/pending")
            assert pending.status_code == 200, pending.text
        self.merge_chain = _chain_for(pending.json()["csr"])
        if self.call("GET", "/certificates/contacts").status_code != 200:
            contacts = self.call("PUT", "/certificates/contacts", CONTACTS)
            assert contacts.status_code == 200, contacts.text
        if self.call("GET", f"/certificates/issuers/{ISSUER}").status_code != 200:
            issuer = self.call("PUT", f"/certificates/issuers/{ISSUER}", {"provider": "Test"})
            assert issuer.status_code == 200, issuer.text

    def _steer_certificate_body(
        self, operation_id: str, body: dict[str, Any], draw: "Draws"
    ) -> None:
        """What a certificate operation needs whole to succeed, in a body that is valid."""
        if operation_id == "CreateCertificate":
            body["policy"] = _policy(draw.pick(["Self", "Self", "Unknown"]))
        elif operation_id == "ImportCertificate":
            body["value"] = IMPORT_PEM
            body.pop("policy", None)
        elif operation_id == "MergeCertificate":
            body["x5c"] = list(self.merge_chain)
        elif operation_id == "SetCertificateContacts":
            body["contacts"] = CONTACTS["contacts"]

    def steer(self, case: Case, draw: "Draws") -> None:
        """Point most requests at the description's api-version and, two in three, at an object
        that exists, with an algorithm and lengths that fit it, wherever the request is not
        the negative part: so that they reach the vault's code and the HSM.

        The simplest draws (0, the first of a list) steer: a failing example shrinks
        towards a request that reaches deep."""
        meta = case.meta
        negative = meta is not None and meta.generation.mode.is_negative

        def free(location: str) -> bool:
            return not negative or not meta.is_negative_at(location)  # type: ignore[union-attr]

        def raw(size: int) -> str:
            return _b64url(draw.raw(size))

        # Also where the query is the negative part: were api-version the invalid parameter,
        # schemathesis sees the query valid again and expects no refusal.
        if case.query is not None and draw.below(10) < 9:
            case.query["api-version"] = API_VERSION
        body = case.body if isinstance(case.body, dict) and free("body") else None
        if case.operation.path.endswith("/restore") and body is not None:
            if draw.below(2) == 0:
                body["value"] = draw.pick(self.backups[case.operation.path.split("/")[1]])
            return
        params = case.path_parameters or {}
        operation_id = case.operation.definition.raw["operationId"]
        if body is not None and operation_id in WHOLE_BODIES and draw.below(2) == 0:
            self._steer_certificate_body(operation_id, body, draw)
        if not free("path"):
            # An empty name or version gives another operation's URL (`/deletedsecrets/`
            # is the list): one too long instead, as invalid and this operation's.
            for param, value in params.items():
                if value == "":
                    params[param] = "a" * 128
            return
        if draw.below(3) == 2:
            # Not an object that exists: then, one in two, a name or version with one of
            # the characters that routing, decoding and name rules must all survive (not
            # in a test of a method the path does not take: that is the method's test).
            if case.method.upper() != case.operation.method.upper():
                return
            # The client sends path parameters as they are: encoded here, so that `?`, `#`,
            # `/` or `..` reach the vault inside the name, not as the URL's own.
            for param in params:
                if draw.below(2) == 0:
                    value = draw.pick(["", "a", params[param]]) + draw.pick(HOSTILE)
                    params[param] = quote(value, safe="").replace(".", "%2E")
            return
        operation = case.operation.path.rsplit("/", 1)[1]
        made = MADE.get(operation_id)
        keys, secrets = list(ALGORITHMS.get(operation, KEYS)), [SECRET]
        certificates = [PENDING] if "/pending" in case.operation.path else [CERTIFICATE]
        if case.operation.path.startswith("/deleted"):
            keys = secrets = [GONE]
            certificates = [CERT_GONE]
        for kind, names in (
            ("key", keys),
            ("secret", secrets),
            ("certificate", certificates),
            ("issuer", [ISSUER]),
        ):
            if f"{kind}-name" not in params:
                continue
            name = params[f"{kind}-name"] = made or draw.pick(names)
            if made == MADE["ImportKey"] and body is not None and draw.below(2) == 0:
                body["key"] = dict(JWKS[draw.pick(sorted(JWKS))])
            # An empty version would make `//`, which the client folds: a real one.
            # Crypto on the version in use one time in two: reset() makes only that one
            # usable, and other tests' updates may have taken an older one's key_ops away.
            if f"{kind}-version" in params:
                versions = self.versions[name]
                if operation in ALGORITHMS and draw.below(2) == 0:
                    versions = versions[:1]
                params[f"{kind}-version"] = draw.pick(versions)
            if body is None or operation not in ALGORITHMS:
                continue
            alg = body["alg"] = draw.pick(ALGORITHMS[operation][name])
            if alg[-3:] in DIGEST:
                body["value" if operation == "sign" else "digest"] = raw(DIGEST[alg[-3:]])
            if operation in ("decrypt", "unwrapkey") and alg.startswith("RSA"):
                # A 2048-bit block below the modulus: RSA1_5 opens it (implicit rejection).
                body["value"] = _b64url(b"\0" + draw.raw(255))
            mode = alg[4:] if alg.startswith("A256") else ""
            if operation == "decrypt" and mode in IV:
                body["iv"] = raw(IV[mode])
                if mode == "GCM":
                    body["tag"] = raw(16)


@pytest.fixture(scope="module")
def fuzz_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """A server of its own: what the fuzzer makes and deletes touches no other test."""
    base = tmp_path_factory.mktemp("fuzz")
    server = start_dev(base / "state", base / "dev.log")
    yield server
    stop_dev(server)


@pytest.fixture(scope="module")
def objects(fuzz_dev: DevServer, request: pytest.FixtureRequest) -> Iterator[Objects]:
    start = Counting.sent
    yield Objects(fuzz_dev)
    line = f"spec fuzz: {Counting.sent - start} requests over {len(OPERATIONS)} operations"
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if reporter is None or capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.ensure_newline()
        reporter.write_line(line)


@pytest.mark.parametrize(
    "operation",
    OPERATIONS,
    ids=[op.definition.raw["operationId"] for op in OPERATIONS],
)
def test_spec_fuzz(operation: Any, fuzz_dev: DevServer, objects: Objects) -> None:
    """Schemathesis' coverage phase (its fixed list of boundary and invalid requests, and
    methods the description does not name), then generated requests, valid and invalid."""
    objects.reset(operation)
    session = Counting()
    session.verify = fuzz_dev.ca
    headers = {"Authorization": f"Bearer {fuzz_dev.token}"}

    checks = CHECKS
    if operation.definition.raw["operationId"] in NO_405:
        checks = [check for check in CHECKS if check is not unsupported_method]

    def send(case: Case) -> None:
        case.call_and_validate(
            base_url=fuzz_dev.url,
            session=session,
            headers=headers,
            checks=checks,
            verify=fuzz_dev.ca,
            timeout=60,
        )

    schema = operation.schema
    failures: dict[str, str] = {}
    coverage = schema.iter_coverage_cases(
        operation,
        generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        generation_config=schema.config.generation_for(operation=operation),
    )
    covered = Counting.sent
    for index, case in enumerate(coverage):
        objects.steer(case, Draws(seed=index))
        if case.method.upper() != operation.method.upper() and case.query is not None:
            case.query["api-version"] = API_VERSION  # a method's test, not the version's
        try:
            send(case)
        except FailureGroup as group:
            for failure in group.exceptions:
                failures.setdefault(failure.title, str(group))
    assert not failures, "\n\n".join(failures.values())
    generated = Counting.sent

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
        @settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Case, data: st.DataObject) -> None:
            objects.steer(case, Draws(data))
            send(case)

        run()
    print(
        f"{operation.label}: {generated - covered} coverage and {Counting.sent - generated} "
        f"generated requests, {sum(200 <= s < 300 for s in session.statuses)} successes"
    )
    assert Counting.sent - generated >= MAX_EXAMPLES, "too few requests were generated"
    if operation.definition.raw["operationId"] not in NO_SUCCESS:
        assert any(200 <= s < 300 for s in session.statuses), "no request succeeded"
