"""Which fields the operator's server-side apply owns after it created an object itself."""

from typing import Any

from strongroom.reconcile.kube import FIELD_MANAGER, applied_fields


def entry(manager: str, operation: str, fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": "apps/v1",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
        "time": "2026-12-03T00:00:00Z",
    } | extra


INIT = {
    "f:spec": {"f:template": {"f:spec": {"f:initContainers": {'k:{"name":"restore"}': {".": {}}}}}}
}
CONTAINERS = {
    "f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"hsm"}': {".": {}}}}}}
}


def obj(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "metadata": {"managedFields": list(entries)}}


def test_an_object_the_operator_only_applied_needs_nothing() -> None:
    assert applied_fields(obj(entry(FIELD_MANAGER, "Apply", CONTAINERS))) is None
    assert applied_fields(obj()) is None
    assert applied_fields({"metadata": {}}) is None


def test_the_fields_of_the_operators_create_become_applied_fields() -> None:
    status = entry("kube-controller-manager", "Update", {"f:status": {}}, subresource="status")
    other = entry("kubectl-edit", "Update", {"f:metadata": {"f:labels": {"f:team": {}}}})
    created = entry(FIELD_MANAGER, "Update", INIT)
    applied = entry(FIELD_MANAGER, "Apply", CONTAINERS)
    migrated = applied_fields(obj(status, created, other, applied))
    assert migrated is not None
    # Everyone else's entries are left exactly as they were.
    assert migrated[:2] == [status, other]
    [ours] = migrated[2:]
    assert ours["manager"] == FIELD_MANAGER and ours["operation"] == "Apply"
    template = ours["fieldsV1"]["f:spec"]["f:template"]["f:spec"]
    # Both trees, merged: the create's init container and the apply's container.
    assert set(template) == {"f:initContainers", "f:containers"}
    assert ours["apiVersion"] == "apps/v1" and ours["time"] == "2026-12-03T00:00:00Z"


def test_a_create_alone_becomes_the_apply_entry() -> None:
    migrated = applied_fields(obj(entry(FIELD_MANAGER, "Update", INIT)))
    assert migrated == [entry(FIELD_MANAGER, "Apply", INIT)]


def test_the_operators_status_writes_are_not_taken_as_applied() -> None:
    status = entry(FIELD_MANAGER, "Update", {"f:status": {}}, subresource="status")
    assert applied_fields(obj(status)) is None
