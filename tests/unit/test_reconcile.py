"""Pure parts of reconciling: error mapping, conditions, vault configs, certificate renewal."""

import base64
import datetime
from typing import Any

import aiohttp
import kopf
import pydantic
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from strongroom.builders.common import Owner
from strongroom.builders.pool import Pool, build_tls_secret
from strongroom.models import HsmPoolSpec, KeySpec, VaultSpec
from strongroom.operator.reporting import failure_to_kopf
from strongroom.reconcile.certificate import needs_new_certificate
from strongroom.reconcile.conditions import with_condition
from strongroom.reconcile.errors import (
    Conflict,
    InvalidSpec,
    NotReady,
    PoolApiError,
    Unavailable,
    classify,
)
from strongroom.reconcile.kube import path
from strongroom.reconcile.vault import vault_config
from strongroom.tls import issue_server_cert, make_ca
from strongroom.vault.config import VaultConfig

CANARY = "canary-Zm9vYmFy-do-not-leak"


def _api_error(status: int) -> ApiException:
    error = ApiException(status=status, reason="Reason")
    error.body = f'{{"message": "{CANARY}"}}'
    return error


@pytest.mark.parametrize(
    "exc,kind,retry",
    [
        (_api_error(409), Conflict, True),
        (_api_error(403), Unavailable, True),
        (_api_error(500), Unavailable, True),
        (_api_error(422), InvalidSpec, False),
        (
            PoolApiError(409, "Conflict", "Purge protection cannot be turned off"),
            InvalidSpec,
            False,
        ),
        (PoolApiError(400, "BadParameter", "bad host"), InvalidSpec, False),
        (PoolApiError(503, "ServiceUnavailable", "hsm down"), Unavailable, True),
        (aiohttp.ClientConnectionError(CANARY), NotReady, True),
        (TimeoutError(), NotReady, True),
    ],
)
def test_failures_are_sorted_into_retry_or_not(exc: Exception, kind: type, retry: bool) -> None:
    error = classify(exc)
    assert isinstance(error, kind)
    assert (error.retry_after is not None) == retry
    assert CANARY not in error.message


def test_an_unexpected_error_is_retried_without_its_text() -> None:
    error = classify(RuntimeError(CANARY))
    assert error.retry_after is not None and error.reason == "InternalError"
    assert CANARY not in error.message and "RuntimeError" in error.message


def test_an_invalid_spec_says_which_field_and_not_its_value() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        KeySpec.model_validate({"vaultRef": {"name": "v"}, "kty": CANARY})
    error = classify(caught.value)
    assert isinstance(error, InvalidSpec) and error.retry_after is None
    assert "kty" in error.message and CANARY not in error.message


class _Patch:
    def __init__(self) -> None:
        self.status: dict[str, Any] = {}


def _body(status: dict[str, Any] | None = None) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": "strongroom.io/v1alpha1",
            "kind": "Vault",
            "metadata": {"name": "v", "namespace": "ns", "uid": "u", "generation": 3},
            "spec": {},
            "status": status or {},
        }
    )


def test_failures_become_a_ready_condition_and_a_kopf_error(monkeypatch: Any) -> None:
    events: list[dict[str, Any]] = []
    monkeypatch.setattr(kopf, "event", lambda body, **kw: events.append(kw))
    patch = _Patch()
    result = failure_to_kopf(NotReady("HsmPool 'p' is not Ready yet"), _body(), patch)  # type: ignore[arg-type]
    assert isinstance(result, kopf.TemporaryError) and result.delay == NotReady.retry_after
    ready = patch.status["conditions"][-1]
    assert ready["type"] == "Ready" and ready["status"] == "False"
    assert ready["reason"] == "NotReady" and ready["observedGeneration"] == 3
    assert events == []  # waiting is normal: no Warning

    patch = _Patch()
    result = failure_to_kopf(InvalidSpec("no such thing"), _body(), patch)  # type: ignore[arg-type]
    assert isinstance(result, kopf.PermanentError)
    assert events == [{"type": "Warning", "reason": "InvalidSpec", "message": "no such thing"}]

    patch = _Patch()
    failure_to_kopf(RuntimeError(CANARY), _body(), patch)  # type: ignore[arg-type]
    assert CANARY not in repr(patch.status) and CANARY not in repr(events)


