"""The operator's CA: it signs each pool's TLS certificate; kept in a Secret of its namespace.

The Secret is owned by the operator's Deployment when the operator is told its name, so
that uninstalling the operator removes the CA with it; pools' certificates are reissued
from a new CA by the next operator (reconcile.pool.needs_new_certificate).
"""

import base64

from ..tls import Issued, make_ca
from .kube import Kube

CA_SECRET = "strongroom-ca"  # noqa: S105 - the name of a Secret


async def ensure_ca(kube: Kube, namespace: str, owner_deployment: str | None = None) -> Issued:
    """Load the CA, making it the first time. Two operators racing: the first one's wins."""
    owners = []
    if owner_deployment:
        deployment = await kube.get("apps/v1", "Deployment", namespace, owner_deployment)
        if deployment is not None:
            meta = deployment["metadata"]
            owners = [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": meta["name"],
                    "uid": meta["uid"],
                }
            ]
    for _ in range(2):
        found = await kube.get("v1", "Secret", namespace, CA_SECRET)
        if found is not None:
            data = found.get("data") or {}
            return Issued(base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"]))
        ca = make_ca("strongroom operator CA")
        await kube.create_once(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": CA_SECRET,
                    "namespace": namespace,
                    "labels": {"app.kubernetes.io/part-of": "strongroom"},
                    "ownerReferences": owners,
                },
                "type": "kubernetes.io/tls",
                "stringData": {"tls.crt": ca.cert_pem.decode(), "tls.key": ca.key_pem.decode()},
            }
        )
    raise RuntimeError(f"the CA Secret {namespace}/{CA_SECRET} could not be read back")
