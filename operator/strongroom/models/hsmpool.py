"""HsmPool: one isolated HSM instance with its own pod, token store and pool secret."""

from datetime import datetime
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


class ConfigMapRef(Model):
    """A ConfigMap in the pool's namespace."""

    name: str = Field(
        description="Name of the ConfigMap, in the HsmPool's namespace.",
        min_length=1,
        max_length=253,
    )


class SecurityDomainSpec(Model):
    """Who can recover the pool: the holders of the certificates' private keys, a quorum of
    them together. Read once, when the operator activates the new pool."""

    quorum: int = Field(
        description="How many of the holders must bring their private keys together to "
        "recover the pool (2 to 10, at most the number of certificates). Fewer learn nothing.",
        json_schema_extra=rules(
            rule(
                "self >= 2 && self <= 10",
                "spec.securityDomain.quorum must be 2 to 10 (and at most the number of "
                "certificates)",
            )
        ),
    )
    certificates: ConfigMapRef = Field(
        description="The ConfigMap whose values are the holders' certificates, PEM, one per "
        "key: 3 to 10 RSA certificates of 2048 bits or more, each a different holder's. The "
        "operator reads it when it activates the pool; the private keys never come near the "
        "cluster.",
    )


class BackupSpec(Model):
    """Backups of the pool's token store and records, written by the pool to a volume."""

    model_config = Model.model_config | {
        "json_schema_extra": rules(
            rule(
                "!(has(self.schedule) && has(self.interval))",
                "spec.backup takes a cron schedule or an interval, not both",
            ),
        )
    }

    claim_name: str = Field(
        description="The PersistentVolumeClaim, in the pool's namespace, that backups are "
        "written to (mounted into the pool's pod; to recover into a new pool on another node "
        "it must be mountable there too, e.g. ReadWriteMany).",
        min_length=1,
        max_length=253,
    )
    schedule: str | None = Field(
        None,
        description="When to back up, as a cron expression in UTC (minute hour day-of-month "
        "month day-of-week, e.g. '0 3 * * *'; or @hourly, @daily, @weekly). Unset, with no "
        "interval either: only on demand (annotation strongroom.io/backup-now).",
        max_length=128,
        json_schema_extra=rules(
            rule(
                "self.startsWith('@') || self.matches('^ *[^ ]+( +[^ ]+){4} *$')",
                "spec.backup.schedule is a cron expression of five fields (minute hour "
                "day-of-month month day-of-week, e.g. '0 3 * * *') or @hourly, @daily, @weekly, "
                "@monthly",
            )
        ),
    )
    interval: str | None = Field(
        None,
        description="Back up this often, as an ISO 8601 duration of 5 minutes or more "
        "(e.g. PT6H, P1D); the first backup is taken once the pool is activated.",
        max_length=32,
        json_schema_extra=rules(
            rule(
                "self.matches('^P([0-9]+[YMWD])*(T([0-9]+[HMS])+)?$') && self != 'P' "
                "&& !self.endsWith('T')",
                "spec.backup.interval is an ISO 8601 duration such as PT6H or P1D",
            )
        ),
    )
    retain: int = Field(
        7,
        description="How many of this pool's backups to keep on the volume; older ones are "
        "deleted after each new backup (1 to 1000).",
        ge=1,
        le=1000,
    )


class RecoverFrom(Model):
    """The backup a new pool is recovered from."""

    claim_name: str = Field(
        description="The PersistentVolumeClaim, in the pool's namespace, that holds the backup.",
        min_length=1,
        max_length=253,
    )
    file: str = Field(
        description="The backup's file name on that volume (as the old pool's "
        "status.backup.last.file names it).",
        min_length=5,
        max_length=204,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}\.tar$",
    )