def test_ready_keeps_its_transition_time_while_its_status_holds() -> None:
    first = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    later = first + datetime.timedelta(hours=1)
    conditions = with_condition([], "Ready", False, "PoolNotReady", "waiting", 1, first)
    conditions = with_condition(conditions, "Ready", False, "PoolNotReady", "waiting", 2, later)
    assert conditions[0].last_transition_time == first and conditions[0].observed_generation == 2
    conditions = with_condition(conditions, "Ready", True, "VaultReady", "served", 2, later)
    assert len(conditions) == 1 and conditions[0].last_transition_time == later


def test_vault_config_grants_roles_and_service_accounts_and_the_pool_accepts_it() -> None:
    spec = VaultSpec.model_validate(
        {
            "hsmPoolRef": {"name": "main"},
            "access": [
                {"serviceAccount": {"name": "app"}, "roles": ["CryptoUser"]},
                {
                    "serviceAccount": {"name": "ci", "namespace": "build"},
                    "roles": ["SecretsUser"],
                    "keys": ["get"],
                },
                {"subject": "system:serviceaccount:ops:admin", "roles": ["Administrator"]},
                {"serviceAccount": {"name": "certs"}, "roles": ["CertificatesOfficer"]},
                {"serviceAccount": {"name": "tls"}, "roles": ["CertificateUser"]},
                {"serviceAccount": {"name": "audit"}, "roles": ["Reader"]},
                {"serviceAccount": {"name": "renew"}, "certificates": ["get", "create"]},
            ],
            "softDelete": {"retentionDays": 30, "purgeProtection": True},
        }
    )
    config = vault_config("payments", "team-a", spec)
    assert config["hosts"][0] == "payments-vault.team-a.svc"
    assert config["audience"] == "https://payments-vault.team-a.svc"
    access = {entry["subject"]: entry for entry in config["access"]}
    app = access["system:serviceaccount:team-a:app"]
    assert "sign" in app["keys"] and "delete" not in app["keys"] and app["secrets"] == []
    assert access["system:serviceaccount:build:ci"] == {
        "subject": "system:serviceaccount:build:ci",
        "keys": ["get"],
        "secrets": ["get", "list"],
        "certificates": [],
    }
    parsed = VaultConfig.parse(config | {"name": "payments"})
    assert parsed.retention_days == 30 and parsed.purge_protection
    assert "purge" in parsed.permissions("system:serviceaccount:ops:admin", "keys")

    # Certificates, as Azure's roles grant them: the officer manages them but reads no
    # secret; the certificate user reads them and their secret (the private key when
    # exportable); the reader sees them; a plain grant is kept as given.
    def granted(name: str, kind: str) -> set[str]:
        return set(parsed.permissions(f"system:serviceaccount:team-a:{name}", kind))

    assert {"create", "delete", "purge", "managecontacts", "setissuers"} <= granted(
        "certs", "certificates"
    )
    assert "get" not in granted("certs", "secrets")
    assert granted("tls", "certificates") == {"get", "list"} and granted("tls", "secrets") == {
        "get"
    }
    assert granted("audit", "certificates") == {"get", "list", "getissuers", "listissuers"}
    assert "get" not in granted("audit", "secrets")
    assert granted("renew", "certificates") == {"get", "create"}
    assert "purge" in parsed.permissions("system:serviceaccount:ops:admin", "certificates")
    assert granted("app", "certificates") == set()


