"""The operator's throughput: N EC P-256 Key resources applied at once, against the same N
keys made through the pool's API directly, on the cluster in KUBECONFIG.

Needs strongroom installed (`make demo`, or `helm install strongroom charts/strongroom -n
strongroom-system`). Makes a namespace with one HsmPool and two Vaults, times both paths,
prints the ratio (the goal is 2x at most) and the operator's peak memory, and deletes the
namespace again (the pool's token store with it: deletionPolicy Delete).

    KUBECONFIG=... ~/.cache/strongroom/venv/bin/python bench/operator_keys.py [--keys 200]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import uuid
from typing import Any

import aiohttp
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi

from strongroom.tls import OPERATOR_CLIENT_NAME, Issued, issue_client_cert, load_cert_chain_pem

OPERATOR_NAMESPACE = "strongroom-system"
OPERATOR = "strongroom-operator"
API = "strongroom.io/v1alpha1"


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    tool = os.environ.get("STRONGROOM_KUBECTL") or shutil.which("kubectl") or "kubectl"
    result = subprocess.run(
        [tool, *args], input=stdin, capture_output=True, text=True, timeout=300, check=False
    )
    if check and result.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def get(kind: str, namespace: str, *names: str) -> Any:
    return json.loads(kubectl("-n", namespace, "get", kind, *names, "-o", "json"))


def apply(*items: dict[str, Any]) -> None:
    kubectl(
        "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )


def ready(body: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (body.get("status") or {}).get("conditions") or []
    )


def wait_ready(kind: str, namespace: str, name: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = get(kind, namespace, name)
        if ready(body):
            return dict(body)
        time.sleep(1)
    sys.exit(f"{kind} {namespace}/{name} not Ready after {timeout:.0f}s")


def resource(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def operator_pod() -> str:
    """The operator pod holding the Lease: the one that reconciles."""
    return str(get("lease", OPERATOR_NAMESPACE, OPERATOR)["spec"]["holderIdentity"])


def operator_cpu_seconds() -> float:
    """CPU seconds (user + system) the active operator process has used so far."""
    stat = kubectl("-n", OPERATOR_NAMESPACE, "exec", operator_pod(), "--", "cat", "/proc/1/stat")
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def kubernetes_floor(namespace: str, count: int, concurrency: int) -> float:
    """Seconds for the Kubernetes writes the operator makes per Key, made by a plain client
    with no reconcile in between: an object created, then patched twice (as the operator
    adds its finalizer, then writes the status), `concurrency` objects at a time. ConfigMaps
    stand in for Keys so that no operator acts on them."""
    await kube_config.load_kube_config()
    limit = asyncio.Semaphore(concurrency)
    async with ApiClient() as api:
        core = CoreV1Api(api)

        async def one(index: int) -> None:
            name = f"floor-{index:04d}"
            async with limit:
                await core.create_namespaced_config_map(
                    namespace, {"metadata": {"name": name}, "data": {"spec": "P-256"}}
                )
                await core.patch_namespaced_config_map(
                    name, namespace, {"metadata": {"annotations": {"bench/finalizer": "yes"}}}
                )
                await core.patch_namespaced_config_map(name, namespace, {"data": {"ready": "1"}})

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        return time.perf_counter() - started


def operator_memory() -> dict[str, int]:
    """The active operator process's resident memory now and at its peak (VmRSS, VmHWM), in
    KiB: the pod holding the operator's Lease, the one that reconciles."""
    pod = operator_pod()
    status = kubectl("-n", OPERATOR_NAMESPACE, "exec", pod, "--", "cat", "/proc/1/status")
    return {k: int(v) for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M)}


async def direct(
    endpoint: str,
    host: str,
    vault: str,
    client_ca: Issued,
    ca: str,
    names: list[str],
    concurrency: int,
) -> float:
    """Seconds to make the keys through the pool's management API, as the operator does:
    with a client certificate from the operator's client CA, no bearer token."""
    context = ssl.create_default_context(cadata=ca)
    client = issue_client_cert(client_ca, OPERATOR_CLIENT_NAME, days=1)
    load_cert_chain_pem(context, client.cert_pem, client.key_pem)
    limit = asyncio.Semaphore(concurrency)
    headers = {"Host": host}
    body = {
        "kty": "EC-HSM",
        "crv": "P-256",
        "key_ops": ["sign", "verify"],
        "attributes": {"enabled": True},
    }

    async with aiohttp.ClientSession() as session:

        async def make(name: str) -> None:
            async with limit:
                async with session.put(
                    f"{endpoint}/_strongroom/v1/vaults/{vault}/keys/{name}",
                    json=body | {"owner": str(uuid.uuid4())},
                    headers=headers,
                    ssl=context,
                    server_hostname=host,
                ) as response:
                    if response.status >= 300:
                        sys.exit(f"PUT key {name}: {response.status} {await response.text()}")

        started = time.perf_counter()
        await asyncio.gather(*(make(name) for name in names))
        return time.perf_counter() - started


