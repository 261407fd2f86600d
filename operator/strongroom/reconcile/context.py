"""What every reconcile needs, made once at start-up and kept in kopf's memo."""

import asyncio
from dataclasses import dataclass, field

from ..builders.pool import OperatorSettings
from ..tls import Issued
from .kube import Kube
from .poolapi import PoolApi, VaultAddress


@dataclass(frozen=True)
class Context:
    kube: Kube
    pools: PoolApi
    ca: Issued  # signs the pools' server certificates
    client_ca: Issued  # signs the operator's client certificate; pools trust only it
    settings: OperatorSettings
    # Where each Ready Vault was found, by (namespace, name), and when (monotonic seconds):
    # many Keys of one Vault made at once need not each read the Vault and its pool again.
    addresses: dict[tuple[str, str], tuple[float, VaultAddress]] = field(default_factory=dict)
    # The lookups of those under way, which callers of the same Vault share.
    address_lookups: "dict[tuple[str, str], asyncio.Future[VaultAddress]]" = field(
        default_factory=dict
    )
