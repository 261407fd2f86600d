"""A hostile tenant against the operator: each test is an attack, run through the reconciles
with a recording Kubernetes double and a pool double (no cluster, no pool pod).

- the operator never adopts, patches or deletes an object it did not make (finding 7);
- pools' cluster-scoped bindings cannot collide, and grant only TokenReview (finding 7);
- a pool image outside the operator's allowlist makes nothing (finding 1);
- a Kubernetes Secret is imported only when it says so itself (finding 6);
- pool certificates name exactly the pool and its vaults, pushed at once (finding 1).
"""

import asyncio
import base64
import copy
import itertools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
import pytest
from cryptography import x509
from kubernetes_asyncio.client.exceptions import ApiException

from strongroom.builders.common import Owner
from strongroom.builders.pool import OperatorSettings, Pool, build_token_review_binding
from strongroom.models import (
    HsmPoolSpec,
    HsmPoolStatus,
    VaultSecretSpec,
    VaultSecretStatus,
    VaultSpec,
    VaultStatus,
)
from strongroom.operator.reporting import failure_to_kopf
from strongroom.reconcile import secret as secret_reconcile
from strongroom.reconcile.ca import ensure_ca
from strongroom.reconcile.context import Context
from strongroom.reconcile.errors import ReconcileError, classify
from strongroom.reconcile.pool import delete_pool, reconcile_pool
from strongroom.reconcile.poolapi import VaultAddress
from strongroom.reconcile.secret import reconcile_secret
from strongroom.reconcile.vault import reconcile_vault
from strongroom.tls import make_ca

IMAGE = "strongroom.io/strongroom:dev"
CANARY = "canary-aW1wb3J0-never-in-a-message"
Key = tuple[str, str | None, str]  # (kind, namespace, name)


class RecordingKube:
    """The Kubernetes API as the operator sees it: objects by kind, namespace and name, and a
    record of every write. Refuses what the API server refuses: a create over an existing
    object, and a write or delete whose uid precondition does not match."""

    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str | None, str]] = []

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """An object someone else made (a tenant, an admin): stored without a write record."""
        obj = stored(obj)
        obj["metadata"].setdefault("uid", str(uuid.uuid4()))
        meta = obj["metadata"]
        self.objects[(obj["kind"], meta.get("namespace"), meta["name"])] = obj
        return obj

    @staticmethod
    def _key(obj: dict[str, Any]) -> Key:
        meta = obj["metadata"]
        return (obj["kind"], meta.get("namespace"), meta["name"])

    async def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def list_objects(
        self, api_version: str, kind: str, namespace: str | None
    ) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(obj)
            for (k, ns, _), obj in sorted(self.objects.items(), key=lambda item: item[0][2])
            if k == kind and (namespace is None or ns == namespace)
        ]

    async def create_once(self, obj: dict[str, Any]) -> bool:
        key = self._key(obj)
        self.writes.append(("create", *key))
        if key in self.objects:
            return False
        self.put(obj)
        return True

    async def apply(
        self, obj: dict[str, Any], found: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        key = self._key(obj)
        self.writes.append(("apply", *key))
        found = self.objects.get(key)
        uid = obj["metadata"].get("uid")
        if uid is not None and (found is None or found["metadata"]["uid"] != uid):
            raise ApiException(status=409, reason="Conflict")
        merged = stored(obj)
        merged["metadata"]["uid"] = found["metadata"]["uid"] if found else str(uuid.uuid4())
        # As server-side apply keeps what another write set: the owner references the
        # object was created with stay when an apply leaves them out.
        refs = (found or {}).get("metadata", {}).get("ownerReferences")
        if refs and "ownerReferences" not in merged["metadata"]:
            merged["metadata"]["ownerReferences"] = refs
        self.objects[key] = merged
        return copy.deepcopy(merged)

    async def set_owner_references(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        resource_version: str | None,
        references: list[dict[str, Any]],
    ) -> dict[str, Any]:
        key = (kind, namespace, name)
        self.writes.append(("owners", *key))
        found = self.objects.get(key)
        if found is None:
            raise ApiException(status=404, reason="Not Found")
        if resource_version is not None and found["metadata"].get("resourceVersion") not in (
            None,
            resource_version,
        ):
            raise ApiException(status=409, reason="Conflict")
        if references:
            found["metadata"]["ownerReferences"] = copy.deepcopy(references)
        else:
            found["metadata"].pop("ownerReferences", None)
        return copy.deepcopy(found)

    async def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        uid: str | None = None,
    ) -> None:
        key = (kind, namespace, name)
        self.writes.append(("delete", *key))
        found = self.objects.get(key)
        if found is None:
            return
        if uid is not None and found["metadata"]["uid"] != uid:
            raise ApiException(status=409, reason="Conflict")
        del self.objects[key]

    def written(self, kind: str, namespace: str | None, name: str) -> list[str]:
        return [verb for verb, k, ns, n in self.writes if (k, ns, n) == (kind, namespace, name)]


