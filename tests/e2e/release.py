"""The strongroom release under test, driven as a user drives it: kubectl, helm, and the
vault's HTTPS API through the Azure SDK or plain requests from this machine."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "strongroom"
NAMESPACE = "strongroom-system"
RELEASE = "strongroom"
OPERATOR = "strongroom-operator"  # the operator's Deployment, and the Lease its active pod holds
DRIVER = "csi.strongroom.io"
AUDIENCE = "strongroom.io/vault"
# Every strongroom kind, dependents first: deleting them in this order honours finalizers.
API_GROUP_KINDS = (
    "keys.strongroom.io,vaultsecrets.strongroom.io,vaultcertificates.strongroom.io,"
    "vaults.strongroom.io,hsmpools.strongroom.io"
)
IMAGE = os.environ.get("STRONGROOM_IMAGE", "strongroom.io/strongroom:dev")
# Never: images are imported into the node, and a missing one must fail, not be pulled.
PULL_POLICY = os.environ.get("STRONGROOM_IMAGE_PULL_POLICY", "Never")
TIMEOUT = 120


class CommandFailed(AssertionError):
    pass


@dataclass
class Release:
    kubectl: str
    helm: str
    tmp: Path
    cleanups: list[str] = field(default_factory=list)  # namespaces to remove at the end

    # --- commands --------------------------------------------------------------------

    def run(
        self,
        tool: str,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        timeout: int = 120,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [tool, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise CommandFailed(
                f"{Path(tool).name} {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stderr.strip()}\n{result.stdout.strip()}"
            )
        return result

    def k(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run(self.kubectl, *args, **kwargs)

    def h(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run(self.helm, *args, **kwargs)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        return dict(json.loads(self.k("-n", namespace, "get", kind, name, "-o", "json").stdout))

    def items(self, kind: str, *selector: str) -> list[dict[str, Any]]:
        answer = json.loads(self.k("get", kind, *selector, "-o", "json").stdout)
        return list(answer["items"])

    def exists(self, kind: str, name: str, namespace: str | None = None) -> bool:
        scope = ["-n", namespace] if namespace else []
        found = self.k(*scope, "get", kind, name, "--ignore-not-found", "-o", "name").stdout
        return bool(found.strip())

    def apply(self, *manifests: dict[str, Any]) -> None:
        self.k(
            "apply",
            "-f",
            "-",
            stdin=json.dumps({"kind": "List", "apiVersion": "v1", "items": list(manifests)}),
        )

    def apply_file(self, *paths: Path) -> None:
        self.k("apply", *(arg for path in paths for arg in ("-f", str(path))))

    # --- waiting ---------------------------------------------------------------------

    def wait_ready(
        self, kind: str, name: str, namespace: str, timeout: float = TIMEOUT
    ) -> dict[str, Any]:
        """Until the resource's Ready condition is True for its current generation; on timeout
        the assertion shows its conditions and the Events about it."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = self.get(kind, name, namespace)
            if is_ready(body):
                return body
            time.sleep(1)
        events = self.k(
            "-n",
            namespace,
            "get",
            "events",
            "--field-selector",
            f"involvedObject.name={name}",
            check=False,
        ).stdout
        raise AssertionError(
            f"{kind} {namespace}/{name} not Ready after {timeout:.0f}s: "
            f"{json.dumps(body.get('status'), indent=1)}\nevents:\n{events}\n"
            f"operator log:\n{self.operator_log()[-4000:]}"
        )

    def wait_gone(
        self, kind: str, name: str, namespace: str | None, timeout: float = TIMEOUT
    ) -> None:
        deadline = time.monotonic() + timeout
        while self.exists(kind, name, namespace):
            if time.monotonic() > deadline:
                raise AssertionError(f"{kind} {name} still exists after {timeout:.0f}s")
            time.sleep(1)

    def wait_for(self, what: str, check: Any, timeout: float = TIMEOUT) -> Any:
        """Until check() returns something true; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(1)

    # --- the installation ------------------------------------------------------------

    def operator_pods(self) -> list[dict[str, Any]]:
        """Every pod of the operator's Deployment: the active replica and the standbys."""
        return self.items("pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=operator")

    def lease_holder(self) -> str | None:
        """The operator pod that holds the Lease, the one that reconciles."""
        found = self.k(
            "-n", NAMESPACE, "get", "lease", OPERATOR, "--ignore-not-found", "-o", "json"
        ).stdout
        if not found.strip():
            return None
        holder = json.loads(found).get("spec", {}).get("holderIdentity")
        return str(holder) if holder else None

    def pod_log(self, name: str, namespace: str = NAMESPACE) -> str:
        return self.k("-n", namespace, "logs", name, "--tail=-1", check=False).stdout

    def operator_log(self) -> str:
        """The logs of every operator replica, each under its pod's name."""
        return "\n".join(
            f"--- {pod['metadata']['name']}:\n{self.pod_log(pod['metadata']['name'])}"
            for pod in self.operator_pods()
        )

    def ca_file(self) -> Path:
        """The operator CA's public certificate, as the examples' README has users copy it."""
        secret = self.get("secret", "strongroom-ca", NAMESPACE)
        path = self.tmp / "strongroom-ca.crt"
        path.write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
        return path

    def vault_token(self, account: str, namespace: str) -> str:
        return self.k(
            "-n", namespace, "create", "token", account, "--audience", AUDIENCE, "--duration=1h"
        ).stdout.strip()

    @contextmanager
    def reach(self, vault: dict[str, Any]) -> Iterator[str]:
        """The vault's URI, reachable from this machine: its host name resolves to its
        Service's ClusterIP (kube-proxy routes it) while the block runs; TLS still checks
        the name, so the certificate and the SDK's challenge check are the real ones."""
        uri = vault["status"]["vaultUri"]
        host = uri.removeprefix("https://").split("/")[0]
        namespace = vault["metadata"]["namespace"]
        service = self.get("service", host.split(".")[0], namespace)
        with resolving({host: service["spec"]["clusterIP"]}):
            yield uri

    def vault_call(
        self, uri: str, token: str, method: str, path: str, body: Any = None
    ) -> requests.Response:
        return requests.request(
            method,
            f"{uri}{path}",
            params={"api-version": "7.6"},
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            verify=str(self.ca_file()),
            timeout=30,
        )


def is_ready(body: dict[str, Any]) -> bool:
    status = body.get("status") or {}
    generation = body.get("metadata", {}).get("generation")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            observed = condition.get("observedGeneration", status.get("observedGeneration"))
            return observed is None or observed == generation
    return False


@contextmanager
def resolving(hosts: dict[str, str]) -> Iterator[None]:
    """Names resolved to the given addresses in this process only, as /etc/hosts would."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real(hosts.get(host, host), *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = real
