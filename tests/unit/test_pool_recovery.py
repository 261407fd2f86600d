"""The operator's decisions about a pool's security domain and backups, run through the pool
reconcile with the recording Kubernetes double and a pool double (no cluster, no pool pod):

- only a token store the operator makes new starts --await-activation, and the claim says so
  itself, so the decision survives an operator killed at any point; a store that existed
  before never does (it would wait for an upload forever);
- activation downloads the domain once for the ConfigMap's certificates, keeps the blob in a
  Secret before the pool forgets it, and picks up where a killed operator left off;
- a recovered pool lays its backup down with an init container, says how to upload, and is
  Ready once restored;
- backups are taken on schedule and on demand, pruned to this pool's newest, and a failed
  one leaves the pool Ready and says why.
"""

import base64
import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from strongroom.builders.pool import AWAIT_ANNOTATION, Pool
from strongroom.models import HsmPoolStatus
from strongroom.models.hsmpool import BackupStatus
from strongroom.reconcile.backup import BACKUP_NOW, due, file_prefix, prune, settle_backups
from strongroom.reconcile.context import Context
from strongroom.reconcile.errors import PoolApiError
from strongroom.reconcile.pool import reconcile_pool
from strongroom.reconcile.schedule import Cron, InvalidSchedule, next_backup

from .test_reconcile_isolation import (
    PoolDouble,
    RecordingKube,
    context,
    failure,
    pool_of,
    ready,
    run,
)
from .test_security_domain_formats import make_certificate

DOMAIN = {"quorum": 2, "certificates": {"name": "holders"}}
BACKUP = {"claimName": "backups", "interval": "PT6H", "retain": 2}
BLOB = '{"EncData": "encrypted to the holders only"}'


class DomainPool(PoolDouble):
    """A pool double that also serves the security domain and backups as the pool does."""

    def __init__(self, state: str = "awaiting", held: bool = False) -> None:
        super().__init__()
        self.state = state
        self.held = held
        self.downloads: list[tuple[list[dict[str, Any]], int]] = []
        self.released = 0
        self.backups: list[dict[str, Any]] = []
        self.files: list[str] = []
        self.deleted: list[str] = []
        self.fail_backup: PoolApiError | None = None
        self.download_error: PoolApiError | None = None

    async def health(self, endpoint: str) -> dict[str, Any]:
        return {
            "status": "ok",
            "hsmPlatform": "SoftHSM",
            "securityDomain": self.state,
            "securityDomainHeld": self.held,
            "securityDomainId": "d0" if self.state in ("activated", "restored") else "",
        }

    async def download_security_domain(
        self, endpoint: str, certificates: list[dict[str, Any]], required: int
    ) -> None:
        self.downloads.append((certificates, required))
        assert self.state == "awaiting"
        self.state, self.held = "activated", True
        if self.download_error is not None:
            raise self.download_error  # done, but the answer says otherwise

    async def held_security_domain(self, endpoint: str) -> dict[str, Any]:
        if not self.held:
            raise PoolApiError(404, "SecurityDomainNotHeld", "not held")
        return {"value": BLOB}

    async def release_security_domain(self, endpoint: str) -> None:
        self.released += 1
        self.held = False

    async def create_backup(self, endpoint: str, name: str, pool: dict[str, str]) -> dict[str, Any]:
        if self.fail_backup is not None:
            raise self.fail_backup
        self.backups.append({"name": name, "pool": pool})
        self.files.append(name)
        return {
            "name": name,
            "size": 4096,
            "sha256": "ab" * 32,
            "created": "x",
            "securityDomain": "d0",
        }

    async def list_backups(self, endpoint: str) -> dict[str, Any]:
        return {"backups": [{"name": n, "size": 1, "modified": "x"} for n in sorted(self.files)]}

    async def delete_backup(self, endpoint: str, name: str) -> None:
        self.deleted.append(name)
        self.files.remove(name)


