"""Adopting a key or secret made through a vault's API: the Vault's consent.

An object made through a vault's data plane has no owner, and a Key or VaultSecret of
its name is refused (KeyNameTaken, SecretNameTaken). With `spec.adopt: true` the
resource takes the object over, but only when the Vault consents: its annotation
`strongroom.io/allow-adopt` lists the names of the vault's objects that may be
adopted (comma-separated, or `*`). Who may edit the Vault decides; who may only make
Keys and VaultSecrets in its namespace cannot take over (and then disable, change or
delete) an object someone made through the vault's API. Objects another resource owns
are never adopted, whatever the annotation says.
"""

import shlex
from collections.abc import Callable
from typing import Any, Literal

from ..models import API_VERSION
from .context import Context
from .errors import AdoptionNotAllowed

ALLOW_ADOPT = "strongroom.io/allow-adopt"

Kind = Literal["key", "secret"]
# Posts a Normal Event about the resource being reconciled: (reason, message).
Notify = Callable[[str, str], None]


def _annotation(vault: dict[str, Any] | None) -> str:
    annotations = ((vault or {}).get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(ALLOW_ADOPT, ""))


def adoption_allowed(vault: dict[str, Any] | None, name: str) -> bool:
    """Pure: whether the Vault's annotation lets its object `name` be adopted. Names in a
    vault match case-insensitively, as the vault matches them."""
    listed = {entry.strip().lower() for entry in _annotation(vault).split(",")}
    return "*" in listed or name.lower() in listed


def not_allowed(
    vault: dict[str, Any] | None, namespace: str, vault_name: str, kind: Kind, name: str
) -> AdoptionNotAllowed:
    """The refusal, saying exactly what the Vault's owner can set to allow it."""
    current = _annotation(vault).strip().strip(",")
    value = f"{current},{name}" if current else name
    command = (
        f"kubectl -n {namespace} annotate vault {vault_name} --overwrite "
        f"{shlex.quote(f'{ALLOW_ADOPT}={value}')}"
    )
    return AdoptionNotAllowed(
        f"Vault {vault_name!r} does not allow adopting its {kind} {name!r}: the Vault's "
        f"annotation {ALLOW_ADOPT} must list it (a comma-separated list of names of keys "
        f"and secrets in the vault, or *). Its owner can allow it with: {command}"
    )


async def check_allowed(
    ctx: Context, namespace: str, vault_name: str, kind: Kind, name: str
) -> None:
    """Raise AdoptionNotAllowed unless the Vault, read now, consents to adopting `name`."""
    vault = await ctx.kube.get(API_VERSION, "Vault", namespace, vault_name)
    if not adoption_allowed(vault, name):
        raise not_allowed(vault, namespace, vault_name, kind, name)
