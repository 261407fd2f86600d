"""The operator's command line, apart from kopf so that `strongroom --help` stays quick."""

import argparse
import os
import socket
from pathlib import Path

from .. import metrics
from .lease import LEASE_NAME, Timings

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
        "--health-address",
        default="0.0.0.0:8080",
        help="host:port of the probes: /healthz (liveness) and /readyz (readiness, true for "
        "the active replica and for a standby that can read the Lease) (default: %(default)s)",
    )
    metrics.add_arguments(parser, "the operator")
    parser.add_argument(
        "--pool-metrics-port",
        type=int,
        default=0,
        help="the port of every pool's metrics endpoint (its vault server's and HSM "
        "sidecar's), with Prometheus scrape annotations on the pool's pod (default 0: none)",
    )
    election = parser.add_argument_group(
        "leader election",
        "Replicas elect one active operator with a coordination.k8s.io Lease in --namespace; "
        "the others stand by and take over once its holder stops renewing it.",
    )
    election.add_argument(
        "--identity",
        default=os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname(),
        help="this replica's name in the Lease (default: $POD_NAME, else the host name)",
    )
    election.add_argument(
        "--lease-name", default=LEASE_NAME, help="name of the Lease (default: %(default)s)"
    )
    election.add_argument(
        "--lease-duration",
        type=int,
        default=Timings.lease_seconds,
        help="seconds a standby waits, after it last saw the Lease renewed, before taking "
        "it over (default: %(default)s)",
    )
    election.add_argument(
        "--lease-renew-deadline",
        type=float,
        default=Timings.renew_deadline_seconds,
        help="seconds the active replica keeps trying to renew before it stops; shorter "
        "than --lease-duration (default: %(default)s)",
    )
    election.add_argument(
        "--lease-retry-period",
        type=float,
        default=Timings.retry_seconds,
        help="seconds between renewals, and between a standby's looks at the Lease "
        "(default: %(default)s)",
    )


def timings(args: argparse.Namespace) -> Timings:
    """The Lease's timings from the command line; ValueError when they do not fit."""
    return Timings(args.lease_duration, args.lease_renew_deadline, args.lease_retry_period)
