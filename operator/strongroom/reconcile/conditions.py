"""The `Ready` condition, with its transition time kept when its status does not change."""

from datetime import UTC, datetime

from ..models import Condition


def with_condition(
    conditions: list[Condition],
    type_: str,
    ok: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime | None = None,
) -> list[Condition]:
    status = "True" if ok else "False"
    previous = next((c for c in conditions if c.type == type_), None)
    changed = previous is None or previous.status != status
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    condition = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=moment
        if changed or previous is None
        else previous.last_transition_time,
        observed_generation=generation,
    )
    return [c for c in conditions if c.type != type_] + [condition]
