"""An HsmPool's children: pool secret, TLS secret, config, token store, workload, Services.

The pod runs `strongroom vault-server` with the `strongroom hsm` sidecar; they
share a unix socket in an in-memory emptyDir. One replica, always: one
process owns a token directory.
"""

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from ..models import HsmPoolSpec
from ..models.base import ResourceRequirements
from ..tls import OPERATOR_CLIENT_NAME
from .common import AUDIENCE, HTTPS_PORT, OWNER_UID_LABEL, Owner, labels, metadata

COMPONENT = "hsm-pool"
POOL_SECRET_KEY = "pool-secret"  # noqa: S105 - the name of a key in the Secret
SOFTHSM2_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
RUN_AS = 65532  # no name in the image; any non-root id owning the token store will do

SOCKET_DIR = "/run/strongroom"
TOKEN_DIR = "/var/lib/strongroom"  # noqa: S105 - the pool's volume: tokens and records
RECORDS_DIR = f"{TOKEN_DIR}/records"  # the vault server's record storage, on the same volume
CONFIG_DIR = "/etc/strongroom/config"
TLS_DIR = "/etc/strongroom/tls"
POOL_SECRET_DIR = "/etc/strongroom/pool"  # noqa: S105 - a mount path
BACKUP_DIR = "/var/lib/strongroom-backups"  # the backup volume, in the vault server
RESTORE_DIR = "/var/lib/strongroom-restore"  # the volume a new pool is recovered from
# On the token store's claim when the operator made it for a new pool that starts awaiting
# the activation of its security domain (spec.securityDomain, spec.recoverFrom). Set at
# creation, never later: a store that existed before (a retained one, or any made before
# security domains) is never started awaiting, as it would wait for an upload forever.
AWAIT_ANNOTATION = "strongroom.io/await-activation"
SECURITY_DOMAIN_KEY = "security-domain.json"
CLIENT_CA_KEY = "client-ca.crt"
# Made by the chart: `create` on tokenreviews, nothing else. Each pool's ServiceAccount is
# bound to it so that its vault server can check bearer tokens.
TOKEN_REVIEWER_ROLE = "strongroom-token-reviewer"  # noqa: S105 - a ClusterRole's name


PullPolicy = Literal["Always", "IfNotPresent", "Never"]


@dataclass(frozen=True)
class OperatorSettings:
    """What the operator is started with and passes on to every pool."""

    image: str
    # Images an HsmPool may name besides `image`. A pool's image holds the pool's keys and
    # talks to the operator, so tenants choose only among what the operator's installer lists.
    allowed_images: tuple[str, ...] = ()
    # Of both containers of every pool, set rather than left to the image's tag (a `latest`
    # tag would otherwise pull at every start, and Never is what an air-gapped cluster needs).
    image_pull_policy: PullPolicy = "IfNotPresent"
    audience: str = AUDIENCE
    # The port of each pool's metrics endpoint (the vault server's, with its sidecar's), in
    # plain HTTP apart from the data plane, announced by Prometheus scrape annotations; 0: none.
    metrics_port: int = 0

    def allows(self, image: str) -> bool:
        return image == self.image or image in self.allowed_images


@dataclass(frozen=True)
class StartMode:
    """How the pool's pod starts, decided by reconcile.domain from the token store's claim:
    `await_activation` (the sidecar's --await-activation) only for a store made new with the
    annotation; `restore` adds the init container that lays spec.recoverFrom's backup down."""

    await_activation: bool = False
    restore: bool = False


