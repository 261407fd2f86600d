"""When a pool's next backup is due: a cron expression (UTC) or an ISO 8601 interval.

Cron: five fields, minute hour day-of-month month day-of-week, each `*`, a number, a range
`a-b`, a step `*/n` or `a-b/n`, or a list of those; day-of-week 0-7 (0 and 7 are Sunday).
When both day fields are restricted, a day matching either is due (as cron does). Also
@hourly, @daily (@midnight), @weekly, @monthly, @yearly (@annually).
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..api.durations import InvalidDuration, parse_duration

MIN_INTERVAL_SECONDS = 300
MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12))
_SEARCH_DAYS = 366 * 5  # 29 February on a Monday comes round within this


class InvalidSchedule(ValueError):
    """The message says which field is wrong and why."""


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                start, end = low, high
            elif "-" in base:
                first, _, last = base.partition("-")
                start, end = int(first), int(last)
            else:
                start = end = int(base)
                if step_text:
                    end = high
        except ValueError:
            raise InvalidSchedule(f"its {name} field {text!r} is not cron syntax") from None
        if step < 1 or not low <= start <= end <= high:
            raise InvalidSchedule(f"its {name} field {text!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Monday, as datetime.weekday()
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> "Cron":
        text = MACROS.get(expression.strip().lower(), expression)
        fields = text.split()
        if len(fields) != 5:
            raise InvalidSchedule(
                f"{expression[:64]!r} is not a cron expression of five fields (minute hour "
                "day-of-month month day-of-week) or a macro such as @daily"
            )
        parsed = [_field(f, *spec) for f, spec in zip(fields[:4], _FIELDS, strict=True)]
        cron_weekdays = _field(fields[4], "day of week", 0, 7)
        return cls(
            parsed[0],
            parsed[1],
            parsed[2],
            parsed[3],
            frozenset((d - 1) % 7 for d in cron_weekdays),
            fields[2] == "*",
            fields[4] == "*",
        )

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = day.weekday() in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def next_after(self, moment: datetime) -> datetime:
        """The first minute strictly after `moment` that the expression names."""
        start = moment.astimezone(UTC).replace(second=0, microsecond=0)
        day = start.replace(hour=0, minute=0)
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate > moment:
                            return candidate
            day += timedelta(days=1)
        raise InvalidSchedule("it names no minute in the next five years")


def interval_seconds(text: str) -> int:
    try:
        return parse_duration(text, at_least=MIN_INTERVAL_SECONDS)
    except InvalidDuration as exc:
        raise InvalidSchedule(f"{exc} (at least {MIN_INTERVAL_SECONDS // 60} minutes)") from None


def next_backup(schedule: str | None, interval: str | None, after: datetime) -> datetime | None:
    """When the backup after one at `after` is due; None with neither (on demand only)."""
    if schedule is not None:
        return Cron.parse(schedule).next_after(after)
    if interval is not None:
        return after + timedelta(seconds=interval_seconds(interval))
    return None
