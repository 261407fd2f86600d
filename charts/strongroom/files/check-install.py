"""`helm test` for strongroom: is the installation up, as far as it can tell without a pool?

Checks, through the API server and with read-only access to exactly these objects:
1. the operator's Deployment has a ready replica, and one replica holds the operator's
   Lease and renews it: that one reconciles (its readiness says it holds the Lease and
   kopf has started), the others stand by;
2. the CSI node plugin's DaemonSet is ready on every node it is scheduled on (a
   plugin pod starts only once the operator has made its CA Secret, whose public
   certificate the plugin mounts);
3. the CSIDriver csi.strongroom.io exists with the token request of strongroom's
   audience, and every node that runs the plugin lists the driver in its CSINode:
   the kubelet accepted the plugin's registration.

Run as `python check-install.py <namespace> <operator> <csi-node> <driver>` (the operator's
Deployment and its Lease have the same name).
"""

import json
import ssl
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CREDENTIALS = Path("/var/run/secrets/kubernetes.io/serviceaccount")
API = "https://kubernetes.default.svc"
AUDIENCE = "strongroom.io/vault"
DEADLINE_SECONDS = 120


class NotYet(Exception):
    """A check that may pass if asked again."""


def get(path: str) -> Any:
    context = ssl.create_default_context(cafile=str(CREDENTIALS / "ca.crt"))
    token = (CREDENTIALS / "token").read_text().strip()
    request = urllib.request.Request(  # noqa: S310 - an https:// URL built here
        API + path, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise NotYet(f"GET {path}: HTTP {exc.code}") from None


def operator_ready(namespace: str, name: str) -> str:
    deployment = get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
    status = deployment.get("status", {})
    ready = status.get("readyReplicas", 0)
    if ready < 1:
        raise NotYet(f"Deployment {name}: no ready replica")
    return f"Deployment {name}: {ready} of {status.get('replicas', ready)} replicas ready"


def lease_held(namespace: str, name: str, now: datetime | None = None) -> str:
    """One replica holds the Lease and renewed it lately (allowing for clocks a little
    apart: the holder's node wrote renewTime)."""
    lease = get(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")
    spec = lease.get("spec", {})
    holder = spec.get("holderIdentity")
    if not holder or not spec.get("renewTime"):
        raise NotYet(f"Lease {name}: no replica holds it")
    renewed = datetime.fromisoformat(spec["renewTime"].replace("Z", "+00:00"))
    age = ((now or datetime.now(UTC)) - renewed).total_seconds()
    if age > max(60, 3 * int(spec.get("leaseDurationSeconds") or 0)):
        raise NotYet(f"Lease {name}: {holder} holds it but has not renewed it for {age:.0f}s")
    return f"Lease {name}: held by {holder}, the active replica"


def csi_nodes_ready(namespace: str, name: str) -> tuple[str, int]:
    daemonset = get(f"/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}")
    status = daemonset.get("status", {})
    desired = status.get("desiredNumberScheduled", 0)
    ready = status.get("numberReady", 0)
    if desired < 1:
        raise NotYet(f"DaemonSet {name}: scheduled on no node (nodeSelector, tolerations?)")
    if ready < desired:
        raise NotYet(f"DaemonSet {name}: {ready} of {desired} pods ready")
    return f"DaemonSet {name}: ready on {ready} of {desired} nodes", desired


def driver_registered(driver: str, nodes: int) -> str:
    spec = get(f"/apis/storage.k8s.io/v1/csidrivers/{driver}").get("spec", {})
    audiences = [request.get("audience") for request in spec.get("tokenRequests") or []]
    if AUDIENCE not in audiences:
        raise NotYet(f"CSIDriver {driver}: no token request for the audience {AUDIENCE}")
    registered = [
        item["metadata"]["name"]
        for item in get("/apis/storage.k8s.io/v1/csinodes").get("items", [])
        if any(d.get("name") == driver for d in item.get("spec", {}).get("drivers") or [])
    ]
    if len(registered) < nodes:
        raise NotYet(f"CSIDriver {driver}: registered on {len(registered)} of {nodes} nodes")
    return f"CSIDriver {driver}: registered with the kubelet on {', '.join(sorted(registered))}"


def check(namespace: str, operator: str, csi_node: str, driver: str) -> list[str]:
    passed = [operator_ready(namespace, operator), lease_held(namespace, operator)]
    line, nodes = csi_nodes_ready(namespace, csi_node)
    return [*passed, line, driver_registered(driver, nodes)]


def main(argv: list[str]) -> int:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        try:
            lines = check(*argv[1:5])
        except NotYet as exc:
            if time.monotonic() > deadline:
                print(f"FAIL {exc}", file=sys.stderr)
                return 1
            time.sleep(3)
            continue
        for line in lines:
            print(f"ok   {line}")
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
