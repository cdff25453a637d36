"""Plan records and the plan in force for a charge (SPEC section 5)."""

from __future__ import annotations

import json

import pytest

from botstream.domain.config import DomainConfig
from botstream.domain.plans import PlanRecord, decode_plan, plan_at
from botstream.errors import InvalidRecord
from tests.unit.domain.conftest import history, ms, plan_obj, plan_rec

CONFIG = DomainConfig()
DROP = object()


def raw_plan(**changes: object) -> bytes:
    obj = plan_obj()
    for name, value in changes.items():
        if value is DROP:
            obj.pop(name, None)
        else:
            obj[name] = value
    return json.dumps(obj).encode()


# -- decoding ----------------------------------------------------------------------------------

VALID = [
    (
        "spec-example",
        b'{"account_id": "acc-17", "plan": "pro", "chatbot_pack": true, '
        b'"effective_at": "2026-11-01T00:00:00Z"}',
        PlanRecord("acc-17", "pro", True, ms("2026-11-01T00:00:00Z")),
    ),
    (
        "standard-no-pack",
        raw_plan(),
        PlanRecord("acc-1", "standard", False, ms("2026-11-01T00:00:00Z")),
    ),
    (
        "offset-normalised",
        raw_plan(effective_at="2026-11-01T01:00:00.5+01:00"),
        PlanRecord("acc-1", "standard", False, ms("2026-11-01T00:00:00.500Z")),
    ),
    (
        "account-id-1-char",
        raw_plan(account_id="a"),
        PlanRecord("a", "standard", False, ms("2026-11-01T00:00:00Z")),
    ),
    (
        "account-id-128-chars",
        raw_plan(account_id="a" * 128),
        PlanRecord("a" * 128, "standard", False, ms("2026-11-01T00:00:00Z")),
    ),
]