def stored(obj: dict[str, Any]) -> dict[str, Any]:
    """As the API server keeps it: a Secret's stringData moved into data, base64-encoded."""
    obj = copy.deepcopy(obj)
    text = obj.pop("stringData", None)
    if text is not None:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in text.items()}
        obj["data"] = obj.get("data", {}) | encoded
    return obj


def decoded(obj: dict[str, Any], key: str) -> str:
    return base64.b64decode(obj["data"][key]).decode()


class PoolDouble:
    """A pool's management API: health, vaults, and the certificate it serves."""

    def __init__(self, *, takes_certificates: bool = True) -> None:
        self.takes_certificates = takes_certificates
        self.serving: x509.Certificate | None = None
        self.vaults: dict[str, dict[str, Any]] = {}
        self.created_secrets: list[tuple[str, dict[str, Any]]] = []

    async def health(self, endpoint: str) -> dict[str, Any]:
        return {"status": "ok", "hsmPlatform": "SoftHSM"}

    async def put_tls(self, endpoint: str, certificate_pem: str, private_key_pem: str) -> None:
        assert "PRIVATE KEY" in private_key_pem
        if self.takes_certificates:
            self.serving = x509.load_pem_x509_certificate(certificate_pem.encode())

    async def get_tls(self, endpoint: str) -> dict[str, Any]:
        if self.serving is None:
            return {"dnsNames": [], "notAfter": "1970-01-01T00:00:00Z"}
        return {
            "dnsNames": dns_names(self.serving),
            "notAfter": self.serving.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
        }

    async def put_vault(self, endpoint: str, name: str, config: dict[str, Any]) -> None:
        self.vaults[name] = config

    async def get_secret(self, vault: VaultAddress, name: str) -> dict[str, Any] | None:
        return None

    async def create_secret(
        self, vault: VaultAddress, name: str, owner: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        self.created_secrets.append((name, body))
        return {
            "name": name,
            "owner": owner,
            "id": f"https://{vault.host}/secrets/{name}/a",
            "versions": [{"version": "a", "created": 1_800_000_000, "enabled": True}],
            "deleted": None,
        }


def dns_names(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(san.get_values_for_type(x509.DNSName))


_SERVER_CA = make_ca("test server CA")
_CLIENT_CA = make_ca("test client CA")


def context(kube: RecordingKube, pools: PoolDouble, allowed: tuple[str, ...] = ()) -> Context:
    return Context(
        kube=kube,  # type: ignore[arg-type]
        pools=pools,  # type: ignore[arg-type]
        ca=_SERVER_CA,
        client_ca=_CLIENT_CA,
        settings=OperatorSettings(image=IMAGE, allowed_images=allowed),
    )


def pool_of(name: str, namespace: str = "team-a", **spec: Any) -> Pool:
    owner = Owner("HsmPool", name, namespace, str(uuid.uuid4()))
    return Pool(owner, HsmPoolSpec.model_validate(spec))


def run(step: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(step())  # type: ignore[arg-type]


def failure(step: Callable[[], Awaitable[Any]]) -> ReconcileError:
    with pytest.raises(Exception) as caught:
        run(step)
    return classify(caught.value)


def reconciled(ctx: Context, pool: Pool) -> HsmPoolStatus:
    status: HsmPoolStatus = run(lambda: reconcile_pool(ctx, pool, HsmPoolStatus(), 1))
    return status


def ready(status: Any) -> tuple[str, str]:
    condition = next(c for c in status.conditions if c.type == "Ready")
    return condition.status, condition.reason


def hsm_pool_body(pool: Pool) -> dict[str, Any]:
    """The HsmPool as the API server holds it once the pool reconcile said Ready."""
    return {
        "apiVersion": "strongroom.io/v1alpha1",
        "kind": "HsmPool",
        "metadata": {
            "name": pool.owner.name,
            "namespace": pool.owner.namespace,
            "uid": pool.owner.uid,
        },
        "spec": pool.spec.wire(),
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def vault_body(name: str, pool: str, namespace: str = "team-a") -> dict[str, Any]:
    return {
        "apiVersion": "strongroom.io/v1alpha1",
        "kind": "Vault",
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())},
        "spec": {"hsmPoolRef": {"name": pool}},
    }


# --- finding 7: never adopt, patch or delete what the operator did not make ---------------


def foreign(kind: str, name: str, namespace: str = "team-a") -> dict[str, Any]:
    """An object a tenant made under a name the operator would use, with a marker."""
    api = "apps/v1" if kind == "StatefulSet" else "v1"
    body: dict[str, Any] = {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "labels": {"made-by": "tenant"}},
    }
    if kind == "Secret":
        body["data"] = {"tls.crt": base64.b64encode(CANARY.encode()).decode()}
    return body


@pytest.mark.parametrize(
    "kind,name",
    [
        ("Secret", "main-pool-tls"),
        ("Secret", "main-pool-secret"),
        ("StatefulSet", "main-pool"),
        ("Service", "main-pool"),
        ("ConfigMap", "main-pool-config"),
        ("ServiceAccount", "main-pool"),
        ("PersistentVolumeClaim", "main-pool-tokens"),
    ],
)
def test_a_pool_never_takes_over_an_object_it_did_not_make(kind: str, name: str) -> None:
    kube, pools = RecordingKube(), PoolDouble()
    planted = kube.put(foreign(kind, name))
    pool = pool_of("main")
    error = failure(lambda: reconcile_pool(context(kube, pools), pool, HsmPoolStatus(), 1))
    assert error.reason == "ObjectConflict", error.message
    assert f"{kind} team-a/{name}" in error.message
    assert error.retry_after is not None  # retried once a person removes the object
    assert kube.written(kind, "team-a", name) in ([], ["create"])
    assert kube.objects[(kind, "team-a", name)] == planted  # untouched


def test_an_object_marked_for_another_pool_is_not_taken_either() -> None:
    kube, pools = RecordingKube(), PoolDouble()
    first = pool_of("main")
    reconciled(context(kube, pools), first)
    # The same name, a new HsmPool (another uid): the old one's owned children are not its own.
    second = Pool(Owner("HsmPool", "main", "team-a", str(uuid.uuid4())), first.spec)
    error = failure(lambda: reconcile_pool(context(kube, pools), second, HsmPoolStatus(), 1))
    assert error.reason == "ObjectConflict"


def test_a_retained_token_store_is_found_again_by_a_pool_of_the_same_name() -> None:
    kube, pools = RecordingKube(), PoolDouble()
    first = pool_of("main")  # deletionPolicy Retain: claim and pool secret outlive it
    reconciled(context(kube, pools), first)
    for key in list(kube.objects):
        refs = kube.objects[key]["metadata"].get("ownerReferences") or []
        if any(ref["uid"] == first.owner.uid for ref in refs):
            del kube.objects[key]  # the garbage collector after the HsmPool is deleted
    secret = kube.objects[("Secret", "team-a", "main-pool-secret")]
    again = Pool(Owner("HsmPool", "main", "team-a", str(uuid.uuid4())), first.spec)
    status = reconciled(context(kube, pools), again)
    assert ready(status) == ("True", "PoolReady")
    assert kube.objects[("Secret", "team-a", "main-pool-secret")] == secret  # never replaced


def owned_by(kube: RecordingKube, key: Key, uid: str) -> bool:
    refs = kube.objects[key]["metadata"].get("ownerReferences") or []
    return any(ref["uid"] == uid for ref in refs)


def collect_garbage(kube: RecordingKube, uid: str) -> None:
    """What the garbage collector does once the owner with this uid is deleted."""
    for key in [key for key in kube.objects if owned_by(kube, key, uid)]:
        del kube.objects[key]


@pytest.mark.parametrize("first, then", [("Delete", "Retain"), ("Retain", "Delete")])
def test_a_changed_deletion_policy_moves_the_token_store_and_pool_secret(
    first: str, then: str
) -> None:
    """deletionPolicy may change: Delete to Retain takes the owner reference off the claim
    and the pool secret (so deleting the pool keeps every key), Retain to Delete puts it on."""
    kube, pools = RecordingKube(), PoolDouble()
    pool = pool_of("main", deletionPolicy=first)
    reconciled(context(kube, pools), pool)
    state = [
        ("Secret", "team-a", "main-pool-secret"),
        ("PersistentVolumeClaim", "team-a", "main-pool-tokens"),
    ]
    assert all(owned_by(kube, key, pool.owner.uid) == (first == "Delete") for key in state)
    changed = Pool(pool.owner, pool.spec.model_copy(update={"deletion_policy": then}))
    reconciled(context(kube, pools), changed)
    assert all(owned_by(kube, key, pool.owner.uid) == (then == "Delete") for key in state)
    secret = kube.objects[state[0]]
    collect_garbage(kube, pool.owner.uid)
    assert all((key in kube.objects) == (then == "Retain") for key in state)
    if then == "Retain":
        assert kube.objects[state[0]] == secret  # the pool secret itself is never rewritten
        # ... and a pool of the same name finds them again.
        again = Pool(Owner("HsmPool", "main", "team-a", str(uuid.uuid4())), changed.spec)
        assert ready(reconciled(context(kube, pools), again)) == ("True", "PoolReady")


def test_a_vault_never_takes_over_a_service_it_did_not_make() -> None:
    kube, pools = RecordingKube(), PoolDouble()
    pool = pool_of("main")
    reconciled(context(kube, pools), pool)
    kube.put(hsm_pool_body(pool))
    planted = kube.put(foreign("Service", "payments-vault"))
    vault = kube.put(vault_body("payments", "main"))
    owner = Owner.of("Vault", vault["metadata"])
    spec = VaultSpec.model_validate(vault["spec"])
    error = failure(lambda: reconcile_vault(context(kube, pools), owner, spec, VaultStatus(), 1))
    assert error.reason == "ObjectConflict" and "Service team-a/payments-vault" in error.message
    assert kube.written("Service", "team-a", "payments-vault") in ([], ["create"])
    assert kube.objects[("Service", "team-a", "payments-vault")] == planted
    assert "payments" not in pools.vaults  # nothing served under a name it does not own


def test_pools_whose_names_collide_once_joined_get_distinct_bindings() -> None:
    kube, pools = RecordingKube(), PoolDouble()
    first, second = pool_of("b-c", "a"), pool_of("c", "a-b")
    for pool in (first, second):
        reconciled(context(kube, pools), pool)
    bindings = run(
        lambda: kube.list_objects("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", None)
    )
    assert len(bindings) == 2
    by_namespace = {b["subjects"][0]["namespace"]: b for b in bindings}
    assert by_namespace["a"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "b-c-pool", "namespace": "a"}
    ]
    assert by_namespace["a-b"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "c-pool", "namespace": "a-b"}
    ]
    assert by_namespace["a"]["metadata"]["name"] != by_namespace["a-b"]["metadata"]["name"]


