"""Builders turn an HsmPool into its child objects; compared with golden files, no cluster.

Regenerate the golden files after an intended change with
`STRONGROOM_UPDATE_GOLDEN=1 ./scripts/test tests/unit/test_builders.py` and review the diff.
"""

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from strongroom.builders.common import Owner
from strongroom.builders.pool import (
    OperatorSettings,
    Pool,
    PullPolicy,
    build_children,
    build_pool_secret,
    build_tls_secret,
    build_token_review_binding,
    build_vault_service,
    vault_uri,
)
from strongroom.models import HsmPoolSpec

GOLDEN = Path(__file__).parent / "golden"
SETTINGS = OperatorSettings(
    image="strongroom.io/strongroom:dev", allowed_images=("registry.example/strongroom-vendor:1",)
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


def test_server_and_sidecar_share_the_socket_and_only_the_sidecar_opens_the_tokens() -> None:
    pod = _pod(_pool("default"))
    server, hsm = pod["containers"]
    assert server["args"][0] == "vault-server" and hsm["args"][0] == "hsm"
    socket = server["args"][server["args"].index("--hsm-socket") + 1]
    assert hsm["args"][hsm["args"].index("--socket") + 1] == socket
    mounts = {c["name"]: {m["name"] for m in c["volumeMounts"]} for c in pod["containers"]}
    assert "hsm-socket" in mounts["vault-server"] & mounts["hsm"]
    # The pool's volume holds the tokens (the sidecar's) and the record storage (the
    # server's); only the sidecar has the pool secret the token PINs come from.
    assert "tokens" in mounts["hsm"] & mounts["vault-server"]
    data_dir = server["args"][server["args"].index("--data-dir") + 1]
    state_dir = hsm["args"][hsm["args"].index("--state-dir") + 1]
    assert data_dir.startswith(state_dir + "/") and not data_dir.endswith("/tokens")
    assert "pool-secret" in mounts["hsm"] and "pool-secret" not in mounts["vault-server"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["hsm-socket"]["emptyDir"]["medium"] == "Memory"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}


@pytest.mark.parametrize("policy", ["Always", "IfNotPresent", "Never"])
def test_both_containers_take_the_operators_pull_policy(policy: PullPolicy) -> None:
    settings = replace(SETTINGS, image_pull_policy=policy)
    for case in POOL_INPUTS:  # the operator's image and an allowed one alike
        [stateful_set] = [
            o for o in build_children(_pool(case), settings) if o["kind"] == "StatefulSet"
        ]
        containers = stateful_set["spec"]["template"]["spec"]["containers"]
        assert [(c["name"], c["imagePullPolicy"]) for c in containers] == [
            ("vault-server", policy),
            ("hsm", policy),
        ]


def test_the_pool_takes_the_operator_by_its_client_certificate_only() -> None:
    pool = _pool("default")
    server = _pod(pool)["containers"][0]
    args = server["args"]
    assert "--admin-subject" not in args
    client_ca = args[args.index("--client-ca") + 1]
    assert client_ca == "/etc/strongroom/tls/client-ca.crt"
    assert args[args.index("--admin-client-name") + 1] == "strongroom-operator"
    tls = next(m for m in server["volumeMounts"] if m["name"] == "tls")
    secret = build_tls_secret(pool, "cert", "key", "server-ca", "client-ca")
    assert client_ca == f"{tls['mountPath']}/client-ca.crt"
    assert secret["stringData"]["client-ca.crt"] == "client-ca"
    volume = next(v for v in _pod(pool)["volumes"] if v["name"] == "tls")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    config = next(o for o in build_children(pool, SETTINGS) if o["kind"] == "ConfigMap")
    assert '"namespace": "team-a"' in config["data"]["config.json"]


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


def test_the_pool_certificate_names_exactly_the_pool_and_the_vaults_given() -> None:
    pool = _pool("default")
    host = vault_uri("payments", "team-a").removeprefix("https://")
    assert pool.tls_hosts(["payments"]) == [
        "main-pool.team-a.svc",
        "main-pool.team-a.svc.cluster.local",
        host,
        f"{host}.cluster.local",
    ]
    assert pool.tls_hosts([]) == pool.hosts
    assert not [h for h in pool.tls_hosts(["payments", "billing"]) if "*" in h]


def test_the_binding_of_a_pool_grants_token_review_only_and_names_its_uid() -> None:
    pool = _pool("default")
    binding = build_token_review_binding(pool)
    assert binding["roleRef"]["name"] == "strongroom-token-reviewer"
    assert binding["metadata"]["name"] == f"strongroom-pool-{pool.owner.uid}"
    assert binding["metadata"]["labels"]["strongroom.io/owner-uid"] == pool.owner.uid


def test_every_namespaced_child_names_its_owner() -> None:
    pool = _pool("default")
    for obj in build_children(pool, SETTINGS) + [build_pool_secret(pool, "00" * 32)]:
        assert obj["metadata"]["labels"]["strongroom.io/owner-uid"] == pool.owner.uid


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
    applied = build_children(pool, SETTINGS) + [
        build_tls_secret(pool, "cert", "key", "ca", "client-ca")
    ]
    made_once = [build_token_review_binding(pool), build_pool_secret(pool, "00" * 32)]
    plural = {"PersistentVolumeClaim": "persistentvolumeclaims", "ConfigMap": "configmaps"}
    for obj in applied + made_once:
        group = obj["apiVersion"].rpartition("/")[0]
        resource = plural.get(obj["kind"], obj["kind"].lower() + "s")
        needed = {"get", "create"} | ({"patch"} if obj in applied else set())
        assert needed <= granted.get((group, resource), set()), obj["kind"]
    # The pool's binding is deleted with the pool; it grants what the operator may bind.
    assert "delete" in granted[("rbac.authorization.k8s.io", "clusterrolebindings")]
    bind = next(rule for rule in role["rules"] if "bind" in rule["verbs"])
    assert bind["resourceNames"] == [build_token_review_binding(pool)["roleRef"]["name"]]
