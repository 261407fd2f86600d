"""ISO 8601 durations, as Key Vault rotation policies write them (P90D, P1Y2M, PT12H).

A year counts 365 days and a month 30, as Azure Key Vault counts them; weeks may be
combined with other units (ISO 8601-2). Fractions, signs and a `T` with no time after
it are refused, as are durations of zero: every duration here is a lifetime.
"""

import re

DAY = 86400
MAX_LENGTH = 32
# What a custom resource may write (the API server checks it): days or more in a Key's
# rotation policy, whole minutes or more in a VaultSecret's rotation. parse_duration
# reads every string they match that names a unit and is not zero.
DAYS_OR_MORE_PATTERN = r"^P(\d+Y)?(\d+M)?(\d+W)?(\d+D)?$"
MINUTES_OR_MORE_PATTERN = r"^P(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(\d+H)?(\d+M)?)?$"
_DURATION = re.compile(
    r"P(?:([0-9]+)Y)?(?:([0-9]+)M)?(?:([0-9]+)W)?(?:([0-9]+)D)?"
    r"(?:T(?=[0-9])(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?"
)
_UNIT_SECONDS = (365 * DAY, 30 * DAY, 7 * DAY, DAY, 3600, 60, 1)


class InvalidDuration(ValueError):
    """Not an ISO 8601 duration this vault reads; the message says what was given."""


def parse_duration(text: object, at_least: int = 1) -> int:
    """Seconds in an ISO 8601 duration such as P30D, PT12H or P1Y2M3DT4H5M6S; one shorter
    than `at_least` seconds is refused."""
    if not isinstance(text, str):
        raise InvalidDuration(f"{text!r} is not an ISO 8601 duration such as P30D or PT12H")
    match = _DURATION.fullmatch(text) if len(text) <= MAX_LENGTH else None
    if match is None or not any(match.groups()):
        raise InvalidDuration(
            f"{text[:MAX_LENGTH]!r} is not an ISO 8601 duration such as P30D or PT12H"
        )
    seconds = sum(
        int(part) * unit for part, unit in zip(match.groups(), _UNIT_SECONDS, strict=True) if part
    )
    if seconds < at_least:
        shortest = {1: "a second", 60: "a minute"}.get(at_least, f"{at_least} seconds")
        raise InvalidDuration(f"{text!r} is shorter than {shortest}")
    return seconds
