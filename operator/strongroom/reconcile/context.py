"""What every reconcile needs, made once at start-up and kept in kopf's memo."""

from dataclasses import dataclass

from ..builders.pool import OperatorSettings
from ..tls import Issued
from .kube import Kube
from .poolapi import PoolApi


@dataclass(frozen=True)
class Context:
    kube: Kube
    pools: PoolApi
    ca: Issued
    settings: OperatorSettings
