"""A hostile tenant gets nothing: two tenants on the installed chart, and every attack of
tenant B fails while tenant A's workload keeps working.

Tenant A (`tenant-a`) is the victim: an HsmPool, a Vault, an EC-HSM Key and a generated
VaultSecret, a pod that reads the secret through the CSI driver every few seconds, and
examples/06's application (its own image, the Azure SDK) signing with the key through the
vault's Service, with a projected token whose audience is A's vault URI.

Tenant B (`tenant-b`) acts ONLY through the ServiceAccount `intruder`, bound to the
`admin` ClusterRole in its own namespace: every call it makes goes through a kubeconfig
holding that account's token, never the cluster admin's. The attacks, in order:

1. its own pool image (HsmPool.spec.image outside the operator's allowlist);
2. a pod labelled like its pool's pods, serving the pool's certificate on the pool's port,
   recording every Authorization header and TLS client while the operator reconciles;
3. every token it holds replayed against A's vault and A's pool management API;
4. a CSI volume naming A's vault;
5. importing Secrets that did not opt in, and a Secret of another namespace;
6. Secret and Service pre-created under the names a new pool's objects take;
7. the reserved tag `strongroom.io/uid` through the data plane;
8. writing into its own mounted volume as root.

The tests share one set-up and run in file order; the last one checks A's workload.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from .conftest import namespace_of
from .release import AUDIENCE, DRIVER, IMAGE, Release, is_ready, resolving

pytestmark = pytest.mark.e2e

A, B = "tenant-a", "tenant-b"
API = "strongroom.io/v1alpha1"
POOL, VAULT, KEY, SECRET = "pool", "vault", "signing", "shared-secret"
EXAMPLE_IMAGE = os.environ.get(
    "STRONGROOM_EXAMPLE_IMAGE", "strongroom.io/strongroom-example-app:dev"
)
ROGUE_IMAGE = "registry.invalid/rogue-pool:1"
RESERVED_TAG = "strongroom.io/uid"
ALLOW_IMPORT = "strongroom.io/allow-import"
REFUSED = (401, 403)
SIGN_EVERY = 5  # seconds between the workload's rounds


def vault_uri(namespace: str, vault: str = VAULT) -> str:
    return f"https://{vault}-vault.{namespace}.svc"


def pool_host(namespace: str, pool: str = POOL) -> str:
    return f"{pool}-pool.{namespace}.svc"


def resource(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def tenant_resources(namespace: str, access: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A pool, a vault on it, an EC-HSM key and a generated secret."""
    return [
        resource("HsmPool", POOL, namespace, {"backend": "softhsm2", "storage": {"size": "1Gi"}}),
        resource(
            "Vault",
            VAULT,
            namespace,
            {
                "hsmPoolRef": {"name": POOL},
                "access": access,
                "softDelete": {"retentionDays": 7},
            },
        ),
        resource("Key", KEY, namespace, {"vaultRef": {"name": VAULT}, "kty": "EC-HSM"}),
        resource(
            "VaultSecret",
            SECRET,
            namespace,
            {"vaultRef": {"name": VAULT}, "source": {"generate": {"length": 32}}},
        ),
    ]


def service_account(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace},
    }


def csi_volume(attributes: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"name": "vault", "csi": {"driver": DRIVER, "volumeAttributes": attributes, **extra}}


def objects(*names: str) -> str:
    return json.dumps([{"kind": "secret", "name": name} for name in names])


def condition(body: dict[str, Any], kind: str = "Ready") -> dict[str, Any]:
    for found in (body.get("status") or {}).get("conditions") or []:
        if found.get("type") == kind:
            return dict(found)
    return {}


