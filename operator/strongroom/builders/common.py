"""What every built object shares: names, labels, owner references."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..models import API_VERSION

MANAGED_BY = "strongroom-operator"
# On every object the operator makes: the uid of the resource it was made for. The only mark
# of ownership of what has no owner reference (cluster-scoped and retained objects).
OWNER_UID_LABEL = "strongroom.io/owner-uid"
HTTPS_PORT = 8443
AUDIENCE = "strongroom.io/vault"


@dataclass(frozen=True)
class Owner:
    """The custom resource that owns a built object."""

    kind: str
    name: str
    namespace: str
    uid: str

    @classmethod
    def of(cls, kind: str, meta: Mapping[str, Any]) -> "Owner":
        return cls(kind, str(meta["name"]), str(meta["namespace"]), str(meta["uid"]))

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def labels(component: str, instance: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "strongroom",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def metadata(name: str, owner: Owner, component: str, *, owned: bool = True) -> dict[str, Any]:
    """Metadata of a namespaced child; `owned=False` leaves it when the owner is deleted."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(component, owner.name) | {OWNER_UID_LABEL: owner.uid},
    }
    if owned:
        meta["ownerReferences"] = [owner.reference()]
    return meta
