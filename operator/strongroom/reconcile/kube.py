"""The few Kubernetes calls the operator makes, on any kind, with plain dict bodies."""

from typing import Any

from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

FIELD_MANAGER = "strongroom-operator"
PLURALS = {
    "Secret": "secrets",
    "ConfigMap": "configmaps",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "ServiceAccount": "serviceaccounts",
    "Service": "services",
    "StatefulSet": "statefulsets",
    "Deployment": "deployments",
    "ClusterRoleBinding": "clusterrolebindings",
    "HsmPool": "hsmpools",
    "Vault": "vaults",
    "Key": "keys",
    "VaultSecret": "vaultsecrets",
}


def path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    scope = f"/namespaces/{namespace}" if namespace else ""
    tail = f"/{name}" if name else ""
    return f"{prefix}{scope}/{PLURALS[kind]}{tail}"


def _union(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two fieldsV1 trees as one (every field either names)."""
    merged = dict(a)
    for key, value in b.items():
        if isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = _union(merged[key], value)
        else:
            merged[key] = value
    return merged


def applied_fields(found: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Pure: the object's managedFields with the operator's own update entry (what its
    create, a POST, recorded) turned into, or merged with, its apply entry; None when there
    is no such entry. Server-side apply removes only fields of the applier's apply entry that
    a new apply leaves out: without this, a field the operator once created an object with
    (the restore init container of a recovering pool) would stay in it for good."""
    entries = list(found.get("metadata", {}).get("managedFields") or [])

    def ours(entry: dict[str, Any], operation: str) -> bool:
        return (
            entry.get("manager") == FIELD_MANAGER
            and entry.get("operation") == operation
            and not entry.get("subresource")
            and entry.get("fieldsType", "FieldsV1") == "FieldsV1"
        )

    updates = [e for e in entries if ours(e, "Update")]
    if not updates:
        return None
    applies = [e for e in entries if ours(e, "Apply")]
    rest = [e for e in entries if not ours(e, "Update") and not ours(e, "Apply")]
    fields: dict[str, Any] = {}
    for entry in applies + updates:
        fields = _union(fields, entry.get("fieldsV1") or {})
    base = (applies or updates)[0]
    merged = {
        "manager": FIELD_MANAGER,
        "operation": "Apply",
        "apiVersion": base.get("apiVersion", found.get("apiVersion")),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }
    if base.get("time"):
        merged["time"] = base["time"]
    return rest + [merged]


class Kube:
    """Server-side apply, get, list, create-once and delete, by apiVersion and kind.

    Only reconcile.owned decides what may be applied or deleted: these calls do not check."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api

    async def _call(
        self,
        method: str,
        url: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.api.call_api(
            url,
            method,
            query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            response_types_map={200: "object", 201: "object", 202: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
        return result

    async def apply(
        self, obj: dict[str, Any], found: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Server-side apply. `force` takes back the operator's own fields of its own object
        (reconcile.owned checked whose it is; the uid in its body makes the API server refuse
        the write if the object was replaced meanwhile).

        `found`, the object as read: when the operator created it (a POST, which the API
        server records as an update, not an apply), its fields are first made the
        operator's applied fields (applied_fields), so that a field this apply leaves out is
        removed, not kept forever under the create's entry."""
        meta = obj["metadata"]
        url = path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        if found is not None:
            migrated = applied_fields(found)
            if migrated is not None:
                await self._call(
                    "PATCH",
                    url,
                    [
                        {
                            "op": "test",
                            "path": "/metadata/resourceVersion",
                            "value": found["metadata"]["resourceVersion"],
                        },
                        {"op": "replace", "path": "/metadata/managedFields", "value": migrated},
                    ],
                    [("fieldManager", FIELD_MANAGER)],
                    "application/json-patch+json",
                )
        return await self._call(
            "PATCH",
            url,
            obj,
            [("fieldManager", FIELD_MANAGER), ("force", "true")],
            "application/apply-patch+yaml",
        )

    async def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        try:
            return await self._call("GET", path(api_version, kind, namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def list_objects(
        self, api_version: str, kind: str, namespace: str | None
    ) -> list[dict[str, Any]]:
        answer = await self._call("GET", path(api_version, kind, namespace))
        items: list[dict[str, Any]] = answer.get("items") or []
        return items

    async def create_once(self, obj: dict[str, Any]) -> bool:
        """Create the object unless it exists; never replaces it. True when it was created."""
        meta = obj["metadata"]
        try:
            await self._call(
                "POST",
                path(obj["apiVersion"], obj["kind"], meta.get("namespace")),
                obj,
                [("fieldManager", FIELD_MANAGER)],
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def set_owner_references(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        resource_version: str | None,
        references: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """Replace the object's owner references ([] for none): a merge patch that the API
        server refuses (409) if the object changed since `resource_version`. Server-side
        apply cannot take back a reference that the object was created with."""
        body = {
            "metadata": {"resourceVersion": resource_version, "ownerReferences": references or None}
        }
        return await self._call(
            "PATCH",
            path(api_version, kind, namespace, name),
            body,
            [("fieldManager", FIELD_MANAGER)],
            "application/merge-patch+json",
        )

    async def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        uid: str | None = None,
    ) -> None:
        """Delete the object; with `uid`, only that very object (409 if it was replaced)."""
        body = None
        if uid is not None:
            body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
        try:
            await self._call("DELETE", path(api_version, kind, namespace, name), body)
        except ApiException as exc:
            if exc.status != 404:
                raise