class Events(list[tuple[str, str, str]]):
    def __call__(self, kind: str, reason: str, message: str) -> None:
        self.append((kind, reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self]


def holders_config_map(count: int = 3, namespace: str = "team-a") -> dict[str, Any]:
    data = {}
    for i in range(count):
        certificate, _ = make_certificate(f"holder {i}")
        data[f"holder-{i}.pem"] = certificate.public_bytes(serialization.Encoding.PEM).decode()
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "holders", "namespace": namespace},
        "data": data,
    }


def reconcile(
    ctx: Context,
    pool: Pool,
    status: HsmPoolStatus | None = None,
    events: Events | None = None,
    annotations: dict[str, str] | None = None,
) -> HsmPoolStatus:
    result: HsmPoolStatus = run(
        lambda: reconcile_pool(
            ctx,
            pool,
            status or HsmPoolStatus(),
            1,
            annotations=annotations,
            events=events if events is not None else Events(),
        )
    )
    return result


def deleted_keeping_store(kube: RecordingKube) -> None:
    """The HsmPool was deleted with deletionPolicy Retain: the garbage collector took its
    owned children; the token store's claim and the pool secret stay."""
    for key in list(kube.objects):
        if key[0] != "PersistentVolumeClaim" and key[2] not in ("main-pool-secret", "holders"):
            del kube.objects[key]


def stateful_set(kube: RecordingKube, pool: Pool) -> dict[str, Any]:
    return kube.objects[("StatefulSet", pool.owner.namespace, pool.base)]


def hsm_args(kube: RecordingKube, pool: Pool) -> list[str]:
    containers = stateful_set(kube, pool)["spec"]["template"]["spec"]["containers"]
    args: list[str] = next(c for c in containers if c["name"] == "hsm")["args"]
    return args


def condition(status: HsmPoolStatus, type_: str) -> tuple[str, str, str]:
    found = next(c for c in status.conditions if c.type == type_)
    return found.status, found.reason, found.message


# --- how the pod starts ---------------------------------------------------------------------


def test_a_new_pool_with_a_security_domain_starts_awaiting_and_its_claim_says_so() -> None:
    kube, pools = RecordingKube(), DomainPool()
    kube.put(holders_config_map())
    pool = pool_of("main", securityDomain=DOMAIN)
    reconcile(context(kube, pools), pool)
    claim = kube.objects[("PersistentVolumeClaim", "team-a", "main-pool-tokens")]
    assert claim["metadata"]["annotations"] == {AWAIT_ANNOTATION: "true"}
    assert "--await-activation" in hsm_args(kube, pool)


def test_a_pool_without_a_security_domain_starts_as_before_and_says_it_cannot_be_recovered() -> (
    None
):
    kube, pools = RecordingKube(), DomainPool(state="unexported")
    pool = pool_of("main")
    status = reconcile(context(kube, pools), pool)
    claim = kube.objects[("PersistentVolumeClaim", "team-a", "main-pool-tokens")]
    assert "annotations" not in claim["metadata"]
    assert "--await-activation" not in hsm_args(kube, pool)
    assert ready(status) == ("True", "PoolReady")
    assert status.security_domain is None
    ok, reason, message = condition(status, "SecurityDomain")
    assert (ok, reason) == ("False", "NotExported") and "CANNOT BE RECOVERED" in message


def test_a_store_that_existed_before_never_starts_awaiting() -> None:
    """A retained claim of an earlier pool of the same name (or one made before security
    domains): its tokens have no domain state, and awaiting would wait for an upload forever."""
    kube, pools = RecordingKube(), DomainPool(state="unexported")
    kube.put(holders_config_map())
    earlier = pool_of("main")
    reconcile(context(kube, pools), earlier)  # makes the claim, unannotated (Retain)
    deleted_keeping_store(kube)
    later = pool_of("main", securityDomain=DOMAIN)
    events = Events()
    status = reconcile(context(kube, pools), later, events=events)
    assert "--await-activation" not in hsm_args(kube, later)
    claim = kube.objects[("PersistentVolumeClaim", "team-a", "main-pool-tokens")]
    assert AWAIT_ANNOTATION not in (claim["metadata"].get("annotations") or {})
    assert pools.downloads == []
    ok, reason, message = condition(status, "SecurityDomain")
    assert (ok, reason) == ("False", "StoreNotNew") and "CANNOT BE RECOVERED" in message
    assert ("Warning", "StoreNotNew") in [(k, r) for k, r, _ in events]
    assert ready(status) == ("True", "PoolReady")  # it works, it is just not recoverable