@dataclass
class Tenant:
    """kubectl as one identity: its own kubeconfig, never KUBECONFIG's admin."""

    release: Release
    namespace: str
    kubeconfig: Path

    def k(self, *args: str, **kwargs: Any) -> Any:
        return self.release.run(
            self.release.kubectl, "--kubeconfig", str(self.kubeconfig), *args, **kwargs
        )

    def kn(self, *args: str, **kwargs: Any) -> Any:
        return self.k("-n", self.namespace, *args, **kwargs)

    def apply(self, *manifests: dict[str, Any]) -> None:
        self.kn(
            "apply",
            "-f",
            "-",
            stdin=json.dumps({"kind": "List", "apiVersion": "v1", "items": list(manifests)}),
        )

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return dict(json.loads(self.kn("get", kind, name, "-o", "json").stdout))

    def items(self, kind: str, *selector: str) -> list[dict[str, Any]]:
        return list(json.loads(self.kn("get", kind, *selector, "-o", "json").stdout)["items"])

    def can(self, verb: str, what: str, namespace: str, *extra: str) -> bool:
        answer = self.k("auth", "can-i", verb, what, "-n", namespace, *extra, check=False)
        assert answer.stdout.strip() in ("yes", "no"), answer.stderr
        return bool(answer.stdout.strip() == "yes")

    def token(self, account: str, audience: str | None = None) -> str:
        audiences = ["--audience", audience] if audience else []
        return str(self.kn("create", "token", account, *audiences, "--duration=1h").stdout.strip())

    def events(self, name: str) -> list[dict[str, Any]]:
        return self.items("events", "--field-selector", f"involvedObject.name={name}")

    def wait_condition(
        self, kind: str, name: str, reason: str, timeout: float = 180
    ) -> dict[str, Any]:
        """Until the resource's Ready condition is False with this reason."""

        def reached() -> dict[str, Any]:
            found = condition(self.get(kind, name))
            return found if found.get("status") == "False" and found.get("reason") == reason else {}

        try:
            return dict(
                self.release.wait_for(f"{kind} {name} Ready=False {reason}", reached, timeout)
            )
        except AssertionError as error:
            raise AssertionError(
                f"{error}; its status: {json.dumps(self.get(kind, name).get('status'))}"
            ) from None

    def wait_ready(self, kind: str, name: str, timeout: float = 300) -> dict[str, Any]:
        return dict(
            self.release.wait_for(
                f"{kind} {self.namespace}/{name} Ready",
                lambda: body if is_ready(body := self.get(kind, name)) else {},
                timeout,
            )
        )


@dataclass
class World:
    release: Release
    b: Tenant
    ca: Path
    a_secret_value: str = ""


def tenant_kubeconfig(release: Release, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that holds only `account`'s token: the cluster's address and CA, read
    from the admin's kubeconfig, and no client certificate."""
    admin = json.loads(release.k("config", "view", "--raw", "--minify", "-o", "json").stdout)
    cluster = admin["clusters"][0]["cluster"]
    if "certificate-authority" in cluster:
        ca = Path(cluster.pop("certificate-authority")).read_bytes()
        cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    token = release.k("-n", namespace, "create", "token", account, "--duration=2h").stdout.strip()
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "cluster", "cluster": cluster}],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [
                    {
                        "name": account,
                        "context": {"cluster": "cluster", "user": account, "namespace": namespace},
                    }
                ],
                "current-context": account,
            }
        )
    )
    path.chmod(0o600)
    return path


def reader_pod(namespace: str, name: str, account: str, volume: dict[str, Any]) -> dict[str, Any]:
    """A pod that checks its mounted secret every few seconds and says whether it could read
    it (a digest prefix, never the value)."""
    script = (
        "trap 'exit 0' TERM\n"
        "while true; do\n"
        f"  if [ -s /secrets/{SECRET} ]; then\n"
        f'    echo "read ok $(sha256sum < /secrets/{SECRET} | cut -c1-12)"\n'
        "  else echo 'read FAILED'; fi\n"
        f"  sleep {SIGN_EVERY} & wait $!\n"
        "done\n"
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "serviceAccountName": account,
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000},
            "containers": [
                {
                    "name": "app",
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "vault", "mountPath": "/secrets", "readOnly": True}],
                }
            ],
            "volumes": [volume],
        },
    }


