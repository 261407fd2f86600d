"""Typed spec and status of each custom resource; the one source of the CRD schemas."""

from .base import API_VERSION, GROUP, VERSION, Condition, LocalRef
from .hsmpool import HsmPoolSpec, HsmPoolStatus
from .key import KeySpec, KeyStatus
from .vault import AccessEntry, VaultSpec, VaultStatus
from .vaultcertificate import VaultCertificateSpec, VaultCertificateStatus
from .vaultsecret import VaultSecretSpec, VaultSecretStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "AccessEntry",
    "Condition",
    "HsmPoolSpec",
    "HsmPoolStatus",
    "KeySpec",
    "KeyStatus",
    "LocalRef",
    "VaultCertificateSpec",
    "VaultCertificateStatus",
    "VaultSecretSpec",
    "VaultSecretStatus",
    "VaultSpec",
    "VaultStatus",
]