def test_the_decision_survives_an_operator_killed_after_making_the_claim() -> None:
    """The claim was made (annotated) and the operator died before the StatefulSet: the next
    reconcile finds the claim and still starts the pod awaiting."""
    kube, pools = RecordingKube(), DomainPool()
    kube.put(holders_config_map())
    pool = pool_of("main", securityDomain=DOMAIN)
    first = RecordingKube()
    first.put(holders_config_map())
    reconcile(context(first, pools), pool)
    kube.put(copy.deepcopy(first.objects[("PersistentVolumeClaim", "team-a", "main-pool-tokens")]))
    pools.state, pools.held = "awaiting", False
    reconcile(context(kube, pools), pool)
    assert "--await-activation" in hsm_args(kube, pool)


def test_recover_from_into_a_store_that_exists_is_refused_and_makes_nothing() -> None:
    kube, pools = RecordingKube(), DomainPool(state="unexported")
    reconcile(context(kube, pools), pool_of("main"))
    before = copy.deepcopy(kube.objects)
    recovering = pool_of("main", recoverFrom={"claimName": "backups", "file": "main-1.tar"})
    kube.writes.clear()
    error = failure(lambda: reconcile_pool(context(kube, pools), recovering, HsmPoolStatus(), 1))
    assert error.reason == "StoreNotNew" and error.retry_after is None
    assert "laid down only into a new pool" in error.message
    assert kube.writes == [] and kube.objects == before


# --- activation -------------------------------------------------------------------------------


def test_the_operator_activates_a_new_pool_and_keeps_the_blob_in_a_secret() -> None:
    kube, pools = RecordingKube(), DomainPool()
    kube.put(holders_config_map())
    pool = pool_of("main", securityDomain=DOMAIN)
    events = Events()
    status = reconcile(context(kube, pools), pool, events=events)
    [(certificates, required)] = pools.downloads
    assert required == 2 and len(certificates) == 3
    assert all(c["kty"] == "RSA" and len(c["x5c"]) == 1 for c in certificates)
    secret = kube.objects[("Secret", "team-a", "main-pool-security-domain")]
    assert base64.b64decode(secret["data"]["security-domain.json"]).decode() == BLOB
    assert secret["immutable"] is True
    assert pools.released == 1 and not pools.held
    assert status.security_domain == "Activated"
    assert status.security_domain_secret == "main-pool-security-domain"
    assert status.security_domain_id == "d0"
    assert ready(status) == ("True", "PoolReady")
    assert condition(status, "SecurityDomain")[:2] == ("True", "Activated")
    assert events.reasons() == ["SecurityDomainActivated", "SecurityDomainStored"]
    stored = events[1][2]
    assert "kubectl get secret main-pool-security-domain -o jsonpath=" in stored
    assert "delete the Secret" in stored and BLOB not in stored
    # Again: nothing more (no download, no Secret write); the Secret may be gone by then.
    del kube.objects[("Secret", "team-a", "main-pool-security-domain")]
    again = reconcile(context(kube, pools), pool, status)
    assert len(pools.downloads) == 1 and pools.released == 1
    assert ("Secret", "team-a", "main-pool-security-domain") not in kube.objects
    assert again.security_domain == "Activated"
    assert again.security_domain_secret == "main-pool-security-domain"


def test_an_operator_killed_after_the_download_fetches_the_held_blob() -> None:
    """The pool was activated but the Secret never made: the pool still holds the blob."""
    kube, pools = RecordingKube(), DomainPool(state="activated", held=True)
    pool = pool_of("main", securityDomain=DOMAIN)
    status = reconcile(context(kube, pools), pool)
    assert pools.downloads == []
    secret = kube.objects[("Secret", "team-a", "main-pool-security-domain")]
    assert base64.b64decode(secret["data"]["security-domain.json"]).decode() == BLOB
    assert pools.released == 1
    assert status.security_domain == "Activated"


