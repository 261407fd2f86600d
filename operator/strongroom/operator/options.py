"""The operator's command line, apart from kopf so that `strongroom --help` stays quick."""

import argparse
import os
from pathlib import Path

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def own_namespace() -> str:
    path = SERVICE_ACCOUNT / "namespace"
    return path.read_text().strip() if path.exists() else "strongroom-system"


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    namespace = own_namespace()
    parser.add_argument(
        "--image",
        default=os.environ.get("STRONGROOM_IMAGE", "strongroom.io/strongroom:dev"),
        help="image of the pools' pods (default: $STRONGROOM_IMAGE or %(default)s)",
    )
    parser.add_argument(
        "--namespace", default=namespace, help="the operator's namespace, where its CA is kept"
    )
    parser.add_argument(
        "--owner-deployment",
        help="the operator's own Deployment, made the owner of the CA Secret so that "
        "uninstalling the operator removes it (default: the CA is kept)",
    )
    parser.add_argument(
        "--allowed-image",
        action="append",
        default=_env_list("STRONGROOM_ALLOWED_IMAGES"),
        help="an image HsmPools may name in spec.image besides --image (repeatable; default: "
        "$STRONGROOM_ALLOWED_IMAGES, comma-separated; none)",
    )
    parser.add_argument(
        "--pool-image-pull-policy",
        choices=PULL_POLICIES,
        default=os.environ.get("STRONGROOM_POOL_IMAGE_PULL_POLICY", "IfNotPresent"),
        help="imagePullPolicy of the pools' containers (default: "
        "$STRONGROOM_POOL_IMAGE_PULL_POLICY or %(default)s)",
    )
    parser.add_argument(
        "--watch-namespace",
        action="append",
        default=[],
        help="reconcile only in this namespace (repeatable; default: every namespace)",
    )
    parser.add_argument(
        "--liveness", default="http://0.0.0.0:8080/healthz", help="kopf's liveness endpoint"
    )