@pytest.mark.parametrize(("raw", "expected"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_decode_valid_plan(raw, expected):
    assert decode_plan(raw, CONFIG) == expected


FIELDS = ("account_id", "plan", "chatbot_pack", "effective_at")
# (case id, raw, acceptable codes)
INVALID = [
    *[(f"missing-{name}", raw_plan(**{name: DROP}), {"missing_field"}) for name in FIELDS],
    ("account-id-empty", raw_plan(account_id=""), {"invalid_field"}),
    ("account-id-129-chars", raw_plan(account_id="a" * 129), {"invalid_field"}),
    ("account-id-number", raw_plan(account_id=17), {"invalid_field"}),
    ("account-id-null", raw_plan(account_id=None), {"invalid_field"}),
    ("unknown-plan", raw_plan(plan="enterprise"), {"unknown_plan"}),
    ("plan-wrong-case", raw_plan(plan="PRO"), {"unknown_plan"}),
    ("plan-empty", raw_plan(plan=""), {"unknown_plan"}),
    ("plan-number", raw_plan(plan=1), {"unknown_plan", "invalid_field"}),
    ("plan-null", raw_plan(plan=None), {"unknown_plan", "invalid_field"}),
    ("pack-string", raw_plan(chatbot_pack="true"), {"invalid_field"}),
    ("pack-one", raw_plan(chatbot_pack=1), {"invalid_field"}),
    ("pack-zero", raw_plan(chatbot_pack=0), {"invalid_field"}),
    ("pack-null", raw_plan(chatbot_pack=None), {"invalid_field"}),
    ("effective-no-offset", raw_plan(effective_at="2026-11-01T00:00:00"), {"invalid_timestamp"}),
    ("effective-date-only", raw_plan(effective_at="2026-11-01"), {"invalid_timestamp"}),
    ("effective-bad-day", raw_plan(effective_at="2026-11-31T00:00:00Z"), {"invalid_timestamp"}),
    ("effective-empty", raw_plan(effective_at=""), {"invalid_timestamp", "invalid_field"}),
    # A wrong type is invalid_field, as for occurred_at; a bad string, invalid_timestamp.
    ("effective-number", raw_plan(effective_at=1793491200000), {"invalid_field"}),
    ("effective-null", raw_plan(effective_at=None), {"invalid_field"}),
    ("effective-list", raw_plan(effective_at=["2026-11-01T00:00:00Z"]), {"invalid_field"}),
    ("not-json", b"plan: pro", {"invalid_json"}),
    ("invalid-utf8", raw_plan(account_id="acc-1").replace(b"acc-1", b"acc-\xff"), {"invalid_json"}),
    ("nan", raw_plan()[:-1] + b', "x": NaN}', {"invalid_json"}),
    ("top-level-array", b"[" + raw_plan() + b"]", {"not_object"}),
    ("top-level-null", b"null", {"not_object"}),
    ("empty", b"", {"invalid_json"}),
]


@pytest.mark.parametrize(("raw", "codes"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_decode_invalid_plan(raw, codes):
    with pytest.raises(InvalidRecord) as raised:
        decode_plan(raw, CONFIG)
    assert raised.value.code in codes


@pytest.mark.parametrize(
    ("extra", "too_large"), [(0, False), (1, True)], ids=["exactly-max", "max-plus-one"]
)
def test_plan_size_limit(extra, too_large):
    config = DomainConfig(max_event_bytes=200)
    base = raw_plan(note="")
    raw = raw_plan(note="n" * (200 - len(base) + extra))
    assert len(raw) == 200 + extra
    if too_large:
        with pytest.raises(InvalidRecord) as raised:
            decode_plan(raw, config)
        assert raised.value.code == "too_large"
    else:
        assert decode_plan(raw, config).plan == "standard"


def test_configured_plan_names_decide_what_is_unknown():
    config = DomainConfig(plan_limits={"basic": (10, 20)}, default_plan="basic")
    assert decode_plan(raw_plan(plan="basic"), config).plan == "basic"
    with pytest.raises(InvalidRecord) as raised:
        decode_plan(raw_plan(plan="standard"), config)
    assert raised.value.code == "unknown_plan"


# -- the plan in force --------------------------------------------------------------------------

NOV1 = "2026-11-01T00:00:00Z"
NOV10 = "2026-11-10T00:00:00Z"
NOV15 = "2026-11-15T12:00:00Z"
NOV20 = "2026-11-20T00:00:00Z"
DEC1 = "2026-12-01T00:00:00Z"

# (case id, records in read order as (plan, pack, effective_at), at, expected (plan, pack, limit))
PLAN_AT = [
    ("no-record-default-standard-100", [], NOV15, ("standard", False, 100)),
    ("standard-no-pack", [("standard", False, NOV1)], NOV15, ("standard", False, 100)),
    ("standard-pack", [("standard", True, NOV1)], NOV15, ("standard", True, 500)),
    ("pro-no-pack", [("pro", False, NOV1)], NOV15, ("pro", False, 500)),
    ("pro-pack", [("pro", True, NOV1)], NOV15, ("pro", True, 10_000)),
    ("effective-exactly-at-charge", [("pro", False, NOV15)], NOV15, ("pro", False, 500)),
    (
        "effective-1ms-after-charge",
        [("pro", False, "2026-11-15T12:00:00.001Z")],
        NOV15,
        ("standard", False, 100),
    ),
    ("future-record-not-yet", [("pro", True, DEC1)], NOV15, ("standard", False, 100)),
    (
        "greatest-effective-at-before",
        [("standard", False, NOV1), ("pro", False, NOV10), ("pro", True, NOV20)],
        NOV15,
        ("pro", False, 500),
    ),
    (
        "read-order-irrelevant-for-distinct-times",
        [("pro", True, NOV20), ("pro", False, NOV10), ("standard", False, NOV1)],
        NOV15,
        ("pro", False, 500),
    ),
    (
        "tie-later-read-wins",
        [("pro", True, NOV10), ("standard", False, NOV10)],
        NOV15,
        ("standard", False, 100),
    ),
    (
        "tie-later-read-wins-reversed",
        [("standard", False, NOV10), ("pro", True, NOV10)],
        NOV15,
        ("pro", True, 10_000),
    ),
    (
        "tie-three-records",
        [("pro", True, NOV10), ("standard", True, NOV10), ("pro", False, NOV10)],
        NOV15,
        ("pro", False, 500),
    ),
    (
        "tie-earlier-time-read-last-loses",
        [("pro", True, NOV10), ("standard", False, NOV1)],
        NOV15,
        ("pro", True, 10_000),
    ),
    (
        "pack-stays-on-months-later",
        [("standard", True, "2026-09-01T00:00:00Z")],
        "2027-02-14T00:00:00Z",
        ("standard", True, 500),
    ),
    (
        "pack-switched-off",
        [("standard", True, "2026-09-01T00:00:00Z"), ("standard", False, NOV1)],
        NOV15,
        ("standard", False, 100),
    ),
    (
        "pack-bought-mid-month-before",
        [("standard", False, NOV1), ("standard", True, NOV20)],
        NOV15,
        ("standard", False, 100),
    ),
    (
        "pack-bought-mid-month-after",
        [("standard", False, NOV1), ("standard", True, NOV10)],
        NOV15,
        ("standard", True, 500),
    ),
    (
        "before-first-record-default",
        [("pro", False, NOV1)],
        "2026-10-31T23:59:59.999Z",
        ("standard", False, 100),
    ),
]


@pytest.mark.parametrize(
    ("records", "at", "expected"), [c[1:] for c in PLAN_AT], ids=[c[0] for c in PLAN_AT]
)
def test_plan_at(records, at, expected):
    plans = history(*(plan_rec(plan, pack, effective) for plan, pack, effective in records))
    terms = plan_at(plans, ms(at), CONFIG)
    assert (terms.plan, terms.chatbot_pack, terms.limit) == expected


@pytest.mark.parametrize(
    ("default_plan", "default_pack", "expected"),
    [("standard", False, 100), ("standard", True, 500), ("pro", False, 500), ("pro", True, 10_000)],
    ids=["standard", "standard-pack", "pro", "pro-pack"],
)
def test_configurable_default_plan(default_plan, default_pack, expected):
    config = DomainConfig(default_plan=default_plan, default_pack=default_pack)
    terms = plan_at(None, ms(NOV15), config)
    assert (terms.plan, terms.chatbot_pack, terms.limit) == (default_plan, default_pack, expected)


def test_configurable_limits():
    config = DomainConfig(plan_limits={"standard": (7, 70), "pro": (1, 2)})
    assert plan_at(None, ms(NOV15), config).limit == 7
    assert plan_at(history(plan_rec("standard", True, NOV1)), ms(NOV15), config).limit == 70
    assert plan_at(history(plan_rec("pro", False, NOV1)), ms(NOV15), config).limit == 1
    assert plan_at(history(plan_rec("pro", True, NOV1)), ms(NOV15), config).limit == 2


def test_history_keeps_every_record():
    plans = history(
        plan_rec("pro", False, NOV1),
        plan_rec("standard", False, NOV10),
        plan_rec("pro", True, NOV20),
    )
    assert len(plans) == 3
    assert plan_at(plans, ms("2026-11-05T00:00:00Z"), CONFIG).plan == "pro"
    assert plan_at(plans, ms(NOV15), CONFIG).plan == "standard"
    assert plan_at(plans, ms(DEC1), CONFIG).limit == 10_000