def test_a_download_whose_answer_was_lost_is_not_repeated() -> None:
    kube, pools = RecordingKube(), DomainPool()
    kube.put(holders_config_map())
    pools.download_error = PoolApiError(409, "SecurityDomainConflict", "downloaded already")
    pool = pool_of("main", securityDomain=DOMAIN)
    # The pool activates, but the operator sees a refusal (a retry of a download whose
    # answer was lost): it does not download again and keeps the held blob.
    status = reconcile(context(kube, pools), pool)
    assert len(pools.downloads) == 1
    assert ("Secret", "team-a", "main-pool-security-domain") in kube.objects
    assert pools.released == 1 and status.security_domain == "Activated"


def test_the_pool_keeps_its_blob_when_the_secret_cannot_be_made() -> None:
    kube, pools = RecordingKube(), DomainPool(state="activated", held=True)
    planted = kube.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "main-pool-security-domain", "namespace": "team-a"},
            "data": {"x": base64.b64encode(b"tenant").decode()},
        }
    )
    pool = pool_of("main", securityDomain=DOMAIN)
    error = failure(lambda: reconcile_pool(context(kube, pools), pool, HsmPoolStatus(), 1))
    assert error.reason == "ObjectConflict"
    assert pools.released == 0 and pools.held  # never in neither place
    assert kube.objects[("Secret", "team-a", "main-pool-security-domain")] == planted


@pytest.mark.parametrize(
    ("config_map", "reason", "words"),
    [
        (None, "SecurityDomainCertificatesMissing", "does not exist"),
        (holders_config_map(2), "SecurityDomainCertificatesInvalid", "3"),
        (
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "holders", "namespace": "team-a"},
                "data": {"a.pem": "not a certificate"},
            },
            "SecurityDomainCertificatesInvalid",
            "not PEM certificates",
        ),
    ],
)
def test_bad_certificates_activate_nothing_and_say_why(
    config_map: dict[str, Any] | None, reason: str, words: str
) -> None:
    kube, pools = RecordingKube(), DomainPool()
    if config_map is not None:
        kube.put(config_map)
    pool = pool_of("main", securityDomain=DOMAIN)
    error = failure(lambda: reconcile_pool(context(kube, pools), pool, HsmPoolStatus(), 1))
    assert error.reason == reason and words in error.message, error.message
    assert error.retry_after is not None  # the ConfigMap may be made or fixed
    assert pools.downloads == []
    status = error.status  # type: ignore[attr-defined]
    assert status.security_domain == "NotActivated" and status.phase == "Pending"
    assert condition(status, "Ready")[:2] == ("False", reason)


def test_a_quorum_above_the_certificates_is_refused_before_the_download() -> None:
    kube, pools = RecordingKube(), DomainPool()
    kube.put(holders_config_map(3))
    pool = pool_of("main", securityDomain={"quorum": 4, "certificates": {"name": "holders"}})
    error = failure(lambda: reconcile_pool(context(kube, pools), pool, HsmPoolStatus(), 1))
    assert error.reason == "SecurityDomainCertificatesInvalid"
    assert pools.downloads == []


# --- recovery ---------------------------------------------------------------------------------


RECOVER = {"claimName": "old-backups", "file": "main-11111111-20260101T030000Z.tar"}


