"""Deleting a Vault never waits on a pool that is gone, and says at once, with the way out,
when it waits on one that does not answer. Run with the recording doubles, no cluster."""

from collections.abc import Callable
from typing import Any

import aiohttp
import kopf
import pytest

from strongroom.builders.common import Owner
from strongroom.models import VaultSpec
from strongroom.operator.handlers import vault_deleted
from strongroom.operator.reporting import failure_to_kopf
from strongroom.reconcile.errors import DeletionBlocked, PoolApiError
from strongroom.reconcile.vault import delete_vault

from .test_reconcile_isolation import (
    PoolDouble,
    RecordingKube,
    context,
    failure,
    hsm_pool_body,
    pool_of,
    run,
    vault_body,
)


class DeletingPool(PoolDouble):
    """A pool that stops serving vaults, or fails to with `refusal`."""

    def __init__(self, refusal: BaseException | None = None) -> None:
        super().__init__()
        self.refusal = refusal
        self.deleted: list[str] = []

    async def delete_vault(self, endpoint: str, name: str) -> None:
        if self.refusal is not None:
            raise self.refusal
        self.deleted.append(name)


def vault_of(kube: RecordingKube) -> tuple[dict[str, Any], Owner, VaultSpec]:
    body = kube.put(vault_body("payments", "main"))
    return body, Owner.of("Vault", body["metadata"]), VaultSpec.model_validate(body["spec"])


def with_pool(deleting: bool = False) -> RecordingKube:
    kube = RecordingKube()
    pool = hsm_pool_body(pool_of("main"))
    if deleting:
        pool["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    kube.put(pool)
    return kube


def test_a_vault_whose_pool_answers_is_no_longer_served_and_released_quietly() -> None:
    kube, pools = with_pool(), DeletingPool()
    _, owner, spec = vault_of(kube)
    assert run(lambda: delete_vault(context(kube, pools), owner, spec)) is None
    assert pools.deleted == ["payments"]


@pytest.mark.parametrize(
    ("cluster", "words"),
    [(RecordingKube, "no longer exists"), (lambda: with_pool(deleting=True), "is being deleted")],
    ids=["pool-gone", "pool-being-deleted"],
)
def test_a_vault_whose_pool_is_gone_or_going_is_released_at_once(
    cluster: Callable[[], RecordingKube], words: str
) -> None:
    kube, pools = cluster(), DeletingPool(AssertionError("the pool must not be asked"))
    _, owner, spec = vault_of(kube)
    note = run(lambda: delete_vault(context(kube, pools), owner, spec))
    assert f"HsmPool 'main' {words}" in note and "deletionPolicy" in note


@pytest.mark.parametrize(
    ("refusal", "reason"),
    [
        (aiohttp.ClientConnectionError(), "PoolUnreachable"),
        (ConnectionRefusedError(), "PoolUnreachable"),
        (TimeoutError(), "PoolUnreachable"),
        (PoolApiError(503, "", "starting"), "PoolFailed"),
    ],
    ids=["client-error", "refused", "timeout", "pool-failed"],
)
def test_a_vault_whose_pool_does_not_answer_waits_and_says_how_to_force_it(
    refusal: BaseException, reason: str
) -> None:
    kube, pools = with_pool(), DeletingPool(refusal)
    _, owner, spec = vault_of(kube)
    error = failure(lambda: delete_vault(context(kube, pools), owner, spec))
    assert isinstance(error, DeletionBlocked) and error.reason == reason
    assert error.retry_after is not None  # retried: the pool may come back
    assert "deletion of Vault 'payments' waits for HsmPool 'main'" in error.message
    assert (
        "remove its finalizer: kubectl -n team-a patch vault payments --type=merge "
        """-p '{"metadata":{"finalizers":null}}'"""
    ) in error.message


class _Patch:
    def __init__(self) -> None:
        self.status: dict[str, Any] = {}


def test_a_blocked_deletion_is_a_warning_and_a_condition_at_once(monkeypatch: Any) -> None:
    events: list[dict[str, Any]] = []
    monkeypatch.setattr(kopf, "event", lambda body, **kw: events.append(kw))
    kube, pools = with_pool(), DeletingPool(aiohttp.ClientConnectionError())
    body, owner, spec = vault_of(kube)
    error = failure(lambda: delete_vault(context(kube, pools), owner, spec))
    patch = _Patch()
    result = failure_to_kopf(error, kopf.Body(body | {"status": {}}), patch)  # type: ignore[arg-type]
    assert isinstance(result, kopf.TemporaryError) and result.delay == error.retry_after
    ready = patch.status["conditions"][-1]
    assert (ready["status"], ready["reason"]) == ("False", "PoolUnreachable")
    assert "remove its finalizer" in ready["message"]
    assert events == [{"type": "Warning", "reason": "PoolUnreachable", "message": error.message}]


@pytest.mark.parametrize("pool_exists", [False, True], ids=["pool-gone", "pool-answers"])
def test_the_handler_posts_a_normal_event_only_when_the_pool_is_gone(
    pool_exists: bool, monkeypatch: Any
) -> None:
    events: list[dict[str, Any]] = []
    monkeypatch.setattr(kopf, "event", lambda body, **kw: events.append(kw))
    kube, pools = (with_pool() if pool_exists else RecordingKube()), DeletingPool()
    body, _, _ = vault_of(kube)
    memo = kopf.Memo()
    memo["context"] = context(kube, pools)
    run(lambda: vault_deleted(body=kopf.Body(body), patch=_Patch(), memo=memo))  # type: ignore[arg-type]
    if pool_exists:
        assert events == [] and pools.deleted == ["payments"]
    else:
        assert [(e["type"], e["reason"]) for e in events] == [("Normal", "PoolGone")]
        assert "no longer exists" in events[0]["message"] and pools.deleted == []
