"""HsmPool: one isolated HSM instance with its own pod, token store and pool secret."""

from typing import Literal

from pydantic import Field

from .base import HasConditions, Model, Quantity, ResourceRequirements, immutable, rule, rules

Backend = Literal["softhsm2", "pkcs11"]
Phase = Literal["Pending", "Ready", "Failed", "Terminating"]
DeletionPolicy = Literal["Retain", "Delete"]


class Pkcs11Backend(Model):
    """A PKCS#11 module other than SoftHSM2, present in the pool's image."""

    module: str = Field(
        description="Absolute path of the PKCS#11 module (.so) inside the image.",
        min_length=2,
        max_length=1024,
        pattern="^/",
    )


class Storage(Model):
    """The volume that holds the pool's token store (every vault's keys and secrets)."""

    size: Quantity = Field(
        "1Gi",
        description="Size of the token store's PersistentVolumeClaim (e.g. 1Gi). It can grow "
        "later when its StorageClass allows volume expansion, never shrink: otherwise the "
        "change is refused and the pool is Ready=False with reason ChildRefused.",
    )
    storage_class_name: str | None = Field(
        None,
        description="StorageClass of the token store; the cluster's default when unset. "
        "Cannot be changed once the pool exists.",
        max_length=253,
        json_schema_extra=rules(
            immutable("storage.storageClassName", "the token store cannot move to another class")
        ),
    )


class PoolResources(Model):
    """CPU and memory of the pool's two containers."""

    vault_server: ResourceRequirements | None = Field(
        None, description="Resources of the vault-server container (the HTTPS data plane)."
    )
    hsm: ResourceRequirements | None = Field(
        None, description="Resources of the hsm sidecar (the only process that loads the module)."
    )


class HsmPoolSpec(Model):
    """The desired HSM pool."""

    model_config = Model.model_config | {
        "json_schema_extra": rules(
            rule(
                "(self.backend == 'pkcs11') == has(self.pkcs11)",
                "set spec.pkcs11 (the module path) exactly when spec.backend is pkcs11",
            ),
        )
    }

    backend: Backend = Field(
        "softhsm2",
        description="The HSM: softhsm2 (in the image), or pkcs11 for another module in the image. "
        "Cannot be changed once the pool exists.",
        json_schema_extra=rules(
            immutable("spec.backend", "the token store belongs to its HSM; make a new HsmPool")
        ),
    )
    pkcs11: Pkcs11Backend | None = Field(
        None, description="With backend pkcs11: which module to load."
    )
    image: str | None = Field(
        None,
        description="Container image of the pool's pod; the operator's own image when unset. "
        "Only images the operator allows run: its own, and those its installer listed (Helm "
        "value pools.allowedImages). Any other leaves the pool Ready=False with reason "
        "ImageNotAllowed, and nothing is made or changed with it.",
        max_length=512,
    )
    storage: Storage = Field(
        default=Storage(),  # frozen, so one shared default is safe
        description="The token store's volume.",
        json_schema_extra={"default": {}},
    )
    resources: PoolResources | None = Field(
        None, description="CPU and memory of the pool's containers."
    )
    deletion_policy: DeletionPolicy = Field(
        "Retain",
        description="What happens to the token store and the pool secret when the HsmPool is "
        "deleted: Retain keeps them (a new HsmPool of the same name finds its keys again), "
        "Delete removes them and with them every key of every vault in the pool. It may be "
        "changed at any time; the operator moves the owner references of both to match "
        "before the next reconcile ends, so set Retain and wait for Ready before deleting.",
    )


class HsmPoolStatus(HasConditions):
    """What the operator observed of the pool."""

    phase: Phase | None = Field(None, description="Pending, Ready, Failed or Terminating.")
    endpoint: str | None = Field(
        None, description="The pool's HTTPS endpoint inside the cluster (its management API)."
    )
    hsm_platform: str | None = Field(
        None, description="The HSM the pool's sidecar reports (module maker and version)."
    )
    ca_bundle: str | None = Field(
        None,
        description="PEM certificate of the CA that signed the pool's TLS certificate; "
        "clients of the pool's vaults trust it.",
    )
