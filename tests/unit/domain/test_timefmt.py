"""Timestamps (SPEC sections 2 and 3): strict RFC 3339 in, UTC milliseconds out."""

from __future__ import annotations

import pytest

from botstream.domain.timefmt import format_timestamp, month_of, parse_month, parse_timestamp_ms
from tests.unit.domain.conftest import ms

# (text, the same instant written by hand in UTC)
VALID = [
    ("utc-z", "2026-11-24T20:15:00Z", "2026-11-24T20:15:00.000Z"),
    ("millis", "2026-11-24T20:15:00.123Z", "2026-11-24T20:15:00.123Z"),
    ("one-fraction-digit-is-tenths", "2026-11-24T20:15:00.1Z", "2026-11-24T20:15:00.100Z"),
    ("two-fraction-digits", "2026-11-24T20:15:00.12Z", "2026-11-24T20:15:00.120Z"),
    ("micros-truncated", "2026-11-24T20:15:00.123999Z", "2026-11-24T20:15:00.123Z"),
    ("nanos-truncated", "2026-11-24T20:15:00.999999999Z", "2026-11-24T20:15:00.999Z"),
    ("plus-offset", "2026-11-24T21:15:00+01:00", "2026-11-24T20:15:00.000Z"),
    ("minus-offset", "2026-11-24T15:15:00-05:00", "2026-11-24T20:15:00.000Z"),
    ("half-hour-offset", "2026-11-25T01:45:00+05:30", "2026-11-24T20:15:00.000Z"),
    ("zero-offset", "2026-11-24T20:15:00+00:00", "2026-11-24T20:15:00.000Z"),
    ("negative-zero-offset", "2026-11-24T20:15:00-00:00", "2026-11-24T20:15:00.000Z"),
    ("fraction-and-offset", "2026-11-24T21:15:00.5+01:00", "2026-11-24T20:15:00.500Z"),
    ("offset-crosses-to-previous-month", "2026-12-01T00:30:00+01:00", "2026-11-30T23:30:00Z"),
    ("offset-crosses-to-next-month", "2026-11-30T23:30:00-01:00", "2026-12-01T00:30:00Z"),
    ("offset-crosses-year", "2027-01-01T00:00:00+01:00", "2026-12-31T23:00:00Z"),
    ("leap-day", "2028-02-29T12:00:00Z", "2028-02-29T12:00:00Z"),
    ("leap-day-2000", "2000-02-29T00:00:00Z", "2000-02-29T00:00:00Z"),
    ("last-ms-of-month", "2026-11-30T23:59:59.999Z", "2026-11-30T23:59:59.999Z"),
    ("epoch", "1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"),
]