def signer_pod(namespace: str) -> dict[str, Any]:
    """examples/06's application, signing every few seconds for as long as the tests run."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "signer", "namespace": namespace},
        "spec": {
            "serviceAccountName": "signer",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
            "containers": [
                {
                    "name": "app",
                    "image": EXAMPLE_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "env": [
                        {"name": "VAULT_URL", "value": vault_uri(namespace)},
                        {"name": "KEY_NAME", "value": KEY},
                        {"name": "SIGN_EVERY", "value": str(SIGN_EVERY)},
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                    },
                    "volumeMounts": [
                        {
                            "name": "vault-token",
                            "mountPath": "/var/run/secrets/strongroom.io",
                            "readOnly": True,
                        },
                        {"name": "ca", "mountPath": "/etc/strongroom", "readOnly": True},
                    ],
                }
            ],
            "volumes": [
                {
                    "name": "vault-token",
                    "projected": {
                        "sources": [
                            {
                                "serviceAccountToken": {
                                    "audience": vault_uri(namespace),
                                    "expirationSeconds": 3600,
                                    "path": "token",
                                }
                            }
                        ]
                    },
                },
                {"name": "ca", "configMap": {"name": "strongroom-ca"}},
            ],
        },
    }


@contextmanager
def tenants(release: Release) -> Iterator[World]:
    with ExitStack() as stack:
        stack.enter_context(namespace_of(release, A))
        stack.enter_context(namespace_of(release, B))
        ca = release.ca_file()
        # Tenant A, set up by its own admin (the cluster admin here: A is not under test).
        release.apply(
            service_account("reader", A),
            service_account("signer", A),
            *tenant_resources(
                A,
                [
                    {"serviceAccount": {"name": "reader"}, "roles": ["SecretsUser"]},
                    {"serviceAccount": {"name": "signer"}, "roles": ["CryptoUser"]},
                ],
            ),
        )
        release.k("-n", A, "create", "configmap", "strongroom-ca", f"--from-file=ca.crt={ca}")
        # Tenant B's one identity: namespace admin, nothing else.
        release.apply(
            service_account("intruder", B),
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "intruder-admin", "namespace": B},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "admin",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "intruder", "namespace": B}],
            },
        )
        b = Tenant(
            release, B, tenant_kubeconfig(release, B, "intruder", release.tmp / "b.kubeconfig")
        )
        world = World(release, b, ca)
        for kind, name in (("hsmpool", POOL), ("vault", VAULT), ("key", KEY)):
            release.wait_ready(kind, name, A, timeout=300)
        release.wait_ready("vaultsecret", SECRET, A)
        release.apply(
            reader_pod(
                A,
                "reader",
                "reader",
                csi_volume({"vault": VAULT, "objects": objects(SECRET)}, readOnly=True),
            ),
            signer_pod(A),
        )
        for pod in ("reader", "signer"):
            release.k("-n", A, "wait", "--for=condition=Ready", f"pod/{pod}", "--timeout=180s")
        # The value B must never see, held in memory only.
        world.a_secret_value = release.k(
            "-n", A, "exec", "reader", "--", "cat", f"/secrets/{SECRET}"
        ).stdout
        assert len(world.a_secret_value) >= 32
        yield world


@pytest.fixture(scope="module")
def world(release: Release) -> Iterator[World]:
    with tenants(release) as made:
        yield made


def test_tenant_b_is_admin_of_its_namespace_and_nothing_else(world: World) -> None:
    b = world.b
    whoami = json.loads(b.k("auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{B}:intruder"
    for what in ("pods", "secrets", "services", "rolebindings"):
        assert b.can("create", what, B), f"B's admin role cannot create {what} in {B}"
    assert b.can("create", "serviceaccounts", B, "--subresource=token")
    for what in ("hsmpools.strongroom.io", "vaults.strongroom.io", "keys.strongroom.io"):
        assert b.can("create", what, B), (
            f"a namespace admin cannot create {what}: the chart must aggregate the "
            "strongroom.io kinds into the admin ClusterRole (tenants own their pools)"
        )
    for what in ("secrets", "pods", "vaults.strongroom.io"):
        assert not b.can("get", what, A), f"B can get {what} in {A}"
    assert not b.can("create", "clusterrolebindings", B)
    denied = b.k("-n", A, "get", "secrets", check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr
    # B's own tenancy, made with B's identity only.
    b.apply(
        service_account("b-app", B),
        service_account("b-reader", B),
        *tenant_resources(
            B,
            [
                {"serviceAccount": {"name": "b-app"}, "roles": ["Administrator"]},
                {"serviceAccount": {"name": "b-reader"}, "roles": ["SecretsUser"]},
            ],
        ),
    )
    for kind, name in (("hsmpool", POOL), ("vault", VAULT), ("key", KEY), ("vaultsecret", SECRET)):
        b.wait_ready(kind, name)


def test_1_a_pool_image_outside_the_allowlist_never_runs(world: World) -> None:
    b = world.b
    b.apply(
        resource(
            "HsmPool",
            "rogue",
            B,
            {"backend": "softhsm2", "storage": {"size": "1Gi"}, "image": ROGUE_IMAGE},
        )
    )
    refused = b.wait_condition("hsmpool", "rogue", "ImageNotAllowed", timeout=120)
    assert ROGUE_IMAGE in refused["message"] or "allow" in refused["message"].lower()
    time.sleep(5)  # a pod made late would still show up below
    images = [
        container["image"]
        for pod in b.items("pods")
        for container in pod["spec"].get("containers", []) + pod["spec"].get("initContainers", [])
    ]
    assert ROGUE_IMAGE not in images
    for stateful_set in b.items("statefulsets"):
        template = stateful_set["spec"]["template"]["spec"]
        assert ROGUE_IMAGE not in [c["image"] for c in template["containers"]]
    b.kn("delete", "hsmpool", "rogue", "--timeout=120s", timeout=150)


IMPOSTOR = r"""
import hashlib, http.server, json, os, ssl

