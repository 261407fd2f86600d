"""Where Keys and VaultSecrets reach their Vault: many of one Vault reconciled at once read
the Vault and its pool once, and share a failure as they would share the answer."""

import asyncio
from types import SimpleNamespace
from typing import Any

from strongroom.models import API_VERSION
from strongroom.reconcile import vault as vault_reconcile
from strongroom.reconcile.errors import NotReady

READY = {"conditions": [{"type": "Ready", "status": "True"}]}


class CountingKube:
    """The API server's answers for one Vault and its pool, each read counted."""

    def __init__(self, vault_ready: bool = True) -> None:
        self.reads: list[str] = []
        self.vault_ready = vault_ready

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        assert api_version == API_VERSION and namespace == "ns"
        self.reads.append(f"{kind}/{name}")
        await asyncio.sleep(0.01)  # an API server round trip: the others arrive meanwhile
        meta = {"name": name, "namespace": namespace, "uid": f"uid-{name}"}
        if kind == "Vault":
            status = READY if self.vault_ready else {}
            return {"metadata": meta, "spec": {"hsmPoolRef": {"name": "p"}}, "status": status}
        assert kind == "HsmPool"
        return {"metadata": meta, "spec": {}, "status": READY}


def _context(kube: CountingKube) -> Any:
    return SimpleNamespace(kube=kube, addresses={}, address_lookups={})


def test_keys_of_one_vault_made_at_once_read_the_vault_and_its_pool_once() -> None:
    kube = CountingKube()
    ctx = _context(kube)

    async def many() -> list[Any]:
        return await asyncio.gather(
            *(vault_reconcile.vault_address(ctx, "ns", "v") for _ in range(200))
        )

    addresses = asyncio.run(many())
    assert kube.reads == ["Vault/v", "HsmPool/p"]
    assert len(set(addresses)) == 1
    assert addresses[0].vault == "v" and addresses[0].host.startswith("v-vault.ns.svc")
    assert ctx.address_lookups == {}
    # Within ADDRESS_SECONDS the address is used again without a read.
    asyncio.run(many())
    assert len(kube.reads) == 2


def test_a_vault_not_ready_fails_every_waiter_and_is_asked_again_next_time() -> None:
    kube = CountingKube(vault_ready=False)
    ctx = _context(kube)

    async def many() -> list[Any]:
        return await asyncio.gather(
            *(vault_reconcile.vault_address(ctx, "ns", "v") for _ in range(20)),
            return_exceptions=True,
        )

    outcomes = asyncio.run(many())
    assert all(isinstance(o, NotReady) and o.reason == "VaultNotReady" for o in outcomes)
    assert kube.reads == ["Vault/v"]
    assert ctx.addresses == {} and ctx.address_lookups == {}
    kube.vault_ready = True
    assert asyncio.run(vault_reconcile.vault_address(ctx, "ns", "v")).vault == "v"
    assert kube.reads == ["Vault/v", "Vault/v", "HsmPool/p"]


def test_a_cancelled_waiter_does_not_cancel_the_others() -> None:
    kube = CountingKube()
    ctx = _context(kube)

    async def scenario() -> Any:
        first = asyncio.ensure_future(vault_reconcile.vault_address(ctx, "ns", "v"))
        second = asyncio.ensure_future(vault_reconcile.vault_address(ctx, "ns", "v"))
        await asyncio.sleep(0)
        first.cancel()
        return await second

    assert asyncio.run(scenario()).vault == "v"
    assert kube.reads == ["Vault/v", "HsmPool/p"]