@dataclass(frozen=True)
class Pool:
    """An HsmPool as the builders need it."""

    owner: Owner
    spec: HsmPoolSpec

    @property
    def base(self) -> str:
        return f"{self.owner.name}-pool"

    @property
    def secret_name(self) -> str:
        return f"{self.base}-secret"

    @property
    def tls_secret_name(self) -> str:
        return f"{self.base}-tls"

    @property
    def config_name(self) -> str:
        return f"{self.base}-config"

    @property
    def claim_name(self) -> str:
        return f"{self.base}-tokens"

    @property
    def security_domain_secret_name(self) -> str:
        return f"{self.base}-security-domain"

    @property
    def service_account_name(self) -> str:
        return self.base

    @property
    def token_review_binding_name(self) -> str:
        """Cluster-scoped, so named after the HsmPool's uid: no two pools can share it."""
        return f"strongroom-pool-{self.owner.uid}"

    @property
    def legacy_binding_name(self) -> str:
        """The binding's name before it carried the uid (`a`/`b-c` and `a-b`/`c` collide)."""
        return f"strongroom-pool-{self.owner.namespace}-{self.owner.name}"

    @property
    def endpoint(self) -> str:
        return f"https://{self.base}.{self.owner.namespace}.svc"

    @property
    def hosts(self) -> list[str]:
        ns = self.owner.namespace
        return [f"{self.base}.{ns}.svc", f"{self.base}.{ns}.svc.cluster.local"]

    def tls_hosts(self, vaults: Iterable[str]) -> list[str]:
        """Exactly the names the pool's certificate covers: its own Service and the Service
        of each of its vaults. No wildcard: a certificate of this pool is good for nothing
        else in the namespace."""
        names = set(self.hosts)
        for vault in vaults:
            names.update(vault_hosts(vault, self.owner.namespace))
        return sorted(names)

    def image(self, settings: OperatorSettings) -> str:
        return self.spec.image or settings.image

    @property
    def selector(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": "strongroom",
            "app.kubernetes.io/component": COMPONENT,
            "app.kubernetes.io/instance": self.owner.name,
        }

    @property
    def keeps_state(self) -> bool:
        """With deletionPolicy Retain, the token store and pool secret outlive the HsmPool."""
        return self.spec.deletion_policy == "Retain"


def build_pool_secret(pool: Pool, pool_secret_hex: str) -> dict[str, Any]:
    """The Secret the token PINs derive from. Made once; replacing it locks every vault out."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(pool.secret_name, pool.owner, COMPONENT, owned=not pool.keeps_state),
        "type": "Opaque",
        "immutable": True,
        "stringData": {POOL_SECRET_KEY: pool_secret_hex},
    }


def build_tls_secret(
    pool: Pool, cert_pem: str, key_pem: str, ca_pem: str, client_ca_pem: str
) -> dict[str, Any]:
    """The pool's server certificate and key, the CA that signed it, and the public
    certificate of the operator's client CA, which the server verifies callers against."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(pool.tls_secret_name, pool.owner, COMPONENT),
        "type": "kubernetes.io/tls",
        "stringData": {
            "tls.crt": cert_pem,
            "tls.key": key_pem,
            "ca.crt": ca_pem,
            CLIENT_CA_KEY: client_ca_pem,
        },
    }


def build_config_map(pool: Pool, settings: OperatorSettings) -> dict[str, Any]:
    """The vault server's start-up config: no vaults; the operator adds them through the API.
    `namespace`: the shared audience is accepted only from this namespace's ServiceAccounts."""
    config: dict[str, Any] = {
        "audiences": [settings.audience],
        "namespace": pool.owner.namespace,
        "vaults": [],
    }
    if pool.spec.security_officers:
        # Who may use /securitydomain/* with a bearer token (the operator's certificate
        # always may): a token for the pool's own endpoint, or the shared audience.
        config["securityOfficers"] = sorted(set(pool.spec.security_officers))
        config["poolAudience"] = pool.endpoint
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(pool.config_name, pool.owner, COMPONENT),
        "data": {"config.json": json.dumps(config, indent=2, sort_keys=True) + "\n"},
    }


