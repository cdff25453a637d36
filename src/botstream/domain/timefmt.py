"""RFC 3339 timestamps as integer milliseconds since the Unix epoch (UTC).

Parsing is strict (SPEC section 3): ``YYYY-MM-DDThh:mm:ss[.fraction](Z|±hh:mm)``,
uppercase ``T`` and ``Z``, years 1970 to 2999. Finer digits than milliseconds
are truncated. Done by hand, not with :mod:`datetime`, because this runs once
per event and ``datetime.fromisoformat`` accepts forms the SPEC rejects.
"""

from __future__ import annotations

import re

_RFC3339 = re.compile(
    r"(?:19[7-9]\d|2\d{3})-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?"
    r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)",
    re.ASCII,
)
_DAYS_BEFORE_MONTH = (0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MS_PER_DAY = 86_400_000
_MS_PER_HOUR = 3_600_000


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
    # The canonical form ``YYYY-MM-DDThh:mm:ss.mmmZ`` of an hour already seen costs
    # three table lookups: each slice must be a key, which checks every character.
    try:
        return (
            HOUR_STARTS[text[:13]]
            + MINUTE_SECOND_OFFSETS[text[13:19]]
            + MILLISECOND_OFFSETS[text[19:]]
        )
    except KeyError:
        pass
    if _RFC3339.fullmatch(text) is None:
        return None
    hour_start = HOUR_STARTS.get(text[:13])
    if hour_start is None:
        hour_start = _hour_start(text)
        if hour_start is None:
            return None
        if len(HOUR_STARTS) >= _HOUR_CACHE_SIZE:
            HOUR_STARTS.clear()
        HOUR_STARTS[text[:13]] = hour_start
    # The pattern matched ``:mm:ss`` with both in 00-59, so this is a table hit.
    ms = hour_start + MINUTE_SECOND_OFFSETS[text[13:19]]
    rest = text[19:]
    if rest == "Z":
        return ms
    if rest[0] == ".":
        offset_at = len(rest) - 1 if rest[-1] == "Z" else len(rest) - 6
        ms += int((rest[1:offset_at] + "00")[:3])
        rest = rest[offset_at:]
        if rest == "Z":
            return ms
    offset = (int(rest[1:3]) * 60 + int(rest[4:6])) * 60_000
    return ms - offset if rest[0] == "+" else ms + offset


#: ``YYYY-MM-DDThh`` -> epoch ms, for prefixes that passed the full pattern.
#: Calendar arithmetic and the day-of-month check then run once per hour seen.
#: Public, with the two tables below, for the event decoder's inlined fast path.
HOUR_STARTS: dict[str, int] = {}
_HOUR_CACHE_SIZE = 10_000
#: ``:mm:ss`` -> milliseconds into the hour (every valid minute and second).
MINUTE_SECOND_OFFSETS = {
    f":{minute:02d}:{second:02d}": (minute * 60 + second) * 1000
    for minute in range(60)
    for second in range(60)
}
#: ``.mmmZ`` -> milliseconds: the canonical fraction and UTC designator.
MILLISECOND_OFFSETS = {f".{n:03d}Z": n for n in range(1000)}


def _hour_start(text: str) -> int | None:
    """Epoch ms of ``YYYY-MM-DDThh`` (a prefix the pattern matched), None for a bad day."""
    year, month, day = int(text[:4]), int(text[5:7]), int(text[8:10])
    if day > 28 and day > _DAYS_IN_MONTH[month] + (month == 2 and _is_leap(year)):
        return None
    return _days_from_epoch(year, month, day) * _MS_PER_DAY + int(text[11:13]) * _MS_PER_HOUR


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


def _day_strings(days: int) -> tuple[str, str]:
    """``("YYYY-MM-DDT", "YYYY-MM")`` of a day number, computed once per day seen."""
    strings = _DAY_STRINGS.get(days)
    if strings is None:
        year, month, day = _civil_from_days(days)
        strings = (f"{year:04d}-{month:02d}-{day:02d}T", f"{year:04d}-{month:02d}")
        if len(_DAY_STRINGS) >= _DAY_CACHE_SIZE:
            _DAY_STRINGS.clear()
        _DAY_STRINGS[days] = strings
    return strings


_DAY_STRINGS: dict[int, tuple[str, str]] = {}
_DAY_CACHE_SIZE = 10_000


def format_timestamp(ms: int) -> str:
    """``YYYY-MM-DDThh:mm:ss.mmmZ`` in UTC for epoch milliseconds."""
    hour, rest = divmod(ms, _MS_PER_HOUR)
    prefix = _HOUR_TEXTS.get(hour)
    if prefix is None:
        prefix = _hour_text(hour)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{prefix}{_MINUTE_TEXTS[minutes]}{_SECOND_TEXTS[seconds]}{_MILLISECOND_TEXTS[millis]}"


def _hour_text(hour: int) -> str:
    """``YYYY-MM-DDThh:`` of an hour number since the epoch, cached."""
    days, hour_of_day = divmod(hour, 24)
    text = f"{_day_strings(days)[0]}{hour_of_day:02d}:"
    if len(_HOUR_TEXTS) >= _HOUR_CACHE_SIZE:
        _HOUR_TEXTS.clear()
    _HOUR_TEXTS[hour] = text
    return text


# Formatting is string concatenation of cached parts: several times cheaper than
# computing and formatting every field, and outcome records need three per record.
_HOUR_TEXTS: dict[int, str] = {}
_MINUTE_TEXTS = tuple(f"{n:02d}:" for n in range(60))
_SECOND_TEXTS = tuple(f"{n:02d}." for n in range(60))
_MILLISECOND_TEXTS = tuple(f"{n:03d}Z" for n in range(1000))


def month_of(ms: int) -> str:
    """The UTC calendar month ``YYYY-MM`` that contains epoch milliseconds ``ms``."""
    return _day_strings(ms // _MS_PER_DAY)[1]


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