class HsmPoolSpec(Model):
    """The desired HSM pool."""

    model_config = Model.model_config | {
        "json_schema_extra": rules(
            rule(
                "(self.backend == 'pkcs11') == has(self.pkcs11)",
                "set spec.pkcs11 (the module path) exactly when spec.backend is pkcs11",
            ),
            rule(
                "has(self.securityDomain) == has(oldSelf.securityDomain)",
                "spec.securityDomain cannot be added to or removed from an existing pool: a "
                "pool's security domain is chosen when it is made (one made without it "
                "activated itself with a domain that is never exported); make a new HsmPool",
                "FieldValueForbidden",
            ),
            rule(
                "has(self.recoverFrom) == has(oldSelf.recoverFrom)",
                "spec.recoverFrom cannot be added to or removed from an existing pool: a "
                "backup is laid down only into a new pool; make a new HsmPool with it",
                "FieldValueForbidden",
            ),
            rule(
                "!(has(self.securityDomain) && has(self.recoverFrom))",
                "set spec.securityDomain for a new pool or spec.recoverFrom to recover one, not "
                "both: a recovered pool keeps the security domain of the pool its backup was "
                "taken of, and the same holders recover it again",
            ),
            rule(
                "!has(self.backup) || has(self.securityDomain) || has(self.recoverFrom)",
                "spec.backup needs spec.securityDomain (or spec.recoverFrom): a backup is "
                "restored only with the pool's security domain, and a pool without one can "
                "never be recovered, so its backups would be worthless",
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
    security_domain: SecurityDomainSpec | None = Field(
        None,
        description="Make the pool recoverable: the new pool starts not activated, and the "
        "operator activates it by downloading its security domain for these certificates, "
        "then keeps the blob (encrypted to them) in a Secret for the pool's administrators to "
        "take offline (status.securityDomainSecret). A copy of the pool's volume (a backup) "
        "plus a quorum of the holders' private keys recover it. WITHOUT IT THE POOL CANNOT BE "
        "RECOVERED: it activates itself with a security domain that is never exported, and "
        "if its pool secret is lost every key in it is lost. Only for a new pool; cannot be "
        "changed, added or removed later.",
        json_schema_extra=rules(
            immutable("spec.securityDomain", "it was used when the pool was activated")
        ),
    )
    recover_from: RecoverFrom | None = Field(
        None,
        description="Make this new pool from a backup of another (docs/security.md, "
        "'Recovering a pool'): the backup is checked and laid down before the pool's "
        "processes start; the pool then awaits the upload of the old pool's security domain "
        "(status.securityDomain Recovering) and serves the old vaults' keys once a quorum of "
        "its holders have uploaded it. Only for a new pool; cannot be changed later.",
        json_schema_extra=rules(
            immutable("spec.recoverFrom", "the backup was laid down when the pool was made")
        ),
    )
    security_officers: list[str] = Field(
        default_factory=list,
        description="Subjects besides the operator that may use the pool's security domain "
        "API (/securitydomain/*: the transfer key and the upload that recovers a pool, the "
        "download): TokenReview user names such as system:serviceaccount:<namespace>:<name>, "
        "presenting a token whose audience is the pool's endpoint (status.endpoint) or, from "
        "the pool's namespace, strongroom.io/vault. A change restarts the pool's pod.",
        max_length=20,
        json_schema_extra={"items": {"type": "string", "minLength": 1, "maxLength": 253}},
    )
    backup: BackupSpec | None = Field(
        None,
        description="Back the pool up to a volume, on a schedule and on demand (annotation "
        "strongroom.io/backup-now: any new value). Each backup is one file, useless without "
        "the pool's security domain.",
    )


SecurityDomainPhase = Literal["NotActivated", "Activated", "Recovering"]


class BackupRecord(Model):
    """One backup the pool wrote."""

    file: str = Field(description="The backup's file name on the backup volume.")
    time: datetime = Field(description="When the backup was taken.")
    sha256: str = Field(description="SHA-256 of the whole file.")
    size: int = Field(description="Size of the file in bytes.")
    security_domain: str | None = Field(
        None, description="The id of the security domain that restores this backup."
    )


class BackupStatus(Model):
    """What the operator last did about backups."""

    last: BackupRecord | None = Field(None, description="The last backup taken.")
    next_time: datetime | None = Field(None, description="When the next scheduled backup is due.")
    last_request: str | None = Field(
        None,
        description="The value of the strongroom.io/backup-now annotation the last on-demand "
        "backup answered.",
    )
    kept: list[str] = Field(
        default_factory=list,
        description="This pool's backup files on the volume after the last pruning, oldest first.",
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
    security_domain: SecurityDomainPhase | None = Field(
        None,
        description="NotActivated (a new pool the operator has yet to activate), Activated, or "
        "Recovering (a pool recovered from a backup, awaiting the upload of its security "
        "domain). Unset for a pool without spec.securityDomain: it can never be recovered.",
    )
    security_domain_id: str | None = Field(
        None, description="The id of the pool's security domain (in each backup's manifest)."
    )
    security_domain_secret: str | None = Field(
        None,
        description="The Secret holding the downloaded security domain (key "
        "security-domain.json): take it offline, keep it with the holders, then delete the "
        "Secret.",
    )
    backup: BackupStatus | None = Field(None, description="The pool's backups.")