def build_security_domain_secret(pool: Pool, blob: str) -> dict[str, Any]:
    """The downloaded security domain, for the pool's administrators to take offline (then
    delete). It is encrypted to the holders' certificates: no secret of the pool's is in
    clear, and only a quorum of the holders' private keys opens it."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(
            pool.security_domain_secret_name, pool.owner, COMPONENT, owned=not pool.keeps_state
        ),
        "type": "Opaque",
        "immutable": True,
        "stringData": {SECURITY_DOMAIN_KEY: blob},
    }


def build_token_store_claim(pool: Pool, start: StartMode | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": pool.spec.storage.size}},
    }
    if pool.spec.storage.storage_class_name is not None:
        spec["storageClassName"] = pool.spec.storage.storage_class_name
    meta = metadata(pool.claim_name, pool.owner, COMPONENT, owned=not pool.keeps_state)
    if start is not None and start.await_activation:
        meta["annotations"] = {AWAIT_ANNOTATION: "true"}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta,
        "spec": spec,
    }


def build_service_account(pool: Pool) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(pool.service_account_name, pool.owner, COMPONENT),
    }


def build_token_review_binding(pool: Pool) -> dict[str, Any]:
    """Lets the pool's vault server ask the API server who a bearer token belongs to, and
    nothing else (no SubjectAccessReview, unlike system:auth-delegator).

    Cluster-scoped, so it cannot be owned by the HsmPool: its label names the pool's uid,
    and the pool's finalizer deletes it, and only it.
    """
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": pool.token_review_binding_name,
            "labels": labels(COMPONENT, pool.owner.name)
            | {
                "strongroom.io/pool-namespace": pool.owner.namespace,
                OWNER_UID_LABEL: pool.owner.uid,
            },
        },
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": TOKEN_REVIEWER_ROLE,
        },
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": pool.service_account_name,
                "namespace": pool.owner.namespace,
            }
        ],
    }


def _service(name: str, pool: Pool, owner: Owner, component: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, owner, component),
        "spec": {
            "type": "ClusterIP",
            "selector": pool.selector,
            "ports": [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}],
        },
    }


def build_service(pool: Pool) -> dict[str, Any]:
    """The pool's own Service: its management API, at `status.endpoint`."""
    return _service(pool.base, pool, pool.owner, COMPONENT)


def build_vault_service(pool: Pool, vault: Owner) -> dict[str, Any]:
    """`<vault>-vault`: the host name of the vault's URI, served by its pool's pod.

    The Azure SDKs accept the Bearer challenge's resource `https://<namespace>.svc`
    because the vault's host `<vault>-vault.<namespace>.svc` ends with it.
    """
    return _service(vault_service_name(vault.name), pool, vault, "vault")


def vault_service_name(vault: str) -> str:
    return f"{vault}-vault"