def test_a_recovered_pool_lays_its_backup_down_and_says_how_to_upload() -> None:
    kube, pools = RecordingKube(), DomainPool()
    pool = pool_of("fresh", recoverFrom=RECOVER)
    events = Events()
    error = failure(
        lambda: reconcile_pool(context(kube, pools), pool, HsmPoolStatus(), 1, events=events)
    )
    assert error.reason == "AwaitingSecurityDomainUpload"
    status = error.status  # type: ignore[attr-defined]
    assert status.security_domain == "Recovering" and status.phase == "Pending"
    message = condition(status, "Ready")[2]
    assert f"GET {pool.endpoint}/securitydomain/upload" in message
    assert "strongroom security-domain restore-blob" in message
    assert events.reasons() == ["AwaitingSecurityDomainUpload"]
    assert pools.downloads == [] and "--await-activation" in hsm_args(kube, pool)
    spec = stateful_set(kube, pool)["spec"]["template"]["spec"]
    [init] = spec["initContainers"]
    assert init["args"] == [
        "restore-backup",
        "--backup",
        f"/var/lib/strongroom-restore/{RECOVER['file']}",
        "--state-dir",
        "/var/lib/strongroom",
        "--records-dir",
        "/var/lib/strongroom/records",
    ]
    source = next(v for v in spec["volumes"] if v["name"] == "restore-source")
    assert source["persistentVolumeClaim"] == {"claimName": "old-backups", "readOnly": True}
    assert {
        "name": "restore-source",
        "mountPath": "/var/lib/strongroom-restore",
        "readOnly": True,
    } in (init["volumeMounts"])

    # Restored by the holders: Ready, the init container and the backup's volume dropped.
    pools.state = "restored"
    events.clear()
    done = reconcile(context(kube, pools), pool, status, events)
    assert done.security_domain == "Activated" and ready(done) == ("True", "PoolReady")
    assert events.reasons() == ["SecurityDomainRestored"]
    later = reconcile(context(kube, pools), pool, done)
    spec = stateful_set(kube, pool)["spec"]["template"]["spec"]
    assert "initContainers" not in spec
    assert all(v["name"] != "restore-source" for v in spec["volumes"])
    assert "--await-activation" in hsm_args(kube, pool)  # the claim still says so
    assert later.security_domain == "Activated"


def test_security_officers_go_into_the_pools_config_and_restart_its_pod() -> None:
    kube, pools = RecordingKube(), DomainPool()
    officer = "system:serviceaccount:team-a:recoverer"
    pool = pool_of("fresh", recoverFrom=RECOVER, securityOfficers=[officer])
    failure(lambda: reconcile_pool(context(kube, pools), pool, HsmPoolStatus(), 1))
    config_map = kube.objects[("ConfigMap", "team-a", "fresh-pool-config")]
    config = json.loads(config_map["data"]["config.json"])
    assert config["securityOfficers"] == [officer]
    assert config["poolAudience"] == "https://fresh-pool.team-a.svc"
    first = stateful_set(kube, pool)["spec"]["template"]["metadata"]["annotations"]
    other = pool_of("fresh", recoverFrom=RECOVER, securityOfficers=[officer, "u:2"])
    other = Pool(pool.owner, other.spec)
    failure(lambda: reconcile_pool(context(kube, pools), other, HsmPoolStatus(), 1))
    second = stateful_set(kube, pool)["spec"]["template"]["metadata"]["annotations"]
    assert first != second
    plain = pool_of("plain")
    reconcile(context(kube, DomainPool(state="unexported")), plain)
    plain_config = json.loads(
        kube.objects[("ConfigMap", "team-a", "plain-pool-config")]["data"]["config.json"]
    )
    assert "securityOfficers" not in plain_config and "poolAudience" not in plain_config


def test_recovering_from_the_backup_volume_itself_mounts_it_once() -> None:
    kube, pools = RecordingKube(), DomainPool()
    pool = pool_of(
        "fresh",
        recoverFrom={"claimName": "backups", "file": "x.tar"},
        backup={"claimName": "backups"},
    )
    failure(lambda: reconcile_pool(context(kube, pools), pool, HsmPoolStatus(), 1))
    spec = stateful_set(kube, pool)["spec"]["template"]["spec"]
    claims = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert [v["persistentVolumeClaim"]["claimName"] for v in claims] == [
        "main-pool-tokens".replace("main", "fresh"),
        "backups",
    ]
    [init] = spec["initContainers"]
    assert {"name": "backups", "mountPath": "/var/lib/strongroom-restore", "readOnly": True} in (
        init["volumeMounts"]
    )


# --- backups ----------------------------------------------------------------------------------