def test_pool_certificates_are_renewed_when_missing_foreign_expiring_or_misnamed() -> None:
    pool = Pool(Owner("HsmPool", "main", "team-a", "u"), HsmPoolSpec())
    ca, client_ca = make_ca("test CA"), make_ca("test client CA")
    hosts = pool.tls_hosts(["payments"])
    now = datetime.datetime.now(datetime.UTC)

    def secret(
        issued_by: Any, names: list[str], days: int = 365, client: Any = client_ca
    ) -> dict[str, Any]:
        issued = issue_server_cert(issued_by, names, days=days)
        built = build_tls_secret(
            pool,
            issued.cert_pem.decode(),
            issued.key_pem.decode(),
            issued_by.cert_pem.decode(),
            client.cert_pem.decode(),
        )
        return {
            "data": {
                k: base64.b64encode(v.encode()).decode() for k, v in built["stringData"].items()
            }
        }

    assert needs_new_certificate(None, ca, client_ca, hosts, now)
    assert not needs_new_certificate(secret(ca, hosts), ca, client_ca, hosts, now)
    assert needs_new_certificate(secret(make_ca("other"), hosts), ca, client_ca, hosts, now)
    assert needs_new_certificate(secret(ca, hosts, days=10), ca, client_ca, hosts, now)
    assert needs_new_certificate(secret(ca, hosts[:2]), ca, client_ca, hosts, now)
    # A vault deleted from the pool: its names leave the certificate too.
    assert needs_new_certificate(secret(ca, hosts), ca, client_ca, pool.hosts, now)
    # A new client CA reaches the pool with a new Secret.
    other_client = make_ca("other client CA")
    assert needs_new_certificate(secret(ca, hosts, client=other_client), ca, client_ca, hosts, now)


def test_api_paths_of_core_named_and_cluster_scoped_kinds() -> None:
    assert path("v1", "Secret", "ns", "s") == "/api/v1/namespaces/ns/secrets/s"
    assert path("apps/v1", "StatefulSet", "ns") == "/apis/apps/v1/namespaces/ns/statefulsets"
    assert (
        path("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", None, "b")
        == "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/b"
    )
    assert path("strongroom.io/v1alpha1", "HsmPool", "ns", "p").endswith("/hsmpools/p")


def test_the_operator_registers_handlers_for_pools_and_vaults() -> None:
    import strongroom.operator.main  # noqa: F401

    registry = kopf.get_default_registry()
    plurals = {
        handler.selector.plural
        for handler in registry._changing.get_all_handlers()
        if handler.selector is not None
    }
    assert {"hsmpools", "vaults"} <= plurals


def test_the_operator_takes_allowed_pool_images_and_no_token_for_pools(monkeypatch: Any) -> None:
    import argparse

    from strongroom.operator.options import add_arguments

    monkeypatch.setenv("STRONGROOM_ALLOWED_IMAGES", "registry.example/a:1, registry.example/b:2")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--allowed-image", "registry.example/c:3"])
    assert args.allowed_image == [
        "registry.example/a:1",
        "registry.example/b:2",
        "registry.example/c:3",
    ]
    assert not hasattr(args, "pool_token_file") and not hasattr(args, "admin_subject")
    monkeypatch.delenv("STRONGROOM_ALLOWED_IMAGES")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args([]).allowed_image == []


def test_the_operator_takes_the_pools_pull_policy(monkeypatch: Any) -> None:
    import argparse

    from strongroom.operator.options import add_arguments

    def parse(*args: str) -> Any:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        return parser.parse_args(args).pool_image_pull_policy

    monkeypatch.delenv("STRONGROOM_POOL_IMAGE_PULL_POLICY", raising=False)
    assert parse() == "IfNotPresent"
    monkeypatch.setenv("STRONGROOM_POOL_IMAGE_PULL_POLICY", "Never")
    assert parse() == "Never"
    assert parse("--pool-image-pull-policy", "Always") == "Always"
    with pytest.raises(SystemExit):
        parse("--pool-image-pull-policy", "Sometimes")