def test_deleting_one_pool_never_deletes_another_pools_binding() -> None:
    kube, pools = RecordingKube(), PoolDouble()
    first, second = pool_of("b-c", "a"), pool_of("c", "a-b")
    for pool in (first, second):
        reconciled(context(kube, pools), pool)
    # A binding of the old naming scheme, made for the second pool: its name is what the
    # first pool's would have been. Deleting the first pool must leave it.
    legacy = kube.put(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {
                "name": "strongroom-pool-a-b-c",
                "labels": {
                    "app.kubernetes.io/managed-by": "strongroom-operator",
                    "app.kubernetes.io/instance": "c",
                    "strongroom.io/pool-namespace": "a-b",
                },
            },
            "roleRef": {"kind": "ClusterRole", "name": "system:auth-delegator"},
            "subjects": [{"kind": "ServiceAccount", "name": "c-pool", "namespace": "a-b"}],
        }
    )
    mine = build_token_review_binding(first)["metadata"]["name"]
    theirs = build_token_review_binding(second)["metadata"]["name"]
    run(lambda: delete_pool(context(kube, pools), first))
    assert ("ClusterRoleBinding", None, mine) not in kube.objects
    assert ("ClusterRoleBinding", None, theirs) in kube.objects
    assert kube.objects[("ClusterRoleBinding", None, "strongroom-pool-a-b-c")] == legacy


