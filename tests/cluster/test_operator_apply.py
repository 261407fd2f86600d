"""The operator's writes against the real API server: an object it created and later
applies without a field loses that field (the restore init container of a recovered pool's
StatefulSet, a value dropped by a newer operator)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient

from strongroom.reconcile.kube import Kube as OperatorKube

from .kube import Kube


def config_map(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


async def _created_then_applied(namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
    client: ApiClient = await config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    async with client:
        kube = OperatorKube(client)
        both = {"kept": "1", "dropped": "2"}
        results = []
        for name, pass_found in (("as-the-server-does", False), ("as-the-operator-does", True)):
            assert await kube.create_once(config_map(namespace, name, both))
            found = await kube.get("v1", "ConfigMap", namespace, name)
            assert found is not None and found["data"] == both
            smaller = config_map(namespace, name, {"kept": "1"})
            await kube.apply(smaller, found if pass_found else None)
            # Applied again, as every reconcile does: nothing left to take over.
            again = await kube.get("v1", "ConfigMap", namespace, name)
            assert again is not None
            await kube.apply(smaller, again if pass_found else None)
            final = await kube.get("v1", "ConfigMap", namespace, name)
            assert final is not None
            results.append(final)
        return results[0], results[1]


def test_a_field_the_operator_created_and_no_longer_applies_is_removed(kube: Kube) -> None:
    plain, operator = asyncio.run(_created_then_applied(kube.namespace))
    # What the API server does on its own: the create's fields outlive an apply without them.
    assert plain["data"] == {"kept": "1", "dropped": "2"}
    # The operator's apply takes its create's fields over first: the field goes.
    assert operator["data"] == {"kept": "1"}
    managers = {(e["manager"], e["operation"]) for e in operator["metadata"]["managedFields"]}
    assert ("strongroom-operator", "Update") not in managers
    assert ("strongroom-operator", "Apply") in managers