def activated(pools: DomainPool) -> tuple[RecordingKube, Pool]:
    kube = RecordingKube()
    kube.put(holders_config_map())
    return kube, pool_of("main", securityDomain=DOMAIN, backup=BACKUP)


def test_backups_are_taken_on_their_interval_and_pruned_to_this_pools_newest() -> None:
    pools = DomainPool(state="activated")
    kube, pool = activated(pools)
    other = "other-pool-99999999-20250101T000000Z.tar"
    pools.files = [other]
    ctx = context(kube, pools)
    now = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
    status = reconcile(ctx, pool)  # activated, and its first backup taken at once
    assert len(pools.backups) == 1
    pools.backups.clear()
    pools.files = [other]
    status = status.model_copy(update={"backup": None})
    events = Events()
    taken: list[str] = []
    for step in range(4):
        moment = now + timedelta(hours=6 * step)
        status = run(
            lambda moment=moment, status=status: settle_backups(
                ctx, pool, status, {}, 1, events, moment
            )
        )
        taken.append(pools.backups[-1]["name"])
        # Before the next is due: nothing.
        before = len(pools.backups)
        status = run(
            lambda moment=moment, status=status: settle_backups(
                ctx, pool, status, {}, 1, events, moment + timedelta(hours=5)
            )
        )
        assert len(pools.backups) == before
    assert taken[0] == f"main-{pool.owner.uid[:8]}-20260101T030000Z.tar"
    assert pools.backups[0]["pool"] == {
        "namespace": "team-a",
        "name": "main",
        "uid": pool.owner.uid,
    }
    assert sorted(pools.files) == sorted([other, taken[2], taken[3]])  # retain 2
    assert pools.deleted == [taken[0], taken[1]]
    assert status.backup is not None and status.backup.last is not None
    assert status.backup.last.file == taken[3] and status.backup.kept == taken[2:]
    assert status.backup.next_time == now + timedelta(hours=24)
    assert condition(status, "Backup")[:2] == ("True", "BackupTaken")
    assert events.reasons().count("BackupTaken") == 4


def test_the_first_reconcile_after_activation_takes_the_first_interval_backup() -> None:
    pools = DomainPool()
    kube, pool = activated(pools)
    status = reconcile(context(kube, pools), pool)
    assert status.security_domain == "Activated"
    assert len(pools.backups) == 1 and ready(status) == ("True", "PoolReady")


def test_an_on_demand_backup_answers_each_new_annotation_value_once() -> None:
    pools = DomainPool(state="activated")
    kube, pool = pool_of_on_demand()
    ctx = context(kube, pools)
    status = reconcile(ctx, pool)
    assert pools.backups == []  # no schedule, no request
    status = reconcile(ctx, pool, status, annotations={BACKUP_NOW: "1"})
    assert len(pools.backups) == 1
    assert status.backup is not None and status.backup.last_request == "1"
    status = reconcile(ctx, pool, status, annotations={BACKUP_NOW: "1"})
    assert len(pools.backups) == 1
    reconcile(ctx, pool, status, annotations={BACKUP_NOW: "2"})
    assert len(pools.backups) == 2


def pool_of_on_demand() -> tuple[RecordingKube, Pool]:
    kube = RecordingKube()
    kube.put(holders_config_map())
    return kube, pool_of("main", securityDomain=DOMAIN, backup={"claimName": "backups"})


def test_a_failed_backup_leaves_the_pool_ready_and_says_why() -> None:
    pools = DomainPool(state="activated")
    kube, pool = pool_of_on_demand()
    pools.fail_backup = PoolApiError(
        503, "BackupVolumeMissing", "The backup volume is not mounted."
    )
    events = Events()
    status = reconcile(context(kube, pools), pool, annotations={BACKUP_NOW: "a"}, events=events)
    assert ready(status) == ("True", "PoolReady")
    ok, reason, message = condition(status, "Backup")
    assert (ok, reason) == ("False", "BackupFailed")
    assert "not mounted" in message and "new value" in message
    assert ("Warning", "BackupFailed") in [(k, r) for k, r, _ in events]
    assert status.backup is not None and status.backup.last_request == "a"  # answered


