"""Start the operator: stand by until this replica holds the Lease (operator/lease.py), then
kopf's own loop, with clients made once and kept in kopf's memo."""

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

import kopf
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient
from prometheus_client import Gauge

from .. import aio, metrics
from ..builders.pool import OperatorSettings
from ..reconcile.ca import CA_NAME, CA_SECRET, CLIENT_CA_NAME, CLIENT_CA_SECRET, ensure_ca
from ..reconcile.context import Context
from ..reconcile.kube import Kube
from ..reconcile.poolapi import PoolApi
from . import handlers  # noqa: F401 - registers the handlers with kopf
from .kubelease import KubeLeaseApi, serve_probes
from .lease import Elector, Timings, lead
from .options import timings
from .reporting import OPERATOR_METRICS

log = logging.getLogger(__name__)
FINALIZER = "strongroom.io/finalizer"
EXIT_LEASE_LOST = 3


async def _kube_api() -> ApiClient:
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
    else:
        await kube_config.load_kube_config()
    return ApiClient()


def startup(args: argparse.Namespace) -> Any:
    """The startup handler, closed over the command line."""

    async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix="strongroom.io"
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="strongroom.io", key="last-handled-configuration"
        )
        settings.posting.level = logging.WARNING
        api = await _kube_api()
        kube = Kube(api)
        ca = await ensure_ca(kube, args.namespace, CA_SECRET, CA_NAME, args.owner_deployment)
        client_ca = await ensure_ca(
            kube, args.namespace, CLIENT_CA_SECRET, CLIENT_CA_NAME, args.owner_deployment
        )
        memo["api"] = api
        memo["context"] = Context(
            kube=kube,
            # Pools are called over mutual TLS with a certificate from the client CA; the
            # operator's ServiceAccount token never leaves for a pool.
            pools=PoolApi(ca.cert_pem.decode(), client_ca),
            ca=ca,
            client_ca=client_ca,
            settings=OperatorSettings(
                image=args.image,
                allowed_images=tuple(args.allowed_image),
                image_pull_policy=args.pool_image_pull_policy,
                metrics_port=args.pool_metrics_port,
            ),
        )
        log.info(
            "operator started; pools get image %s (also allowed: %s), pull policy %s",
            args.image,
            ", ".join(args.allowed_image) or "none",
            args.pool_image_pull_policy,
        )

    return start


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    context: Context | None = memo.get("context")
    if context is not None:
        await context.pools.close()
    api: ApiClient | None = memo.get("api")
    if api is not None:
        await api.close()


def _stop_now(reason: str) -> None:
    """The Lease is lost: end the process at once. Handlers still running would reconcile
    without the Lease, and kopf's graceful stop waits for them; the container restarts
    and stands by. Whatever a handler was doing is safe to repeat: every object is made
    once per resource uid."""
    log.error(
        "lost the Lease (%s): stopping at once so that nothing reconciles without it; "
        "the container restarts as a standby",
        reason,
    )
    logging.shutdown()
    os._exit(EXIT_LEASE_LOST)


async def _operate(args: argparse.Namespace, elector: Elector, stopping: asyncio.Event) -> None:
    """kopf's own loop, standalone (the Lease, not kopf's peering, decides who runs)."""
    started = asyncio.Event()

    async def mark_ready() -> None:
        await started.wait()
        elector.operating = True

    # Made before kopf starts: kopf leaves alone the tasks that existed before it.
    marker = asyncio.ensure_future(mark_ready())
    try:
        await kopf.operator(
            clusterwide=not args.watch_namespace,
            namespaces=args.watch_namespace,
            standalone=True,
            stop_flag=stopping,
            ready_flag=started,
        )
    finally:
        marker.cancel()


async def _main(args: argparse.Namespace, timings: Timings) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    # A standby stops at SIGTERM; once active, kopf takes these signals over, and also
    # stops when `stopping` was set before its handlers were in place.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    api = await _kube_api()  # the election's own client: kopf's cleanup closes the other
    elector = Elector(
        KubeLeaseApi(api, args.namespace, args.lease_name, args.owner_deployment),
        args.identity,
        f"{args.namespace}/{args.lease_name}",
        timings,
    )
    host, _, port = args.health_address.rpartition(":")
    probes = await serve_probes(elector, host or "0.0.0.0", int(port))  # noqa: S104
    active = Gauge(
        "strongroom_operator_active",
        "1 on the replica that holds the Lease and reconciles, 0 on a standby.",
        registry=OPERATOR_METRICS.registry,
    )
    active.set_function(lambda: 1.0 if elector.operating else 0.0)
    exposed = await metrics.serve(
        OPERATOR_METRICS.registry, args.metrics_port, args.metrics_address
    )
    log.info(
        "operator %s starting: electing the active replica with Lease %s/%s "
        "(lease %ss, renew deadline %ss, retry %ss)",
        args.identity,
        args.namespace,
        args.lease_name,
        timings.lease_seconds,
        timings.renew_deadline_seconds,
        timings.retry_seconds,
    )
    try:
        await lead(elector, lambda: _operate(args, elector, stopping), _stop_now, stopping)
    finally:
        if exposed is not None:
            await exposed.cleanup()
        await probes.cleanup()
        await api.close()


def run(args: argparse.Namespace) -> None:
    try:
        lease_timings = timings(args)
    except ValueError as exc:
        sys.exit(f"strongroom operator: {exc}")
    kopf.on.startup()(startup(args))
    # kopf names itself after POD_ID, else asks getpass for a user name, which a container
    # running as a uid without a passwd entry (the chart's 65532) does not have.
    os.environ.setdefault("POD_ID", args.identity)
    aio.run(_main(args, lease_timings))
