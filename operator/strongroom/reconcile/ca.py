"""The operator's two CAs, each kept in a Secret of its namespace: the server CA signs each
pool's TLS certificate; the client CA signs the operator's own client certificate, the only
credential the pools take from the operator.

The Secrets are owned by the operator's Deployment when the operator is told its name, so
that uninstalling the operator removes the CAs with it; pools' certificates are reissued
from new CAs by the next operator (reconcile.pool.needs_new_certificate).
"""

import base64

from ..tls import Issued, make_ca
from .kube import Kube

CA_SECRET = "strongroom-ca"  # noqa: S105 - the name of a Secret
CA_NAME = "strongroom operator CA"
CLIENT_CA_SECRET = "strongroom-client-ca"  # noqa: S105 - the name of a Secret
CLIENT_CA_NAME = "strongroom operator client CA"


async def ensure_ca(
    kube: Kube,
    namespace: str,
    secret_name: str,
    common_name: str,
    owner_deployment: str | None = None,
) -> Issued:
    """Load the CA kept in `secret_name`, making it the first time. Two operators racing:
    the first one's wins."""
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
        found = await kube.get("v1", "Secret", namespace, secret_name)
        if found is not None:
            data = found.get("data") or {}
            return Issued(base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"]))
        ca = make_ca(common_name)
        await kube.create_once(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": secret_name,
                    "namespace": namespace,
                    "labels": {"app.kubernetes.io/part-of": "strongroom"},
                    "ownerReferences": owners,
                },
                "type": "kubernetes.io/tls",
                "stringData": {"tls.crt": ca.cert_pem.decode(), "tls.key": ca.key_pem.decode()},
            }
        )
    raise RuntimeError(f"the CA Secret {namespace}/{secret_name} could not be read back")