def test_a_binding_the_operator_did_not_make_is_neither_patched_nor_deleted() -> None:
    kube, pools = RecordingKube(), PoolDouble()
    pool = pool_of("main")
    name = build_token_review_binding(pool)["metadata"]["name"]
    planted = kube.put(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [],
        }
    )
    error = failure(lambda: reconcile_pool(context(kube, pools), pool, HsmPoolStatus(), 1))
    assert error.reason == "ObjectConflict" and name in error.message
    run(lambda: delete_pool(context(kube, pools), pool))
    assert kube.objects[("ClusterRoleBinding", None, name)] == planted
    assert kube.written("ClusterRoleBinding", None, name) in ([], ["create"])


def test_the_old_binding_of_a_pool_is_replaced_by_one_that_grants_only_token_review() -> None:
    kube, pools = RecordingKube(), PoolDouble()
    pool = pool_of("main")
    kube.put(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {
                "name": "strongroom-pool-team-a-main",
                "labels": {
                    "app.kubernetes.io/managed-by": "strongroom-operator",
                    "app.kubernetes.io/instance": "main",
                    "strongroom.io/pool-namespace": "team-a",
                },
            },
            "roleRef": {"kind": "ClusterRole", "name": "system:auth-delegator"},
            "subjects": [{"kind": "ServiceAccount", "name": "main-pool", "namespace": "team-a"}],
        }
    )
    reconciled(context(kube, pools), pool)
    bindings = run(
        lambda: kube.list_objects("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", None)
    )
    assert [b["roleRef"]["name"] for b in bindings] == ["strongroom-token-reviewer"]
    assert bindings[0]["metadata"]["labels"]["strongroom.io/owner-uid"] == pool.owner.uid


