"""A pool's backups, on the operator's side: when one is due (spec.backup's schedule or
interval, or a new value of the annotation strongroom.io/backup-now), asking the pool to
write it (POST /_strongroom/v1/backups: the pool has the volumes; poolbackup.py), pruning the
pool's own older backups beyond spec.backup.retain, and the last one in the status.

A failed backup does not make the pool unready: its condition Backup and a Warning Event say
what failed. A scheduled backup that failed is tried again in 5 minutes; an on-demand one is
answered (a new annotation value asks again). Repeating is safe: a backup is a new file, and
a backup whose answer was lost is pruned like any other.
"""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import aiohttp
from pydantic import ValidationError

from ..api import management as wire
from ..builders.pool import Pool
from ..models import HsmPoolStatus
from ..models.hsmpool import BackupRecord, BackupSpec, BackupStatus
from .conditions import with_condition
from .context import Context
from .domain import Events, _ignore
from .errors import PoolApiError
from .schedule import InvalidSchedule, next_backup

BACKUP_NOW = "strongroom.io/backup-now"
CONDITION = "Backup"
RETRY_FAILED = timedelta(minutes=5)
SUFFIX = ".tar"


def file_prefix(pool: Pool) -> str:
    """Every backup file of this pool starts so (and no other pool's: the uid's start)."""
    return f"{pool.owner.name}-{pool.owner.uid[:8]}-"


def file_name(pool: Pool, now: datetime) -> str:
    return f"{file_prefix(pool)}{now.astimezone(UTC):%Y%m%dT%H%M%SZ}{SUFFIX}"


def due(
    spec: BackupSpec, status: BackupStatus, request: str | None, now: datetime
) -> tuple[str | None, datetime | None]:
    """Why a backup is due now (None: it is not), and the next scheduled time as known
    before it. The first scheduled backup of an interval is due at once; of a cron
    expression, at its next minute. Raises InvalidSchedule."""
    next_time = status.next_time
    if next_time is None:
        if spec.interval is not None:
            next_time = now
        else:
            next_time = next_backup(spec.schedule, None, now)
    else:
        next_backup(spec.schedule, spec.interval, now)  # still valid
    if request is not None and request != status.last_request:
        return "on demand", next_time
    if next_time is not None and now >= next_time:
        return "scheduled", next_time
    return None, next_time


def prune(names: list[str], prefix: str, retain: int) -> tuple[list[str], list[str]]:
    """This pool's backup files to keep (the newest `retain`) and to delete, oldest first.
    Names sort by time; another pool's files are neither."""
    own = sorted(n for n in names if n.startswith(prefix) and n.endswith(SUFFIX))
    cut = max(len(own) - retain, 0)
    return own[cut:], own[:cut]


async def settle_backups(
    ctx: Context,
    pool: Pool,
    status: HsmPoolStatus,
    annotations: Mapping[str, str],
    generation: int,
    events: Events = _ignore,
    now: datetime | None = None,
) -> HsmPoolStatus:
    spec = pool.spec.backup
    if spec is None:
        return status
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    current = status.backup or BackupStatus()
    if status.security_domain != "Activated":
        message = (
            "No backup is taken: this pool's security domain is never exported, so a backup "
            "of it could never be restored (see the condition SecurityDomain)."
        )
        return _condition(status, False, "NotRecoverable", message, generation)
    request = annotations.get(BACKUP_NOW)
    try:
        why, next_time = due(spec, current, request, now)
    except InvalidSchedule as exc:
        message = f"spec.backup's schedule cannot be used: {exc}. No scheduled backup is taken."
        if not any(c.type == CONDITION and c.message == message for c in status.conditions):
            events("Warning", "InvalidSchedule", message)
        return _condition(status, False, "InvalidSchedule", message, generation)
    if why is None:
        return status.model_copy(
            update={"backup": current.model_copy(update={"next_time": next_time})}
        )
    answered = request if why == "on demand" else current.last_request
    name = file_name(pool, now)
    try:
        made = wire.BackupMade.model_validate(
            await ctx.pools.create_backup(
                pool.endpoint,
                name,
                {"namespace": pool.owner.namespace, "name": pool.owner.name, "uid": pool.owner.uid},
            )
        )
        listed = wire.BackupList.model_validate(await ctx.pools.list_backups(pool.endpoint))
        keep, delete = prune([b.name for b in listed.backups], file_prefix(pool), spec.retain)
        for old in delete:
            await ctx.pools.delete_backup(pool.endpoint, old)
    except (PoolApiError, aiohttp.ClientError, OSError, TimeoutError, ValidationError) as exc:
        detail = exc.message if isinstance(exc, PoolApiError) else type(exc).__name__
        retry = (
            "Set a new value of the annotation strongroom.io/backup-now to try again."
            if why == "on demand"
            else f"It is tried again at {(now + RETRY_FAILED).isoformat()}."
        )
        message = f"The {why} backup {name} failed: {detail}. {retry}"
        events("Warning", "BackupFailed", message)
        failed = current.model_copy(
            update={
                "last_request": answered,
                "next_time": now + RETRY_FAILED if why == "scheduled" else next_time,
            }
        )
        return _condition(
            status.model_copy(update={"backup": failed}), False, "BackupFailed", message, generation
        )
    record = BackupRecord(
        file=made.name,
        time=now,
        sha256=made.sha256,
        size=made.size,
        security_domain=made.security_domain or None,
    )
    following = next_backup(spec.schedule, spec.interval, now)
    message = (
        f"The {why} backup {made.name} ({made.size} bytes, SHA-256 {made.sha256}) was written "
        f"to PersistentVolumeClaim {spec.claim_name}; {len(keep)} of this pool's backups are "
        "kept. It restores into a new HsmPool (spec.recoverFrom) with the pool's security "
        "domain."
    )
    events("Normal", "BackupTaken", message)
    taken = BackupStatus(last=record, next_time=following, last_request=answered, kept=keep)
    return _condition(
        status.model_copy(update={"backup": taken}), True, "BackupTaken", message, generation
    )


def _condition(
    status: HsmPoolStatus, ok: bool, reason: str, message: str, generation: int
) -> HsmPoolStatus:
    return status.model_copy(
        update={
            "conditions": with_condition(
                status.conditions, CONDITION, ok, reason, message, generation
            )
        }
    )
