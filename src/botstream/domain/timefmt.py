"""RFC 3339 timestamps as integer milliseconds since the Unix epoch (UTC).

Parsing is strict (SPEC section 3): ``YYYY-MM-DDThh:mm:ss[.fraction](Z|±hh:mm)``,
uppercase ``T`` and ``Z``, years 1970 to 2999. Finer digits than milliseconds
are truncated. Done by hand, not with :mod:`datetime`, because this runs once
per event and ``datetime.fromisoformat`` accepts forms the SPEC rejects.
"""

from __future__ import annotations

import re

_RFC3339 = re.compile(
    r"(19[7-9]\d|2\d{3})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
    r"T([01]\d|2[0-3]):([0-5]\d):([0-5]\d)(?:\.(\d+))?"
    r"(?:Z|([+-])([01]\d|2[0-3]):([0-5]\d))",
    re.ASCII,
)
_DAYS_BEFORE_MONTH = (0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MS_PER_DAY = 86_400_000


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_from_epoch(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to the given date (proleptic Gregorian)."""
    y = year - 1
    days = y * 365 + y // 4 - y // 100 + y // 400 - 719_162  # 719162 = days to 1970-01-01
    days += _DAYS_BEFORE_MONTH[month] + (month > 2 and _is_leap(year))
    return days + day - 1


def parse_timestamp_ms(text: object) -> int | None:
    """Epoch milliseconds of a strict RFC 3339 timestamp, or ``None`` if it is not one."""
    if type(text) is not str:
        return None
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year_s, month_s, day_s, hh, mm, ss, frac, sign, off_h, off_m = match.groups()
    year, month, day = int(year_s), int(month_s), int(day_s)
    if day > 28 and day > _DAYS_IN_MONTH[month] + (month == 2 and _is_leap(year)):
        return None
    ms = (
        _days_from_epoch(year, month, day) * _MS_PER_DAY
        + (int(hh) * 3600 + int(mm) * 60 + int(ss)) * 1000
    )
    if frac:
        ms += int((frac + "00")[:3])
    if sign:
        offset = (int(off_h) * 60 + int(off_m)) * 60_000
        ms += -offset if sign == "+" else offset
    return ms


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day count from 1970-01-01 (H. Hinnant's algorithm)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def format_timestamp(ms: int) -> str:
    """``YYYY-MM-DDThh:mm:ss.mmmZ`` in UTC for epoch milliseconds."""
    days, rest = divmod(ms, _MS_PER_DAY)
    year, month, day = _civil_from_days(days)
    seconds, millis = divmod(rest, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{year:04d}-{month:02d}-{day:02d}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


def month_of(ms: int) -> str:
    """The UTC calendar month ``YYYY-MM`` that contains epoch milliseconds ``ms``."""
    year, month, _ = _civil_from_days(ms // _MS_PER_DAY)
    return f"{year:04d}-{month:02d}"


def parse_month(text: str) -> tuple[int, int] | None:
    """``(start_ms, end_ms)`` of a ``YYYY-MM`` month (end exclusive), or ``None``."""
    if len(text) != 7 or text[4] != "-" or not (text[:4] + text[5:]).isdigit():
        return None
    year, month = int(text[:4]), int(text[5:])
    if not 1 <= month <= 12 or year < 1970:
        return None
    start = _days_from_epoch(year, month, 1) * _MS_PER_DAY
    end_year, end_month = (year + 1, 1) if month == 12 else (year, month + 1)
    return start, _days_from_epoch(end_year, end_month, 1) * _MS_PER_DAY