context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("/tls/tls.crt", "/tls/tls.key")
if os.path.exists("/tls/client-ca.crt"):
    # See (and name) the operator's client certificate when it presents one.
    context.load_verify_locations("/tls/client-ca.crt")
    context.verify_mode = ssl.CERT_OPTIONAL


class Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_any(self):
        authorization = self.headers.get("Authorization")
        peer = self.connection.getpeercert() or {}
        subject = dict(part[0] for part in peer.get("subject", ()))
        seen = {
            "method": self.command,
            "path": self.path.split("?")[0],
            "client": subject.get("commonName"),
            # Whether a credential came, and of which scheme; never the credential.
            "authorization": authorization.split(" ")[0] if authorization else None,
            "credential": hashlib.sha256(authorization.encode()).hexdigest()[:12]
            if authorization
            else None,
        }
        print("SEEN " + json.dumps(seen), flush=True)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"error": {"code": "Unavailable", "message": "impostor"}}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = handle_any

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("0.0.0.0", PORT), Recorder)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("LISTENING", flush=True)
server.serve_forever()
"""


def test_2_a_pod_posing_as_the_pool_never_receives_a_bearer_token(world: World) -> None:
    b = world.b
    service = b.get("service", f"{POOL}-pool")
    selector = service["spec"]["selector"]
    real = b.get("pod", f"{POOL}-pool-0")
    ports = next(c for c in real["spec"]["containers"] if c["name"] == "vault-server")["ports"]
    https = next(p for p in ports if p["name"] == "https")
    tls_secret = next(
        v["secret"]["secretName"]
        for v in real["spec"]["volumes"]
        if "secret" in v and v["secret"]["secretName"].endswith("-tls")
    )
    b.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "impostor", "namespace": B, "labels": dict(selector)},
            "spec": {
                "containers": [
                    {
                        "name": "vault-server",
                        "image": IMAGE,
                        "imagePullPolicy": "IfNotPresent",
                        "command": [
                            "python",
                            "-c",
                            IMPOSTOR.replace("PORT", str(https["containerPort"])),
                        ],
                        "ports": [https],
                        "volumeMounts": [{"name": "tls", "mountPath": "/tls"}],
                    }
                ],
                "volumes": [{"name": "tls", "secret": {"secretName": tls_secret}}],
            },
        }
    )
    b.kn("wait", "--for=condition=Ready", "pod/impostor", "--timeout=120s")
    b.release.wait_for(
        "the impostor listening",
        lambda: "LISTENING" in b.kn("logs", "impostor").stdout,
        timeout=30,
    )
    # B kills its real pool pod: until it is back, the impostor is the Service's only
    # endpoint, and the operator's reconciles of new keys reach it.
    b.kn("delete", "pod", f"{POOL}-pool-0", "--wait=false")
    new_keys = [f"bait-{i}" for i in range(4)]
    b.apply(
        *(
            resource("Key", name, B, {"vaultRef": {"name": VAULT}, "kty": "EC-HSM"})
            for name in new_keys
        )
    )

    def seen() -> list[dict[str, Any]]:
        log = b.kn("logs", "impostor").stdout
        return [json.loads(line[5:]) for line in log.splitlines() if line.startswith("SEEN ")]

    try:
        b.release.wait_for(
            "the operator's calls at the impostor", lambda: len(seen()) >= 5, timeout=180
        )
        records = seen()
    finally:
        b.kn("delete", "pod", "impostor", "--timeout=60s")
    bearing = [r for r in records if r["authorization"]]
    assert not bearing, f"the impostor received credentials: {bearing}"
    clients = sorted({str(r["client"]) for r in records})
    print(f"impostor saw {len(records)} calls from clients {clients}")
    # With the impostor gone, the real pool serves again and the keys are made.
    for name in new_keys:
        b.wait_ready("key", name, timeout=300)


def test_3_no_token_b_holds_opens_as_vault_or_pool(world: World) -> None:
    b, release = world.b, world.release
    tokens = {
        "B's API token": json.loads(b.kubeconfig.read_text())["users"][0]["user"]["token"],
        f"b-app, audience {AUDIENCE}": b.token("b-app", AUDIENCE),
        "b-app, audience B's vault": b.token("b-app", vault_uri(B)),
        "b-app, audience A's vault": b.token("b-app", vault_uri(A)),
        "b-reader, audience A's vault": b.token("b-reader", vault_uri(A)),
    }
    a_vault = release.get("vault", VAULT, A)
    a_pool = release.get("service", f"{POOL}-pool", A)
    version = release.get("key", KEY, A)["status"]["currentVersion"]
    calls = [
        ("GET", f"/keys/{KEY}", None),
        ("POST", f"/keys/{KEY}/{version}/sign", {"alg": "ES256", "value": "A" * 43}),
        ("GET", f"/secrets/{SECRET}", None),
        ("GET", "/secrets", None),
    ]
    with release.reach(a_vault) as uri:
        for what, token in tokens.items():
            for method, path, body in calls:
                answer = release.vault_call(uri, token, method, path, body)
                assert answer.status_code in REFUSED, (
                    f"{what}: {method} {path} -> {answer.status_code}"
                )
                assert world.a_secret_value not in answer.text

    # What B's vault receives when one of A's apps calls it: a token of A's signer bound to
    # B's vault. Replayed against A's own vault, where the signer may sign, it is refused;
    # the same signer's token for A's vault signs (the refusal is the binding, nothing else).
    def a_signer_token(audience: str) -> str:
        made = release.k("-n", A, "create", "token", "signer", "--audience", audience)
        return str(made.stdout.strip())

    sign = ("POST", f"/keys/{KEY}/{version}/sign", {"alg": "ES256", "value": "A" * 43})
    with release.reach(a_vault) as uri:
        captured = release.vault_call(uri, a_signer_token(vault_uri(B)), *sign)
        assert captured.status_code == 401, captured.text
        own = release.vault_call(uri, a_signer_token(vault_uri(A)), *sign)
        assert own.status_code == 200, own.text
    management = f"https://{pool_host(A)}"
    with resolving({pool_host(A): a_pool["spec"]["clusterIP"]}):
        for what, token in tokens.items():
            for method, path in (
                ("GET", "/_strongroom/v1/vaults"),
                ("GET", f"/_strongroom/v1/vaults/{VAULT}/secrets/{SECRET}"),
                ("GET", "/_strongroom/v1/tls"),
            ):
                answer = requests.request(
                    method,
                    f"{management}{path}",
                    headers={"Authorization": f"Bearer {token}"},
                    verify=str(world.ca),
                    timeout=30,
                )
                assert answer.status_code in REFUSED, (
                    f"{what}: {method} {path} -> {answer.status_code}"
                )
                assert world.a_secret_value not in answer.text


def test_4_a_csi_volume_naming_another_namespaces_vault_is_never_mounted(world: World) -> None:
    b = world.b
    names = []
    for name, url in (("steal", vault_uri(A)), ("steal-long", f"{vault_uri(A)}.cluster.local")):
        b.apply(
            reader_pod(
                B,
                name,
                "b-reader",
                csi_volume({"vaultUrl": url, "objects": objects(SECRET)}, readOnly=True),
            )
        )
        names.append(name)
    for name in names:

        def failed_mount(pod: str = name) -> list[str]:
            return [
                e["message"]
                for e in b.events(pod)
                if e["reason"] == "FailedMount" and "namespace" in e["message"].lower()
            ]

        messages = b.release.wait_for(
            f"FailedMount of {name} naming the namespace rule", failed_mount, 120
        )
        print(f"{name}: {messages[0]}")
        pod = b.get("pod", name)
        assert pod["status"]["phase"] == "Pending", pod["status"]
        for status in pod["status"].get("containerStatuses") or []:
            assert "running" not in status["state"], status
        b.kn("delete", "pod", name, "--timeout=60s")


def test_5_only_a_secret_that_opts_in_is_imported(world: World) -> None:
    b = world.b
    b.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "not-offered", "namespace": B},
            "stringData": {"value": "never imported"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "offered",
                "namespace": B,
                "annotations": {ALLOW_IMPORT: "takes-offered"},
            },
            "stringData": {"value": "imported"},
        },
        resource(
            "VaultSecret",
            "takes-unoffered",
            B,
            {
                "vaultRef": {"name": VAULT},
                "source": {"fromSecret": {"name": "not-offered", "key": "value"}},
            },
        ),
        resource(
            "VaultSecret",
            "takes-offered",
            B,
            {
                "vaultRef": {"name": VAULT},
                "source": {"fromSecret": {"name": "offered", "key": "value"}},
            },
        ),
    )
    # The control: the opt-in works, so the refusal below is the rule, not a broken import.
    b.wait_ready("vaultsecret", "takes-offered")
    refused = b.release.wait_for(
        "takes-unoffered refused",
        lambda: (
            (c := condition(b.get("vaultsecret", "takes-unoffered"))).get("status") == "False"
            and ALLOW_IMPORT in c.get("message", "")
            and c
        ),
        timeout=120,
    )
    print(f"takes-unoffered: {refused['reason']}: {refused['message']}")
    token = b.token("b-app", vault_uri(B))
    with b.release.reach(b.release.get("vault", VAULT, B)) as uri:
        missing = b.release.vault_call(uri, token, "GET", "/secrets/takes-unoffered")
        assert missing.status_code == 404, missing.text
    # A Secret of another namespace cannot even be named: the source has no namespace.
    cross = b.kn(
        "apply",
        "--validate=strict",
        "-f",
        "-",
        stdin=json.dumps(
            resource(
                "VaultSecret",
                "takes-a",
                B,
                {
                    "vaultRef": {"name": VAULT},
                    "source": {
                        "fromSecret": {"name": "reader-token", "key": "value", "namespace": A}
                    },
                },
            )
        ),
        check=False,
    )
    assert cross.returncode != 0, "a VaultSecret source named another namespace"
    assert "namespace" in cross.stderr and "unknown field" in cross.stderr.lower(), cross.stderr


def test_6_objects_b_made_first_are_never_taken_over(world: World) -> None:
    b = world.b
    b.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "squat-pool-secret", "namespace": B},
            "stringData": {"pool-secret": "00" * 32},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "squat-pool-tls", "namespace": B},
            "stringData": {"tls.crt": "planted", "tls.key": "planted"},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "squat-pool", "namespace": B},
            "spec": {"selector": {"app": "b-own"}, "ports": [{"port": 443, "targetPort": 8443}]},
        },
    )
    planted = {
        (kind, name): b.get(kind, name)["metadata"]
        for kind, name in (
            ("secret", "squat-pool-secret"),
            ("secret", "squat-pool-tls"),
            ("service", "squat-pool"),
        )
    }
    b.apply(resource("HsmPool", "squat", B, {"backend": "softhsm2", "storage": {"size": "1Gi"}}))
    conflict = b.wait_condition("hsmpool", "squat", "ObjectConflict", timeout=120)
    print(f"squat: {conflict['message']}")
    time.sleep(5)
    for (kind, name), before in planted.items():
        after = b.get(kind, name)["metadata"]
        assert after["resourceVersion"] == before["resourceVersion"], f"{kind} {name} changed"
        assert not after.get("ownerReferences"), f"{kind} {name} was adopted"
    b.kn("delete", "hsmpool", "squat", "--timeout=120s", timeout=150)
    for kind, name in planted:
        assert b.get(kind, name)["metadata"]["uid"] == planted[(kind, name)]["uid"], (
            f"deleting the pool removed B's {kind} {name}"
        )


def test_7_reserved_tags_are_refused_on_the_data_plane(world: World) -> None:
    b, release = world.b, world.release
    token = b.token("b-app", vault_uri(B))
    uid = release.get("vaultsecret", SECRET, A)["metadata"]["uid"]
    with release.reach(release.get("vault", VAULT, B)) as uri:
        control = release.vault_call(
            uri, token, "PUT", "/secrets/plain", {"value": "x", "tags": {"team": "b"}}
        )
        assert control.status_code == 200, control.text
        plain_version = control.json()["id"].rsplit("/", 1)[-1]
        planted = release.vault_call(
            uri, token, "PUT", "/secrets/planted", {"value": "x", "tags": {RESERVED_TAG: uid}}
        )
        assert planted.status_code == 400, planted.text
        assert release.vault_call(uri, token, "GET", "/secrets/planted").status_code == 404
        retagged = release.vault_call(
            uri, token, "PATCH", f"/secrets/plain/{plain_version}", {"tags": {RESERVED_TAG: uid}}
        )
        assert retagged.status_code == 400, retagged.text
        key = release.vault_call(uri, token, "GET", f"/keys/{KEY}")
        assert key.status_code == 200, key.text
        version = key.json()["key"]["kid"].rsplit("/", 1)[-1]
        tagged = release.vault_call(
            uri, token, "PATCH", f"/keys/{KEY}/{version}", {"tags": {RESERVED_TAG: uid}}
        )
        assert tagged.status_code == 400, tagged.text
        created = release.vault_call(
            uri,
            token,
            "POST",
            "/keys/planted/create",
            {"kty": "EC-HSM", "tags": {RESERVED_TAG: uid}},
        )
        assert created.status_code == 400, created.text


def test_8_a_root_pod_cannot_write_into_its_own_volume(world: World) -> None:
    b = world.b
    script = (
        "for target in /secrets/planted /secrets/" + SECRET + "; do\n"
        '  if echo x > "$target" 2>/tmp/err; then echo "WROTE $target"; '
        'else echo "refused $target: $(cat /tmp/err)"; fi\n'
        "done\n"
        "if ln -s / /secrets/escape 2>/tmp/err; then echo LINKED; "
        'else echo "refused link: $(cat /tmp/err)"; fi\n'
        "if mkdir /secrets/dir 2>/tmp/err; then echo MADE; "
        'else echo "refused mkdir: $(cat /tmp/err)"; fi\n'
        "if rm -f /secrets/" + SECRET + " 2>/tmp/err && [ ! -e /secrets/" + SECRET + " ]; "
        'then echo REMOVED; else echo "refused rm: $(cat /tmp/err)"; fi\n'
    )

    def writer(name: str, **volume: Any) -> dict[str, Any]:
        # As root, and the container's volumeMount does not say readOnly.
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": B},
            "spec": {
                "serviceAccountName": "b-reader",
                "restartPolicy": "Never",
                "securityContext": {"runAsUser": 0},
                "containers": [
                    {
                        "name": "app",
                        "image": IMAGE,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", script],
                        "volumeMounts": [{"name": "vault", "mountPath": "/secrets"}],
                    }
                ],
                "volumes": [csi_volume({"vault": VAULT, "objects": objects(SECRET)}, **volume)],
            },
        }

    # A volume that does not say readOnly would be mounted writable into the containers:
    # the driver refuses it, and the event says what to change.
    b.apply(writer("writable-volume", readOnly=False))

    def refused() -> bool:
        assert b.get("pod", "writable-volume")["status"].get("phase") == "Pending"
        return any(
            e["reason"] == "FailedMount" and "readOnly: true" in e["message"]
            for e in b.events("writable-volume")
        )

    b.release.wait_for("the writable volume to be refused", refused, timeout=180)
    b.kn("delete", "pod", "writable-volume", "--timeout=60s")

    # A read-only volume mounted without readOnly in the container: still read-only.
    b.apply(writer("writer", readOnly=True))

    def ran() -> bool:
        phase = b.get("pod", "writer")["status"].get("phase")
        assert phase != "Failed", b.kn("logs", "writer").stdout
        return phase == "Succeeded"

    b.release.wait_for("the writer pod to run", ran, timeout=180)
    log = b.kn("logs", "writer").stdout
    print(log)
    for word in ("WROTE", "LINKED", "MADE", "REMOVED"):
        assert word not in log, log
    assert log.count("Read-only file system") >= 4, log
    b.kn("delete", "pod", "writer", "--timeout=60s")


def test_tenant_a_kept_working_and_b_never_saw_its_secret(world: World) -> None:
    release, b = world.release, world.b
    # Both ran through every attack above: the last lines come from after them.
    time.sleep(2 * SIGN_EVERY)
    reads = release.k("-n", A, "logs", "reader").stdout.splitlines()
    assert reads and all(line.startswith("read ok ") for line in reads), reads[-5:]
    assert len({line for line in reads}) == 1, "A's secret changed while B attacked"
    signed = release.k("-n", A, "logs", "signer").stdout.splitlines()
    rounds = [line for line in signed if line.startswith("round ")]
    failed = [line for line in rounds if "failed" in line]
    assert not failed, failed[:5]
    assert len(rounds) >= 3 and rounds[-1].endswith("verified: True"), rounds[-3:]
    for pod in ("reader", "signer"):
        status = release.get("pod", pod, A)["status"]
        assert all(s["ready"] and s["restartCount"] == 0 for s in status["containerStatuses"]), (
            status
        )
    # Everything B can read, as B: nothing holds A's value.
    places = {
        "B's namespace": b.kn(
            "get",
            "all,secrets,configmaps,events," + "hsmpools,vaults,keys,vaultsecrets",
            "-o",
            "json",
        ).stdout
    }
    for pod in b.items("pods"):
        places[f"log of {pod['metadata']['name']}"] = b.kn(
            "logs", pod["metadata"]["name"], "--all-containers", check=False
        ).stdout
    value = world.a_secret_value.strip()
    leaks = [where for where, text in places.items() if value in text]
    assert value and not leaks, f"A's secret value appears in: {', '.join(leaks)}"