def test_a_pool_that_cannot_be_recovered_takes_no_backup() -> None:
    pools = DomainPool(state="unexported")
    kube = RecordingKube()
    reconcile(context(kube, pools), pool_of("main"))  # an older store, kept
    deleted_keeping_store(kube)
    pool = pool_of("main", securityDomain=DOMAIN, backup=BACKUP)
    status = reconcile(context(kube, pools), pool, annotations={BACKUP_NOW: "1"})
    assert pools.backups == []
    assert condition(status, "Backup")[:2] == ("False", "NotRecoverable")


def test_due_and_prune_decisions() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    spec = pool_of("p", securityDomain=DOMAIN, backup={"claimName": "b", "schedule": "30 2 * * *"})
    assert spec.spec.backup is not None
    why, following = due(spec.spec.backup, BackupStatus(), None, now)
    assert why is None and following == datetime(2026, 3, 2, 2, 30, tzinfo=UTC)
    why, _ = due(spec.spec.backup, BackupStatus(next_time=following), None, following)
    assert why == "scheduled"
    why, _ = due(spec.spec.backup, BackupStatus(last_request="x"), "x", now)
    assert why is None
    keep, delete = prune(["p-1-a.tar", "q-1-a.tar", "p-1-c.tar", "p-1-b.tar", "p-1-x"], "p-1-", 2)
    assert keep == ["p-1-b.tar", "p-1-c.tar"] and delete == ["p-1-a.tar"]
    pool = pool_of("p")
    assert file_prefix(pool) == f"p-{pool.owner.uid[:8]}-"


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 3 * * *", "2026-01-01T03:00", "2026-01-02T03:00"),
        ("0 3 * * *", "2026-01-01T02:59", "2026-01-01T03:00"),
        ("*/15 * * * *", "2026-01-01T00:07", "2026-01-01T00:15"),
        ("0 0 * * 0", "2026-01-01T00:00", "2026-01-04T00:00"),  # a Sunday
        ("0 0 * * 7", "2026-01-01T00:00", "2026-01-04T00:00"),
        ("0 0 29 2 *", "2026-01-01T00:00", "2028-02-29T00:00"),
        ("0 12 1 * 1", "2026-01-01T13:00", "2026-01-05T12:00"),  # day 1 or a Monday
        ("5,10-12/2 1 * * *", "2026-01-01T01:05", "2026-01-01T01:10"),
        ("@daily", "2026-01-01T00:00", "2026-01-02T00:00"),
        ("@hourly", "2026-01-01T00:30", "2026-01-01T01:00"),
    ],
)
def test_cron_expressions(expression: str, after: str, expected: str) -> None:
    moment = datetime.fromisoformat(after).replace(tzinfo=UTC)
    assert Cron.parse(expression).next_after(moment) == datetime.fromisoformat(expected).replace(
        tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("schedule", "interval", "words"),
    [
        ("0 3 * *", None, "five fields"),
        ("61 * * * *", None, "minute field"),
        ("0 3 * * mon", None, "day of week"),
        ("0 3 */0 * *", None, "outside"),
        (None, "PT1M", "at least 5 minutes"),
        (None, "six hours", "ISO 8601"),
    ],
)
def test_bad_schedules_say_what_is_wrong(
    schedule: str | None, interval: str | None, words: str
) -> None:
    with pytest.raises(InvalidSchedule, match=words):
        next_backup(schedule, interval, datetime(2026, 1, 1, tzinfo=UTC))


def test_an_invalid_schedule_takes_no_backup_and_says_so() -> None:
    pools = DomainPool(state="activated")
    kube = RecordingKube()
    kube.put(holders_config_map())
    pool = pool_of(
        "main", securityDomain=DOMAIN, backup={"claimName": "backups", "schedule": "99 * * * *"}
    )
    status = reconcile(context(kube, pools), pool)
    assert pools.backups == [] and ready(status) == ("True", "PoolReady")
    assert condition(status, "Backup")[:2] == ("False", "InvalidSchedule")