# --- finding 1: pool images from the operator's allowlist only ----------------------------


def test_a_pool_image_the_operator_does_not_allow_makes_nothing(monkeypatch: Any) -> None:
    kube, pools = RecordingKube(), PoolDouble()
    evil = pool_of("main", image="registry.evil/strongroom:1")
    error = failure(lambda: reconcile_pool(context(kube, pools), evil, HsmPoolStatus(), 1))
    assert error.reason == "ImageNotAllowed"
    assert "registry.evil/strongroom:1" in error.message and "allowedImages" in error.message
    assert kube.writes == [] and pools.serving is None

    events: list[dict[str, Any]] = []
    monkeypatch.setattr(kopf, "event", lambda body, **kw: events.append(kw))
    body = kopf.Body(hsm_pool_body(evil) | {"status": {}})
    patch = type("Patch", (), {"status": {}})()
    failure_to_kopf(error, body, patch)  # type: ignore[arg-type]
    assert events and events[0]["type"] == "Warning" and events[0]["reason"] == "ImageNotAllowed"
    assert patch.status["conditions"][-1]["status"] == "False"


def test_a_running_pool_keeps_its_image_when_its_spec_names_a_forbidden_one() -> None:
    kube, pools = RecordingKube(), PoolDouble()
    pool = pool_of("main")
    reconciled(context(kube, pools), pool)
    before = copy.deepcopy(kube.objects[("StatefulSet", "team-a", "main-pool")])
    changed = Pool(pool.owner, HsmPoolSpec.model_validate({"image": "registry.evil/x:1"}))
    writes = len(kube.writes)
    error = failure(lambda: reconcile_pool(context(kube, pools), changed, HsmPoolStatus(), 2))
    assert error.reason == "ImageNotAllowed"
    assert kube.objects[("StatefulSet", "team-a", "main-pool")] == before
    assert len(kube.writes) == writes