def vault_hosts(vault: str, namespace: str) -> list[str]:
    service = vault_service_name(vault)
    return [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


def vault_uri(vault: str, namespace: str) -> str:
    return f"https://{vault_hosts(vault, namespace)[0]}"


_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _resources(requirements: ResourceRequirements | None) -> dict[str, Any]:
    return requirements.wire() if requirements is not None else {}


def _probe(period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/healthz", "port": "https", "scheme": "HTTPS"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def build_stateful_set(
    pool: Pool, settings: OperatorSettings, start: StartMode | None = None
) -> dict[str, Any]:
    """The pool's pod. Its image must be one `settings` allows (reconcile.pool checks)."""
    start = start or StartMode()
    spec = pool.spec
    image = pool.image(settings)
    module = spec.pkcs11.module if spec.pkcs11 is not None else SOFTHSM2_MODULE
    resources = spec.resources
    socket = f"{SOCKET_DIR}/hsm.sock"
    server: dict[str, Any] = {
        "name": "vault-server",
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": [
            "vault-server",
            "--config",
            f"{CONFIG_DIR}/config.json",
            "--listen",
            f"0.0.0.0:{HTTPS_PORT}",
            "--tls-cert",
            f"{TLS_DIR}/tls.crt",
            "--tls-key",
            f"{TLS_DIR}/tls.key",
            "--hsm-socket",
            socket,
            "--data-dir",
            RECORDS_DIR,
            "--client-ca",
            f"{TLS_DIR}/{CLIENT_CA_KEY}",
            "--admin-client-name",
            OPERATOR_CLIENT_NAME,
        ],
        "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
        "ports": [{"name": "https", "containerPort": HTTPS_PORT, "protocol": "TCP"}],
        "startupProbe": _probe(period=2, failures=60),
        "readinessProbe": _probe(period=5, failures=2),
        "livenessProbe": _probe(period=10, failures=6),
        "resources": _resources(resources.vault_server if resources else None),
        "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": [
            {"name": "hsm-socket", "mountPath": SOCKET_DIR},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
            {"name": "tokens", "mountPath": TOKEN_DIR},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the container's own emptyDir
        ],
    }
    hsm = {
        "name": "hsm",
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": [
            "hsm",
            "--module",
            module,
            "--state-dir",
            TOKEN_DIR,
            "--socket",
            socket,
            "--pool-secret-file",
            f"{POOL_SECRET_DIR}/{POOL_SECRET_KEY}",
        ]
        + (["--await-activation"] if start.await_activation else []),
        "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
        "resources": _resources(resources.hsm if resources else None),
        "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": [
            {"name": "hsm-socket", "mountPath": SOCKET_DIR},
            {"name": "tokens", "mountPath": TOKEN_DIR},
            {"name": "pool-secret", "mountPath": POOL_SECRET_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the container's own emptyDir
        ],
    }
    volumes: list[dict[str, Any]] = [
        {
            "name": "hsm-socket",
            "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"},
        },
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": "tokens", "persistentVolumeClaim": {"claimName": pool.claim_name}},
        {
            "name": "pool-secret",
            "secret": {"secretName": pool.secret_name, "defaultMode": 0o440},
        },
        {
            "name": "tls",
            "secret": {"secretName": pool.tls_secret_name, "defaultMode": 0o440},
        },
        {"name": "config", "configMap": {"name": pool.config_name}},
    ]
    backup = spec.backup
    if backup is not None:
        server["args"] += ["--backup-dir", BACKUP_DIR]
        server["volumeMounts"].append({"name": "backups", "mountPath": BACKUP_DIR})
        volumes.append(
            {"name": "backups", "persistentVolumeClaim": {"claimName": backup.claim_name}}
        )
    init: list[dict[str, Any]] = []
    recover = spec.recover_from
    if start.restore and recover is not None:
        # The backup's volume, read only (the backup volume itself when it is the same claim).
        source = (
            "backups"
            if backup is not None and backup.claim_name == recover.claim_name
            else ("restore-source")
        )
        if source == "restore-source":
            volumes.append(
                {
                    "name": source,
                    "persistentVolumeClaim": {"claimName": recover.claim_name, "readOnly": True},
                }
            )
        init.append(
            {
                "name": "restore",
                "image": image,
                "imagePullPolicy": settings.image_pull_policy,
                "args": [
                    "restore-backup",
                    "--backup",
                    f"{RESTORE_DIR}/{recover.file}",
                    "--state-dir",
                    TOKEN_DIR,
                    "--records-dir",
                    RECORDS_DIR,
                ],
                "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
                "resources": _resources(resources.hsm if resources else None),
                "securityContext": _CONTAINER_SECURITY,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": [
                    {"name": "tokens", "mountPath": TOKEN_DIR},
                    {"name": source, "mountPath": RESTORE_DIR, "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the container's own emptyDir
                ],
            }
        )
    pod_labels = labels(COMPONENT, pool.owner.name)
    template_meta: dict[str, Any] = {"labels": pod_labels}
    if settings.metrics_port:
        port = settings.metrics_port
        server["args"] += ["--metrics-port", str(port)]
        server["ports"].append({"name": "metrics", "containerPort": port, "protocol": "TCP"})
        template_meta["annotations"] = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics",
        }
    if spec.security_officers:
        # The server reads its config at start: a changed list of officers restarts the pod.
        officers = ",".join(sorted(set(spec.security_officers)))
        template_meta.setdefault("annotations", {})["strongroom.io/security-officers"] = (
            hashlib.sha256(officers.encode()).hexdigest()[:16]
        )
    pod_spec: dict[str, Any] = {
        "serviceAccountName": pool.service_account_name,
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if init:
        pod_spec["initContainers"] = init
    pod_spec["containers"] = [server, hsm]
    pod_spec["volumes"] = volumes
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(pool.base, pool.owner, COMPONENT),
        "spec": {
            "replicas": 1,
            "serviceName": pool.base,
            "selector": {"matchLabels": pool.selector},
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }


def build_children(
    pool: Pool, settings: OperatorSettings, start: StartMode | None = None
) -> list[dict[str, Any]]:
    """The pool's children that the operator applies on every reconcile (no secrets among them)."""
    return [
        build_service_account(pool),
        build_config_map(pool, settings),
        build_token_store_claim(pool, start),
        build_stateful_set(pool, settings, start),
        build_service(pool),
    ]
