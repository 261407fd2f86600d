"""Builders turn an HsmPool into its child objects; compared with golden files, no cluster.

Regenerate the golden files after an intended change with
`STRONGROOM_UPDATE_GOLDEN=1 ./scripts/test tests/unit/test_builders.py` and review the diff.
"""

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from strongroom.builders.common import Owner
from strongroom.builders.pool import (
    OperatorSettings,
    Pool,
    build_children,
    build_pool_secret,
    build_token_review_binding,
    build_vault_service,
    vault_uri,
)
from strongroom.models import HsmPoolSpec

GOLDEN = Path(__file__).parent / "golden"
SETTINGS = OperatorSettings(
    image="strongroom.io/strongroom:dev",
    admin_subject="system:serviceaccount:strongroom-system:strongroom-operator",
)
POOL_INPUTS = {
    "default": {},
    "tuned": {
        "backend": "pkcs11",
        "pkcs11": {"module": "/opt/hsm/lib/libvendor.so"},
        "image": "registry.example/strongroom-vendor:1",
        "storage": {"size": "5Gi", "storageClassName": "fast"},
        "resources": {"vaultServer": {"requests": {"cpu": "250m", "memory": "128Mi"}}},
        "deletionPolicy": "Delete",
    },
}


def _pool(case: str) -> Pool:
    owner = Owner("HsmPool", "main", "team-a", "11111111-2222-3333-4444-555555555555")
    return Pool(owner, HsmPoolSpec.model_validate(POOL_INPUTS[case]))


def _check_golden(path: Path, objects: list[dict[str, Any]]) -> None:
    text = yaml.safe_dump_all(objects, sort_keys=False, width=100)
    if os.environ.get("STRONGROOM_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with STRONGROOM_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{path.name} differs from what the builders make"


@pytest.mark.parametrize("case", sorted(POOL_INPUTS))
def test_pool_children_match_the_golden_files(case: str) -> None:
    pool = _pool(case)
    vault = Owner("Vault", "payments", "team-a", "66666666-7777-8888-9999-000000000000")
    objects = build_children(pool, SETTINGS) + [
        build_token_review_binding(pool),
        build_vault_service(pool, vault),
    ]
    _check_golden(GOLDEN / "pool" / f"{case}.yaml", objects)


def _pod(pool: Pool) -> dict[str, Any]:
    stateful_set = next(o for o in build_children(pool, SETTINGS) if o["kind"] == "StatefulSet")
    pod: dict[str, Any] = stateful_set["spec"]["template"]["spec"]
    return pod


def test_the_pod_runs_unprivileged_with_a_read_only_root() -> None:
    pod = _pod(_pool("default"))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}


def test_server_and_sidecar_share_the_socket_and_only_the_sidecar_sees_the_token_store() -> None:
    pod = _pod(_pool("default"))
    server, hsm = pod["containers"]
    assert server["args"][0] == "vault-server" and hsm["args"][0] == "hsm"
    socket = server["args"][server["args"].index("--hsm-socket") + 1]
    assert hsm["args"][hsm["args"].index("--socket") + 1] == socket
    mounts = {c["name"]: {m["name"] for m in c["volumeMounts"]} for c in pod["containers"]}
    assert "hsm-socket" in mounts["vault-server"] & mounts["hsm"]
    assert "tokens" in mounts["hsm"] and "tokens" not in mounts["vault-server"]
    assert "pool-secret" in mounts["hsm"] and "pool-secret" not in mounts["vault-server"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["hsm-socket"]["emptyDir"]["medium"] == "Memory"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}
    admin = server["args"][server["args"].index("--admin-subject") + 1]
    assert admin == SETTINGS.admin_subject


def test_the_pool_secret_is_kept_unless_the_pool_says_delete() -> None:
    kept = build_pool_secret(_pool("default"), "00" * 32)
    assert "ownerReferences" not in kept["metadata"] and kept["immutable"] is True
    owned = build_pool_secret(_pool("tuned"), "00" * 32)
    assert owned["metadata"]["ownerReferences"][0]["kind"] == "HsmPool"


def test_vault_uri_passes_the_azure_sdk_challenge_check() -> None:
    from azure.keyvault.keys._shared.challenge_auth_policy import _validate_challenge_resource
    from azure.keyvault.keys._shared.http_challenge import HttpChallenge

    from strongroom.vault.app import bearer_challenge

    uri = vault_uri("payments", "team-a")
    assert uri == "https://payments-vault.team-a.svc"
    host = uri.removeprefix("https://")
    challenge = HttpChallenge(f"{uri}/keys", bearer_challenge(host))
    assert challenge.get_resource() == "https://team-a.svc"
    _validate_challenge_resource(challenge.get_resource(), f"{uri}/keys")


def test_the_pool_certificate_covers_every_vault_host() -> None:
    pool = _pool("default")
    host = vault_uri("payments", "team-a").removeprefix("https://")
    assert any(h == host or (h.startswith("*.") and host.endswith(h[1:])) for h in pool.tls_hosts)


def test_the_operator_rbac_covers_every_kind_the_builders_make() -> None:
    rbac = list(yaml.safe_load_all((GOLDEN.parents[2] / "deploy" / "rbac.yaml").read_text()))
    role = next(doc for doc in rbac if doc["kind"] == "ClusterRole")
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        if "resourceNames" not in rule
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    pool = _pool("default")
    made = build_children(pool, SETTINGS) + [
        build_token_review_binding(pool),
        build_pool_secret(pool, "00" * 32),
    ]
    plural = {"PersistentVolumeClaim": "persistentvolumeclaims", "ConfigMap": "configmaps"}
    for obj in made:
        group = obj["apiVersion"].rpartition("/")[0]
        resource = plural.get(obj["kind"], obj["kind"].lower() + "s")
        assert {"get", "create", "patch"} <= granted.get((group, resource), set()), obj["kind"]