def test_allowed_images_are_the_operators_own_and_those_listed() -> None:
    kube, pools = RecordingKube(), PoolDouble()
    vendor = "registry.example/strongroom-vendor:1"
    pool = pool_of("main", image=vendor)
    status = reconciled(context(kube, pools, allowed=(vendor,)), pool)
    assert ready(status) == ("True", "PoolReady")
    stateful_set = kube.objects[("StatefulSet", "team-a", "main-pool")]
    images = {c["image"] for c in stateful_set["spec"]["template"]["spec"]["containers"]}
    assert images == {vendor}
    own = pool_of("other", image=IMAGE)
    assert ready(reconciled(context(RecordingKube(), PoolDouble()), own))[0] == "True"


# --- finding 1: certificates name exactly the pool and its vaults -------------------------


def served_names(pools: PoolDouble) -> list[str]:
    assert pools.serving is not None
    return dns_names(pools.serving)


def tls_secret_names(kube: RecordingKube, pool: str) -> list[str]:
    pem = decoded(kube.objects[("Secret", "team-a", f"{pool}-pool-tls")], "tls.crt")
    return dns_names(x509.load_pem_x509_certificate(pem.encode()))


def test_a_pool_certificate_names_the_pool_and_its_own_vaults_only() -> None:
    kube, pools = RecordingKube(), PoolDouble()
    kube.put(vault_body("payments", "main"))
    kube.put(vault_body("billing", "other"))  # another pool's vault, same namespace
    kube.put(vault_body("payments", "main", namespace="team-b"))  # another namespace
    pool = pool_of("main")
    reconciled(context(kube, pools), pool)
    expected = sorted(
        [
            "main-pool.team-a.svc",
            "main-pool.team-a.svc.cluster.local",
            "payments-vault.team-a.svc",
            "payments-vault.team-a.svc.cluster.local",
        ]
    )
    assert tls_secret_names(kube, "main") == expected
    assert served_names(pools) == expected
    assert not [name for name in expected if "*" in name]
    secret = kube.objects[("Secret", "team-a", "main-pool-tls")]
    assert decoded(secret, "client-ca.crt") == _CLIENT_CA.cert_pem.decode()
    assert decoded(secret, "ca.crt") == _SERVER_CA.cert_pem.decode()
    assert "PRIVATE KEY" not in decoded(secret, "client-ca.crt")


def test_a_new_vault_gets_its_names_into_the_running_pool_before_it_is_ready() -> None:
    kube, pools = RecordingKube(), PoolDouble(takes_certificates=False)
    pool = pool_of("main")
    kube.put(hsm_pool_body(pool))
    vault = kube.put(vault_body("payments", "main"))
    owner = Owner.of("Vault", vault["metadata"])
    spec = VaultSpec.model_validate(vault["spec"])
    # The pool does not serve the new names yet: the Vault waits, it is not Ready.
    error = failure(lambda: reconcile_vault(context(kube, pools), owner, spec, VaultStatus(), 1))
    assert error.reason == "CertificatePending" and "payments-vault.team-a.svc" in error.message
    assert "payments-vault.team-a.svc" in tls_secret_names(kube, "main")
    pools.takes_certificates = True
    status = run(lambda: reconcile_vault(context(kube, pools), owner, spec, VaultStatus(), 1))
    assert ready(status) == ("True", "VaultReady")
    assert "payments-vault.team-a.svc.cluster.local" in served_names(pools)
    assert status.audience == status.vault_uri == "https://payments-vault.team-a.svc"
    assert pools.vaults["payments"]["audience"] == "https://payments-vault.team-a.svc"


def test_a_certificate_is_not_reissued_while_its_names_hold() -> None:
    kube, pools = RecordingKube(), PoolDouble()
    pool = pool_of("main")
    reconciled(context(kube, pools), pool)
    issued = decoded(kube.objects[("Secret", "team-a", "main-pool-tls")], "tls.crt")
    pushed = pools.serving
    reconciled(context(kube, pools), pool)
    assert decoded(kube.objects[("Secret", "team-a", "main-pool-tls")], "tls.crt") == issued
    assert pools.serving is pushed  # served already: not pushed again


