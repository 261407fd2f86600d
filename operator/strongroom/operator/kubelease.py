"""The Lease on the Kubernetes API, and the probes every replica answers."""

import asyncio
from typing import Any

from aiohttp import web
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from .lease import LEASE_NAME, Elector, LeaseConflict, LeaseRecord


class KubeLeaseApi:
    """LeaseApi on the Kubernetes API: GET, POST and PUT of one Lease in one namespace.
    A new Lease is owned by the operator's Deployment, so uninstalling removes it."""

    def __init__(
        self,
        api: ApiClient,
        namespace: str,
        name: str = LEASE_NAME,
        owner_deployment: str | None = None,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.owner_deployment = owner_deployment
        self.collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"

    async def _call(self, method: str, url: str, timeout: float, body: Any = None) -> Any:
        timeout = max(timeout, 0.1)
        try:
            return await asyncio.wait_for(
                self.api.call_api(
                    url,
                    method,
                    header_params={
                        "Content-Type": "application/json",
                        "Accept": "application/json",
                    },
                    body=body,
                    response_types_map={200: "object", 201: "object"},
                    auth_settings=["BearerToken"],
                    _return_http_data_only=True,
                    _request_timeout=timeout,
                ),
                timeout=timeout,
            )
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflict(f"Lease {self.namespace}/{self.name} changed") from exc
            raise

    async def _owners(self, timeout: float) -> list[dict[str, Any]]:
        if not self.owner_deployment:
            return []
        url = f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{self.owner_deployment}"
        try:
            meta = (await self._call("GET", url, timeout))["metadata"]
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise
        return [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": meta["name"],
                "uid": meta["uid"],
            }
        ]

    @staticmethod
    def _body(record: LeaseRecord, meta: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": record.spec(),
        }

    async def read(self, timeout: float) -> LeaseRecord | None:
        try:
            body = await self._call("GET", f"{self.collection}/{self.name}", timeout)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return LeaseRecord.from_body(body)

    async def create(self, record: LeaseRecord, timeout: float) -> LeaseRecord:
        meta: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "labels": {
                "app.kubernetes.io/part-of": "strongroom",
                "app.kubernetes.io/component": "operator",
            },
            "ownerReferences": await self._owners(timeout),
        }
        body = await self._call("POST", self.collection, timeout, self._body(record, meta))
        return LeaseRecord.from_body(body)

    async def replace(self, record: LeaseRecord, timeout: float) -> LeaseRecord:
        meta = {k: v for k, v in record.meta.items() if k != "managedFields"}
        meta |= {"name": self.name, "namespace": self.namespace, "resourceVersion": record.version}
        url = f"{self.collection}/{self.name}"
        body = await self._call("PUT", url, timeout, self._body(record, meta))
        return LeaseRecord.from_body(body)


async def serve_probes(elector: Elector, host: str, port: int) -> web.AppRunner:
    """/healthz (liveness) and /readyz (readiness) of this replica, from the start: a
    standby runs no kopf, so kopf's own endpoint cannot answer for it."""

    async def healthz(_: web.Request) -> web.Response:
        live, _ready, what = elector.health()
        return web.Response(status=200 if live else 500, text=what + "\n")

    async def readyz(_: web.Request) -> web.Response:
        _live, ready, what = elector.health()
        return web.Response(status=200 if ready else 503, text=what + "\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