@pytest.mark.parametrize(("text", "utc"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_parse_valid(text, utc):
    assert parse_timestamp_ms(text) == ms(utc)


def test_parse_known_values():
    assert parse_timestamp_ms("1970-01-01T00:00:00Z") == 0
    assert parse_timestamp_ms("1970-01-01T00:00:01.5Z") == 1500
    assert parse_timestamp_ms("1970-01-02T00:00:00+01:00") == 23 * 3_600_000


INVALID = [
    ("no-offset", "2026-11-24T20:15:00"),
    ("no-offset-with-fraction", "2026-11-24T20:15:00.123"),
    ("space-separator", "2026-11-24 20:15:00Z"),
    ("lowercase-t", "2026-11-24t20:15:00Z"),
    ("date-only", "2026-11-24"),
    ("week-date", "2026-W48-2T20:15:00Z"),
    ("ordinal-date", "2026-328T20:15:00Z"),
    ("compact-form", "20261124T201500Z"),
    ("compact-offset", "2026-11-24T20:15:00+0100"),
    ("hour-only-offset", "2026-11-24T20:15:00+01"),
    ("no-seconds", "2026-11-24T20:15Z"),
    ("empty-fraction", "2026-11-24T20:15:00.Z"),
    ("comma-fraction", "2026-11-24T20:15:00,123Z"),
    ("hour-24", "2026-11-24T24:00:00Z"),
    ("minute-60", "2026-11-24T20:60:00Z"),
    ("month-13", "2026-13-01T00:00:00Z"),
    ("day-0", "2026-11-00T00:00:00Z"),
    ("november-31", "2026-11-31T00:00:00Z"),
    ("february-30", "2028-02-30T00:00:00Z"),
    ("february-29-not-leap", "2026-02-29T00:00:00Z"),
    ("february-29-1900-rule", "2100-02-29T00:00:00Z"),
    ("offset-hour-24", "2026-11-24T20:15:00+24:00"),
    ("two-digit-year", "26-11-24T20:15:00Z"),
    ("single-digit-month", "2026-1-24T20:15:00Z"),
    ("trailing-space", "2026-11-24T20:15:00Z "),
    ("leading-space", " 2026-11-24T20:15:00Z"),
    ("trailing-newline", "2026-11-24T20:15:00Z\n"),
    ("empty", ""),
    ("non-ascii-digits", "２０２６-11-24T20:15:00Z"),
]


@pytest.mark.parametrize("text", [c[1] for c in INVALID], ids=[c[0] for c in INVALID])
def test_parse_invalid(text):
    assert parse_timestamp_ms(text) is None


@pytest.mark.parametrize(
    "value",
    [None, 1732479300000, 1.5, b"2026-11-24T20:15:00Z", ["2026-11-24T20:15:00Z"]],
    ids=["null", "int", "float", "bytes", "list"],
)
def test_parse_rejects_non_strings(value):
    assert parse_timestamp_ms(value) is None


FORMAT = [
    ("epoch", 0, "1970-01-01T00:00:00.000Z"),
    ("one-ms", 1, "1970-01-01T00:00:00.001Z"),
    ("base", ms("2026-11-24T20:15:00.123Z"), "2026-11-24T20:15:00.123Z"),
    ("end-of-november", ms("2026-11-30T23:59:59.999Z"), "2026-11-30T23:59:59.999Z"),
    ("leap-day", ms("2028-02-29T23:59:59Z"), "2028-02-29T23:59:59.000Z"),
]


@pytest.mark.parametrize(("epoch_ms", "text"), [c[1:] for c in FORMAT], ids=[c[0] for c in FORMAT])
def test_format_timestamp(epoch_ms, text):
    assert format_timestamp(epoch_ms) == text


NORMALISE = [
    ("offset-and-micros", "2026-11-24T21:15:00.987654+01:00", "2026-11-24T20:15:00.987Z"),
    ("new-year-west", "2026-12-31T23:59:59.999-12:00", "2027-01-01T11:59:59.999Z"),
    ("new-year", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00.000Z"),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in NORMALISE], ids=[c[0] for c in NORMALISE]
)
def test_format_normalises_to_utc_millis(text, expected):
    assert format_timestamp(parse_timestamp_ms(text)) == expected


MONTHS = [
    ("last-ms-of-november", "2026-11-30T23:59:59.999Z", "2026-11"),
    ("first-ms-of-december", "2026-12-01T00:00:00Z", "2026-12"),
    ("offset-still-november-utc", "2026-12-01T00:30:00+01:00", "2026-11"),
    ("offset-reaches-december-utc", "2026-12-01T01:00:00+01:00", "2026-12"),
    ("west-offset-into-december", "2026-11-30T23:30:00-01:00", "2026-12"),
    ("new-year", "2027-01-01T00:00:00Z", "2027-01"),
    ("leap-february", "2028-02-29T23:59:59.999Z", "2028-02"),
    ("epoch", "1970-01-01T00:00:00Z", "1970-01"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in MONTHS], ids=[c[0] for c in MONTHS])
def test_month_of(text, expected):
    assert month_of(ms(text)) == expected


PARSE_MONTH = [
    ("november", "2026-11", ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")),
    ("december-wraps-year", "2026-12", ("2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z")),
    ("leap-february", "2028-02", ("2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z")),
    ("month-13", "2026-13", None),
    ("month-0", "2026-00", None),
    ("no-dash", "202611", None),
    ("day-included", "2026-11-01", None),
    ("letters", "20x6-11", None),
]


@pytest.mark.parametrize(
    ("text", "bounds"), [c[1:] for c in PARSE_MONTH], ids=[c[0] for c in PARSE_MONTH]
)
def test_parse_month(text, bounds):
    expected = None if bounds is None else (ms(bounds[0]), ms(bounds[1]))
    assert parse_month(text) == expected


# Parsing caches work per hour; a warmed-up hour must not relax any check.
# (case id, text parsed first, text parsed next, the next one in UTC or None)
SAME_MINUTE = [
    ("seconds-60", "2026-11-24T20:15:00.000Z", "2026-11-24T20:15:60.000Z", None),
    ("seconds-letter", "2026-11-24T20:15:00.000Z", "2026-11-24T20:15:0a.000Z", None),
    ("millis-letter", "2026-11-24T20:15:00.000Z", "2026-11-24T20:15:00.0a0Z", None),
    ("seconds-sign", "2026-11-24T20:15:00.000Z", "2026-11-24T20:15:+1.000Z", None),
    ("arabic-indic-digits", "2026-11-24T20:15:00.000Z", "2026-11-24T20:15:٠١.000Z", None),
    ("superscript-digits", "2026-11-24T20:15:00.000Z", "2026-11-24T20:15:²².000Z", None),
    ("no-offset", "2026-11-24T20:15:00.000Z", "2026-11-24T20:15:00.000", None),
    ("lowercase-z", "2026-11-24T20:15:00.000Z", "2026-11-24T20:15:00.000z", None),
    (
        "last-ms",
        "2026-11-24T20:15:00.000Z",
        "2026-11-24T20:15:59.999Z",
        "2026-11-24T20:15:59.999Z",
    ),
    (
        "short-fraction",
        "2026-11-24T20:15:00.000Z",
        "2026-11-24T20:15:07.5Z",
        "2026-11-24T20:15:07.5Z",
    ),
    (
        "offset-after-utc",
        "2026-11-24T20:15:00.000Z",
        "2026-11-24T20:15:07.250+01:00",
        "2026-11-24T19:15:07.250Z",
    ),
    (
        "utc-after-offset",
        "2026-11-24T22:16:00.000+01:00",
        "2026-11-24T22:16:01.000Z",
        "2026-11-24T22:16:01Z",
    ),
    ("other-minute-seconds-60", "2026-11-24T20:15:00.000Z", "2026-11-24T20:16:60.000Z", None),
    ("minute-60-same-hour", "2026-11-24T20:15:00.000Z", "2026-11-24T20:60:00.000Z", None),
    ("minute-one-digit", "2026-11-24T20:15:00.000Z", "2026-11-24T20:5:00.000Z", None),
    (
        "last-minute-of-hour",
        "2026-11-24T20:15:00.000Z",
        "2026-11-24T20:59:59.999Z",
        "2026-11-24T20:59:59.999Z",
    ),
    (
        "bad-day-not-cached",
        "2026-02-29T10:00:00.000Z",
        "2026-02-29T10:00:01.000Z",
        None,
    ),
]


@pytest.mark.parametrize(
    ("first", "text", "utc"), [c[1:] for c in SAME_MINUTE], ids=[c[0] for c in SAME_MINUTE]
)
def test_parse_after_same_minute_was_seen(first, text, utc):
    parse_timestamp_ms(first)
    for _ in range(2):
        assert parse_timestamp_ms(text) == (None if utc is None else ms(utc))