def test_the_operator_keeps_a_client_ca_apart_from_its_server_ca() -> None:
    kube = RecordingKube()
    server = run(lambda: ensure_ca(kube, "strongroom-system", "strongroom-ca", "server CA"))
    client = run(lambda: ensure_ca(kube, "strongroom-system", "strongroom-client-ca", "client CA"))
    assert server.cert_pem != client.cert_pem
    again = run(lambda: ensure_ca(kube, "strongroom-system", "strongroom-client-ca", "client CA"))
    assert again == client  # made once, then read back
    cert = x509.load_pem_x509_certificate(client.cert_pem)
    assert cert.subject.rfc4514_string() == "CN=client CA"
    assert ("Secret", "strongroom-system", "strongroom-client-ca") in kube.objects


# --- finding 6: a Secret is imported only when it opts in ---------------------------------


_names = itertools.count(1)


def import_from(annotations: dict[str, str] | None, monkeypatch: Any) -> tuple[Any, PoolDouble]:
    kube, pools = RecordingKube(), PoolDouble()
    meta: dict[str, Any] = {"name": "db", "namespace": "team-a"}
    if annotations is not None:
        meta["annotations"] = annotations
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta,
            "data": {"password": base64.b64encode(CANARY.encode()).decode()},
        }
    )

    async def address(*_: Any) -> VaultAddress:
        return VaultAddress("https://main-pool.team-a.svc", "v", "v-vault.team-a.svc")

    monkeypatch.setattr(secret_reconcile, "vault_address", address)
    owner = Owner("VaultSecret", "app-db", "team-a", f"uid-{next(_names)}")
    spec = VaultSecretSpec.model_validate(
        {"vaultRef": {"name": "v"}, "source": {"fromSecret": {"name": "db", "key": "password"}}}
    )

    async def step() -> VaultSecretStatus:
        return await reconcile_secret(context(kube, pools), owner, spec, VaultSecretStatus(), 1)

    try:
        return run(step), pools
    except Exception as exc:  # noqa: BLE001 - sorted and returned for the test to judge
        return classify(exc), pools


@pytest.mark.parametrize(
    "annotations",
    [None, {}, {"strongroom.io/allow-import": ""}, {"strongroom.io/allow-import": "other,app"}],
    ids=["none", "other-annotations", "empty", "other-names"],
)
def test_a_secret_that_does_not_name_the_importer_is_not_read_into_the_vault(
    annotations: dict[str, str] | None, monkeypatch: Any
) -> None:
    error, pools = import_from(annotations, monkeypatch)
    assert isinstance(error, ReconcileError) and error.reason == "ImportNotAllowed"
    assert "strongroom.io/allow-import" in error.message and "app-db" in error.message
    assert CANARY not in error.message
    assert error.retry_after is not None  # the Secret's owner may opt in later
    assert pools.created_secrets == []


def test_a_missing_secret_and_a_forbidden_one_look_the_same(monkeypatch: Any) -> None:
    async def address(*_: Any) -> VaultAddress:
        return VaultAddress("https://p", "v", "v-vault.team-a.svc")

    monkeypatch.setattr(secret_reconcile, "vault_address", address)
    owner = Owner("VaultSecret", "app-db", "team-a", "u")
    spec = VaultSecretSpec.model_validate(
        {"vaultRef": {"name": "v"}, "source": {"fromSecret": {"name": "db", "key": "password"}}}
    )
    ctx = context(RecordingKube(), PoolDouble())
    missing = failure(lambda: reconcile_secret(ctx, owner, spec, VaultSecretStatus(), 1))
    forbidden, _ = import_from(None, monkeypatch)
    assert (missing.reason, missing.message) == (forbidden.reason, forbidden.message)


@pytest.mark.parametrize("allowed", ["app-db", "other, app-db", "*", " * "])
def test_a_secret_that_names_the_importer_is_imported(allowed: str, monkeypatch: Any) -> None:
    status, pools = import_from({"strongroom.io/allow-import": allowed}, monkeypatch)
    assert isinstance(status, VaultSecretStatus), status
    assert ready(status) == ("True", "SecretReady")
    assert pools.created_secrets == [("app-db", {"value": CANARY})]
