"""The operator writes only what it made: every child is created, applied or deleted here.

An object is this resource's when an owner reference with the resource's uid says it
controls it, or, for what has no owner reference (cluster-scoped objects, retained
token stores), when its `strongroom.io/owner-uid` label names the resource. Anything else
under the name the operator would use is left as it is, and the resource says so
(ObjectConflict): the operator never adopts, patches or deletes it.
"""

from collections.abc import Mapping
from typing import Any

from ..builders.common import MANAGED_BY, OWNER_UID_LABEL, Owner
from .errors import Conflict, ObjectConflict
from .kube import Kube


def controlled_by(found: Mapping[str, Any], uid: str) -> bool:
    """Pure: whether the object says it was made for the resource with this uid."""
    meta = found.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("uid") == uid and ref.get("controller") is True:
            return True
    return (meta.get("labels") or {}).get(OWNER_UID_LABEL) == uid and not _controller(meta)


def retained_for(found: Mapping[str, Any], owner: Owner, component: str) -> bool:
    """Pure: an object the operator made for an earlier resource of the same kind, name and
    namespace and kept on purpose (a pool's token store with deletionPolicy Retain), which a
    new resource of that name takes up again, as documented."""
    meta = found.get("metadata") or {}
    found_labels = meta.get("labels") or {}
    return (
        not _controller(meta)
        and found_labels.get("app.kubernetes.io/managed-by") == MANAGED_BY
        and found_labels.get("app.kubernetes.io/component") == component
        and found_labels.get("app.kubernetes.io/instance") == owner.name
        and meta.get("namespace") == owner.namespace
    )


def _controller(meta: Mapping[str, Any]) -> bool:
    return any(ref.get("controller") is True for ref in meta.get("ownerReferences") or [])


def describe(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj['kind']} {where}{meta['name']}"


def conflict(obj: Mapping[str, Any], owner: Owner) -> ObjectConflict:
    return ObjectConflict(
        f"{describe(obj)} already exists and was not made by strongroom for {owner.kind} "
        f"{owner.name!r}; strongroom will not take it over. Delete or rename it, or give the "
        f"{owner.kind} another name"
    )


async def apply_owned(
    kube: Kube, obj: dict[str, Any], owner: Owner, *, retained_component: str | None = None
) -> None:
    """Create the object, or apply it over the one this resource made; refuse any other.

    `retained_component`: the object may also be one kept from an earlier resource of the
    same name (see retained_for), which this one then takes up and labels as its own.
    """
    found, made = await _made_or_mine(kube, obj, owner, retained_component)
    if made:
        return
    # The uid makes the API server refuse the write if the object was replaced meanwhile.
    meta = obj["metadata"]
    await kube.apply(obj | {"metadata": meta | {"uid": found["metadata"]["uid"]}}, found)


async def create_owned(
    kube: Kube, obj: dict[str, Any], owner: Owner, *, retained_component: str | None = None
) -> dict[str, Any]:
    """Create the object once and never change it (a pool secret); the one found must be
    this resource's (or retained for it). Returns what the API server holds."""
    found, made = await _made_or_mine(kube, obj, owner, retained_component)
    if made:
        meta = obj["metadata"]
        read = await kube.get(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        if read is None:
            raise Conflict(f"{describe(obj)} changed while it was made; retrying")
        return read
    return found


async def _made_or_mine(
    kube: Kube, obj: dict[str, Any], owner: Owner, retained_component: str | None
) -> tuple[dict[str, Any], bool]:
    """Create the object when there is none (True), or return the one found when it is this
    resource's (or retained for it); anything else is an ObjectConflict."""
    meta = obj["metadata"]
    api_version, kind = obj["apiVersion"], obj["kind"]
    found = await kube.get(api_version, kind, meta.get("namespace"), meta["name"])
    if found is None:
        if await kube.create_once(obj):
            return obj, True
        found = await kube.get(api_version, kind, meta.get("namespace"), meta["name"])
        if found is None:
            raise Conflict(f"{describe(obj)} changed while it was made; retrying")
    mine = controlled_by(found, owner.uid) or (
        retained_component is not None and retained_for(found, owner, retained_component)
    )
    if not mine:
        raise conflict(obj, owner)
    return found, False


async def settle_ownership(
    kube: Kube, found: Mapping[str, Any], owner: Owner, *, owned: bool
) -> None:
    """Give the object an owner reference to `owner` when it is to go with it, and take
    that reference off when it is to outlive it (a pool's token store and pool secret when
    deletionPolicy changes). Only an object that is this resource's (or kept for it) is
    touched; other owners' references stay as they are."""
    meta = found.get("metadata") or {}
    current = list(meta.get("ownerReferences") or [])
    wanted = [ref for ref in current if ref.get("uid") != owner.uid]
    if owned:
        wanted.append(owner.reference())
    if [ref.get("uid") for ref in wanted] == [ref.get("uid") for ref in current]:
        return
    await kube.set_owner_references(
        found["apiVersion"],
        found["kind"],
        meta.get("namespace"),
        meta["name"],
        meta.get("resourceVersion"),
        wanted,
    )


async def delete_owned(
    kube: Kube, api_version: str, kind: str, namespace: str | None, name: str, uid: str
) -> bool:
    """Delete the object only if it is the resource's with this uid. True when deleted."""
    found = await kube.get(api_version, kind, namespace, name)
    if found is None or not controlled_by(found, uid):
        return False
    await kube.delete(api_version, kind, namespace, name, uid=found["metadata"]["uid"])
    return True
