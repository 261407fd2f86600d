"""Moving a vault from the first storage design into the record storage, once, at start.

The first design kept every record (object heads, versions, the vault's config) as a
private data object in the vault's token, and every key as a token object. Migration
reads those records, seals each into the storage in one durable write together with
the marker `layout` = 2 and a note that the token still needs cleaning, then deletes
the token's records and key objects (each key's wrapped blob is in its record: it is
loaded from there on first use) and finally drops the note. A crash at any point
leaves either the first design untouched (start again), or the storage complete and
the cleaning to finish (finish it): never both half done.
"""

import json
import logging
from typing import TYPE_CHECKING

from ..hsm.api import Hsm
from ..storage import Storage, Write
from .store import Sealer, guarded, record_aad, stored

if TYPE_CHECKING:
    from .keys import KeyStore
    from .secrets import SecretStore

log = logging.getLogger(__name__)

LAYOUT = "layout"  # meta record: "2" once the vault lives in the record storage
TOKEN_CLEANUP = "token-cleanup"  # noqa: S105 - meta record: the token's old records are still there
VAULT_CONFIG = "vault-config"  # meta record (and the first design's token record)
CURRENT_LAYOUT = b"2"


def meta_aad(vault: str, name: str) -> bytes:
    return record_aad(vault, "meta", name)


async def read_token_records(hsm: Hsm, vault: str) -> dict[str, bytes]:
    """Every record of the first design in a vault's token, page by page."""
    records: dict[str, bytes] = {}
    after = ""
    while True:
        page = await guarded(hsm.list_token_records(vault, after))
        records |= page["records"]
        if page["next"] is None:
            return records
        after = page["next"]


async def migrate(
    hsm: Hsm, storage: Storage, vault: str, keys: "KeyStore", secrets: "SecretStore"
) -> None:
    """Bring a vault into the record storage if it is not there yet; idempotent."""
    layout = await stored(storage.get_meta(vault, LAYOUT))
    if layout is None:
        records = await read_token_records(hsm, vault)
        key_entries = keys.import_legacy(records)
        secret_entries = secrets.import_legacy(records)
        write = Write(vault)
        await keys.migration_write(key_entries, write)
        await secrets.migration_write(secret_entries, write)
        sealer = Sealer(hsm, vault)
        meta = [(LAYOUT, CURRENT_LAYOUT)]
        if records:
            meta.append((TOKEN_CLEANUP, b"1"))
        if VAULT_CONFIG in records:
            (sealed,) = await sealer.seal([meta_aad(vault, VAULT_CONFIG)], [records[VAULT_CONFIG]])
            meta.append((VAULT_CONFIG, sealed))
        write.put_meta = meta
        await stored(storage.write(write))
        if records:
            log.info(
                "vault %s: moved %d keys and %d secrets from its token into the record storage",
                vault,
                len(key_entries),
                len(secret_entries),
            )
    if layout is None or await stored(storage.get_meta(vault, TOKEN_CLEANUP)) is not None:
        await _clean_token(hsm, storage, vault)


async def _clean_token(hsm: Hsm, storage: Storage, vault: str) -> None:
    """Delete what the first design left in the token: its records and key objects."""
    records = await read_token_records(hsm, vault)
    for name in records:
        await guarded(hsm.delete_token_record(vault, name))
    stale = await guarded(hsm.token_key_ids(vault))
    for key_id in stale:
        await guarded(hsm.destroy_key(vault, key_id))
    await stored(storage.write(Write(vault, delete_meta=[TOKEN_CLEANUP])))
    if records or stale:
        log.info(
            "vault %s: removed %d records and %d key objects of the first design from its token",
            vault,
            len(records),
            len(stale),
        )


async def read_vault_config(hsm: Hsm, storage: Storage, vault: str) -> dict[str, object] | None:
    sealed = await stored(storage.get_meta(vault, VAULT_CONFIG))
    if sealed is None:
        return None
    (raw,) = await Sealer(hsm, vault).open([meta_aad(vault, VAULT_CONFIG)], [sealed])
    config = json.loads(raw)
    if not isinstance(config, dict):
        raise ValueError("a vault config is a JSON object")
    return config


async def write_vault_config(
    hsm: Hsm, storage: Storage, vault: str, config: dict[str, object]
) -> None:
    raw = json.dumps(config, sort_keys=True).encode()
    (sealed,) = await Sealer(hsm, vault).seal([meta_aad(vault, VAULT_CONFIG)], [raw])
    await stored(storage.write(Write(vault, put_meta=[(VAULT_CONFIG, sealed)])))


async def delete_vault_config(storage: Storage, vault: str) -> None:
    await stored(storage.write(Write(vault, delete_meta=[VAULT_CONFIG])))