async def through_operator(
    namespace: str, vault: str, names: list[str], concurrency: int
) -> tuple[float, float]:
    """Seconds from creating the Key resources at once (`concurrency` creates in flight, as
    the direct path's requests) until every one is Ready, and the seconds the creates took."""
    keys = [
        resource(
            "Key", name, namespace, {"vaultRef": {"name": vault}, "kty": "EC-HSM", "curve": "P-256"}
        )
        for name in names
    ]
    # Listed in this process four times a second: a kubectl per poll would load the
    # two-core machine being measured.
    await kube_config.load_kube_config()
    limit = asyncio.Semaphore(concurrency)
    async with ApiClient() as api:
        objects = CustomObjectsApi(api)

        async def create(key: dict[str, Any]) -> None:
            async with limit:
                await objects.create_namespaced_custom_object(
                    "strongroom.io", "v1alpha1", namespace, "keys", key
                )

        started = time.perf_counter()
        await asyncio.gather(*(create(key) for key in keys))
        created = time.perf_counter() - started
        while True:
            listed = await objects.list_namespaced_custom_object(
                "strongroom.io", "v1alpha1", namespace, "keys"
            )
            if sum(ready(item) for item in listed["items"]) == len(names):
                return time.perf_counter() - started, created
            if time.perf_counter() - started > 1800:
                sys.exit("the Keys were not all Ready within 30 minutes")
            await asyncio.sleep(0.25)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="parallel requests of the direct path (default %(default)s)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the namespace afterwards")
    args = parser.parse_args()
    if not get("deployments", OPERATOR_NAMESPACE, OPERATOR).get("status", {}).get("readyReplicas"):
        sys.exit(f"the operator is not running in {OPERATOR_NAMESPACE}: install the chart first")

    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    try:
        apply(
            resource(
                "HsmPool",
                "bench",
                namespace,
                {"backend": "softhsm2", "storage": {"size": "1Gi"}, "deletionPolicy": "Delete"},
            ),
            resource("Vault", "direct", namespace, {"hsmPoolRef": {"name": "bench"}}),
            resource("Vault", "operator", namespace, {"hsmPoolRef": {"name": "bench"}}),
        )
        wait_ready("hsmpool", namespace, "bench")
        wait_ready("vault", namespace, "direct")
        wait_ready("vault", namespace, "operator")
        service = get("service", namespace, "bench-pool")
        ca = base64.b64decode(
            get("secret", OPERATOR_NAMESPACE, "strongroom-ca")["data"]["tls.crt"]
        ).decode()
        client_ca_data = get("secret", OPERATOR_NAMESPACE, "strongroom-client-ca")["data"]
        client_ca = Issued(
            base64.b64decode(client_ca_data["tls.crt"]), base64.b64decode(client_ca_data["tls.key"])
        )
        memory_before = operator_memory()
        names = [f"k{i:04d}" for i in range(args.keys)]
        direct_seconds = asyncio.run(
            direct(
                f"https://{service['spec']['clusterIP']}",
                f"bench-pool.{namespace}.svc",
                "direct",
                client_ca,
                ca,
                names,
                args.concurrency,
            )
        )
        floor_seconds = asyncio.run(kubernetes_floor(namespace, args.keys, args.concurrency))
        cpu_before = operator_cpu_seconds()
        operator_seconds, create_seconds = asyncio.run(
            through_operator(namespace, "operator", names, args.concurrency)
        )
        operator_cpu = operator_cpu_seconds() - cpu_before
        memory_after = operator_memory()
    finally:
        if not args.keep:
            kubectl("delete", "namespace", namespace, "--timeout=300s", check=False)
    ratio = operator_seconds / direct_seconds
    print(f"{args.keys} EC P-256 keys, one pool, one vault each")
    print(
        f"  through the pool's API ({args.concurrency} parallel): {direct_seconds:8.2f} s "
        f"({args.keys / direct_seconds:6.1f} keys/s)"
    )
    print(
        f"  as Key resources ({args.concurrency} parallel creates), until all Ready: "
        f"{operator_seconds:8.2f} s "
        f"({args.keys / operator_seconds:6.1f} keys/s)"
    )
    print(f"    of which creating the {args.keys} objects:      {create_seconds:8.2f} s")
    print(f"    operator CPU meanwhile:                   {operator_cpu:8.2f} s")
    print(
        f"  Kubernetes alone, the same writes ({args.concurrency} parallel): "
        f"{floor_seconds:8.2f} s (create and two patches per object, no reconcile)"
    )
    print(f"  ratio: {ratio:.2f}x (goal: 2x at most)")
    print(
        "  against the pool's API plus Kubernetes alone: "
        f"{operator_seconds / (direct_seconds + floor_seconds):.2f}x"
    )
    print(
        f"  operator memory: resident {memory_before.get('VmRSS', 0) / 1024:.0f} MiB before, "
        f"{memory_after.get('VmRSS', 0) / 1024:.0f} MiB after, "
        f"peak {memory_after.get('VmHWM', 0) / 1024:.0f} MiB"
    )
    return 0 if ratio <= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
