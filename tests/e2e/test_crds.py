"""The API server refuses what strongroom cannot carry out, with a message a person can act
on, before the operator ever sees it; identity fields never change once set."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import namespace_of
from .release import Release

API = "strongroom.io/v1alpha1"


def key(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Key",
        "metadata": {"name": name},
        "spec": {"vaultRef": {"name": "nowhere"}, **spec},
    }


def vault(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Vault",
        "metadata": {"name": name},
        "spec": {"hsmPoolRef": {"name": "nowhere"}, **spec},
    }


def vault_secret(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "VaultSecret",
        "metadata": {"name": name},
        "spec": {"vaultRef": {"name": "nowhere"}, "source": {"generate": {}}, **spec},
    }


def hsm_pool(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "HsmPool", "metadata": {"name": name}, "spec": spec}


DOMAIN = {"quorum": 2, "certificates": {"name": "holders"}}

REJECTED = [
    (
        hsm_pool("quorum-of-one", securityDomain={"quorum": 1, "certificates": {"name": "h"}}),
        "spec.securityDomain.quorum must be 2 to 10",
    ),
    (
        hsm_pool("no-certificates", securityDomain={"quorum": 2}),
        "spec.securityDomain.certificates: Required value",
    ),
    (
        hsm_pool(
            "domain-and-recovery",
            securityDomain=DOMAIN,
            recoverFrom={"claimName": "b", "file": "x.tar"},
        ),
        "set spec.securityDomain for a new pool or spec.recoverFrom to recover one, not both",
    ),
    (
        hsm_pool("unrecoverable-backups", backup={"claimName": "b"}),
        "spec.backup needs spec.securityDomain (or spec.recoverFrom)",
    ),
    (
        hsm_pool(
            "cron-and-interval",
            securityDomain=DOMAIN,
            backup={"claimName": "b", "schedule": "0 3 * * *", "interval": "PT6H"},
        ),
        "spec.backup takes a cron schedule or an interval, not both",
    ),
    (
        hsm_pool(
            "four-fields", securityDomain=DOMAIN, backup={"claimName": "b", "schedule": "0 3 * *"}
        ),
        "spec.backup.schedule is a cron expression of five fields",
    ),
    (
        key("ec-with-size", kty="EC-HSM", size=2048),
        "spec.size is for RSA and oct-HSM keys; EC keys take spec.curve",
    ),
    (key("small-rsa", kty="RSA-HSM", size=128), "an RSA key's size is 2048, 3072 or 4096"),
    (key("rsa-with-curve", kty="RSA", curve="P-256"), "spec.curve is for EC keys"),
    (key("dsa", kty="DSA"), 'Unsupported value: "DSA"'),
    (
        vault("x" * 33),
        "a Vault's name is 1-32 lowercase letters, digits and dashes",
    ),
    (
        vault(
            "both-callers",
            access=[{"serviceAccount": {"name": "a"}, "subject": "b", "roles": ["Reader"]}],
        ),
        "each access entry names its caller once",
    ),
    (
        {
            "apiVersion": API,
            "kind": "VaultSecret",
            "metadata": {"name": "two-sources"},
            "spec": {
                "vaultRef": {"name": "nowhere"},
                "source": {"generate": {"length": 16}, "external": {}},
            },
        },
        "spec.source takes exactly one of generate, fromSecret or external",
    ),
    (
        vault_secret("half-a-duration", rotation={"rotateAfter": "P1DT"}),
        "spec.rotation.rotateAfter is an ISO 8601 duration of whole minutes or more",
    ),
    (
        vault_secret("seconds", rotation={"rotateAfter": "PT30S"}),
        "spec.rotation.rotateAfter in body should match",
    ),
    (
        vault_secret(
            "adopt-imported", source={"fromSecret": {"name": "s", "key": "k"}}, adopt=True
        ),
        "spec.adopt is for generated secrets (spec.source.generate): a fromSecret VaultSecret "
        "would replace the adopted value with the imported one",
    ),
    (
        vault_secret("adopt-external", source={"external": {}}, adopt=True),
        "spec.adopt is for generated secrets (spec.source.generate)",
    ),
]


@pytest.fixture(scope="module")
def namespace(release: Release) -> Iterator[str]:
    with namespace_of(release, "e2e-crds") as name:
        yield name


@pytest.mark.parametrize(
    ("manifest", "message"), REJECTED, ids=[m["metadata"]["name"][:20] for m, _ in REJECTED]
)
def test_invalid_resources_are_rejected_with_their_message(
    release: Release, namespace: str, manifest: dict[str, Any], message: str
) -> None:
    refused = release.k(
        "-n", namespace, "create", "-f", "-", stdin=json.dumps(manifest), check=False
    )
    assert refused.returncode != 0, f"{manifest['metadata']['name']} was accepted"
    assert message in refused.stderr, refused.stderr


@pytest.mark.parametrize(
    ("kind", "manifest", "change", "message"),
    [
        (
            "hsmpool",
            hsm_pool("plain"),
            {"securityDomain": DOMAIN},
            "spec.securityDomain cannot be added to or removed from an existing pool",
        ),
        (
            "hsmpool",
            hsm_pool("recoverable", securityDomain=DOMAIN),
            {"securityDomain": {"quorum": 3}},
            "spec.securityDomain cannot be changed",
        ),
        (
            "key",
            key("fixed", kty="EC-HSM", curve="P-256"),
            {"kty": "RSA-HSM"},
            "spec.kty cannot be changed",
        ),
        (
            "key",
            key("fixed-curve", kty="EC-HSM", curve="P-256"),
            {"curve": "P-384"},
            "spec.curve cannot be changed",
        ),
        (
            "vault",
            vault("guarded", softDelete={"retentionDays": 7, "purgeProtection": True}),
            {"softDelete": {"retentionDays": 7, "purgeProtection": False}},
            "softDelete.purgeProtection cannot be turned off once it is on",
        ),
        (
            "vault",
            vault("moves"),
            {"hsmPoolRef": {"name": "elsewhere"}},
            "spec.hsmPoolRef cannot be changed",
        ),
        (
            "vaultsecret",
            vault_secret("typed", contentType="text/plain"),
            {"contentType": "application/json"},
            "spec.contentType cannot be changed",
        ),
        (
            "vaultsecret",
            vault_secret("untyped"),
            {"contentType": "text/plain"},
            "spec.contentType cannot be changed",
        ),
        (
            "vaultsecret",
            vault_secret("typed-once", contentType="text/plain"),
            {"contentType": None},
            "spec.contentType cannot be changed",
        ),
        (
            "vaultsecret",
            vault_secret("switched"),
            {"source": {"generate": None, "external": {}}},
            "spec.source cannot switch between generate, fromSecret and external",
        ),
        (
            "vaultsecret",
            vault_secret("imported", source={"fromSecret": {"name": "a", "key": "k"}}),
            {"source": {"fromSecret": {"name": "b"}}},
            "spec.source.fromSecret cannot be changed",
        ),
    ],
    ids=[
        "pool-security-domain-added",
        "pool-security-domain-changed",
        "key-kty",
        "key-curve",
        "vault-purge-protection",
        "vault-pool",
        "secret-content-type",
        "secret-content-type-set",
        "secret-content-type-removed",
        "secret-source-kind",
        "secret-source-imported-from",
    ],
)
def test_an_immutable_field_change_is_rejected(
    release: Release,
    namespace: str,
    kind: str,
    manifest: dict[str, Any],
    change: dict[str, Any],
    message: str,
) -> None:
    release.k("-n", namespace, "create", "-f", "-", stdin=json.dumps(manifest))
    name = manifest["metadata"]["name"]
    refused = release.k(
        "-n",
        namespace,
        "patch",
        kind,
        name,
        "--type=merge",
        "-p",
        json.dumps({"spec": change}),
        check=False,
    )
    assert refused.returncode != 0, f"{kind} {name}: the change was accepted"
    assert message in refused.stderr, refused.stderr
