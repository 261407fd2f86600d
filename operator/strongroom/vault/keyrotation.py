"""Keys of one vault, their rotation policies: stored per key, checked when set, and run
by the vault's maintenance task (a due Rotate action makes a new version)."""

import logging
from typing import Any

from .encoding import now
from .errors import BadParameter, VaultError
from .keylife import KeyLifecycle
from .objects import (
    KeyEntry,
    parse_duration,
)
from .store import stored

log = logging.getLogger(__name__)


class KeyRotation(KeyLifecycle):
    """Rotation policies of a vault's keys."""

    # --- rotation policy ---------------------------------------------------------

    async def rotation_policy(self, base: str, name: str) -> dict[str, Any]:
        entry = await self.live(name)
        policy = entry.rotation_policy or {
            "lifetimeActions": [
                {"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}
            ],
            "attributes": {},
        }
        return {"id": f"{base}/keys/{entry.name}/rotationpolicy"} | policy

    async def set_rotation_policy(
        self, base: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        raw_actions = body.get("lifetimeActions")
        actions = _lifetime_actions([] if raw_actions is None else raw_actions)
        raw_attributes = body.get("attributes")
        if raw_attributes is None:
            raw_attributes = {}
        if not isinstance(raw_attributes, dict):
            raise BadParameter("'attributes' of a rotation policy must be an object")
        attributes: dict[str, Any] = {}
        expiry = raw_attributes.get("expiryTime")
        if expiry is not None:
            if not isinstance(expiry, str):
                raise BadParameter(
                    "'attributes.expiryTime' of a rotation policy must be an ISO 8601 duration "
                    "string such as P90D"
                )
            parse_duration(expiry)
            attributes["expiryTime"] = expiry
        async with self.lock(name):
            entry = await self.live(name)
            self.refuse_managed(entry, "given a rotation policy")
            created = (entry.rotation_policy or {}).get("attributes", {}).get("created", now())
            attributes.update({"created": created, "updated": now()})
            entry.rotation_policy = {"lifetimeActions": actions, "attributes": attributes}
            await self._save(entry)
        return await self.rotation_policy(base, name)

    async def rotate_due(self) -> None:
        """Rotate every key whose policy's Rotate action is due."""
        moment = now()
        after = ""
        while True:
            names = await stored(self.storage.scheduled(self.vault, self.kind, after, 100))
            if not names:
                return
            after = names[-1]
            for name in names:
                entry = await self.find(name)
                if entry is not None:
                    await self._rotate_if_due(entry, moment)

    async def _rotate_if_due(self, entry: KeyEntry, moment: int) -> None:
        if entry.deletion is None and entry.rotation_policy and entry.versions:
            current = entry.current
            for action in entry.rotation_policy.get("lifetimeActions", []):
                if (action.get("action") or {}).get("type", "").lower() != "rotate":
                    continue
                trigger = action.get("trigger") or {}
                after = trigger.get("timeAfterCreate")
                before = trigger.get("timeBeforeExpiry")
                due = (after and moment >= current.attributes.created + parse_duration(after)) or (
                    before
                    and current.attributes.exp is not None
                    and moment >= current.attributes.exp - parse_duration(before)
                )
                if due:
                    try:
                        await self.rotate(entry.name)
                    except VaultError as exc:
                        # One key that cannot rotate must not hold back the others.
                        log.warning("rotating key %s failed: %s", entry.name, exc.code)
                    break


def _lifetime_actions(raw: object) -> list[dict[str, Any]]:
    """The lifetime actions of a rotation policy, checked and reduced to their known fields."""
    if not isinstance(raw, list) or len(raw) > 2:
        raise BadParameter("'lifetimeActions' is a list of at most 2 actions")
    actions = []
    for action in raw:
        if not isinstance(action, dict) or not isinstance(action.get("action"), dict):
            raise BadParameter("each lifetime action is an object with an 'action' object")
        kind = action["action"].get("type")
        trigger = action.get("trigger")
        if not isinstance(kind, str) or kind.lower() not in ("rotate", "notify"):
            raise BadParameter("each lifetime action's type is Rotate or Notify")
        if not isinstance(trigger, dict):
            raise BadParameter("each lifetime action needs a 'trigger' object")
        durations = {
            k: v
            for k, v in trigger.items()
            if k in ("timeAfterCreate", "timeBeforeExpiry") and v is not None
        }
        if len(durations) != 1:
            raise BadParameter(
                "each trigger has exactly one of timeAfterCreate and timeBeforeExpiry"
            )
        for value in durations.values():
            parse_duration(value)
        actions.append({"trigger": durations, "action": {"type": kind.capitalize()}})
    return actions
