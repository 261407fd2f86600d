"""Start the operator: clients made once and kept in kopf's memo, then kopf's own loop."""

import argparse
import logging
import os
import socket
from typing import Any

import kopf
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient

from .. import aio
from ..builders.pool import OperatorSettings
from ..reconcile.ca import CA_NAME, CA_SECRET, CLIENT_CA_NAME, CLIENT_CA_SECRET, ensure_ca
from ..reconcile.context import Context
from ..reconcile.kube import Kube
from ..reconcile.poolapi import PoolApi
from . import handlers  # noqa: F401 - registers the handlers with kopf

log = logging.getLogger(__name__)
FINALIZER = "strongroom.io/finalizer"


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


def run(args: argparse.Namespace) -> None:
    kopf.on.startup()(startup(args))
    # kopf names itself after POD_ID, else asks getpass for a user name, which a container
    # running as a uid without a passwd entry (the chart's 65532) does not have.
    os.environ.setdefault("POD_ID", os.environ.get("HOSTNAME") or socket.gethostname())
    aio.run(
        kopf.operator(
            clusterwide=not args.watch_namespace,
            namespaces=args.watch_namespace,
            liveness_endpoint=args.liveness,
            standalone=True,  # one replica; no peering objects to keep
        )
    )
