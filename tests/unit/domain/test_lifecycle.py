"""When a conversation ends, revisions, watermark, lateness and retention (SPEC section 4)."""

from __future__ import annotations

import pytest

from botstream.domain.partition import PartitionProcessor
from botstream.errors import InvalidRecord
from tests.unit.domain.conftest import (
    AGENT_MSG,
    BOT_MSG,
    CLICK,
    CLOSED,
    DAY,
    IDLE,
    LEFT,
    MINUTE,
    RETENTION,
    SKEW,
    STARTED,
    TRIGGERED,
    VISITOR_MSG,
    WIDGET_CLOSED,
    Harness,
    at_ms,
    charges,
    ev,
    iso,
    revisions,
)


def E(type: str, at: str | float, **data: object) -> tuple:
    return (type, at, data)


# -- ending by an end event, ties, reopening, late events ----------------------------------

# (case id, events in arrival order, expected revisions as (end_reason, ended_at minutes))
ENDINGS = [
    ("closed-ends", [E(TRIGGERED, 1), E(CLOSED, 2)], [("closed", 2)]),
    ("visitor-left-ends", [E(TRIGGERED, 1), E(LEFT, 2)], [("visitor_left", 2)]),
    ("closed-by-chatbot-ends", [E(CLOSED, 2, closed_by="chatbot")], [("closed", 2)]),
    ("widget-closed-does-not-end", [E(TRIGGERED, 1), E(WIDGET_CLOSED, 2)], []),
    ("started-does-not-end", [E(STARTED, 1)], []),
    (
        "tie-closed-then-left-closed-wins",
        [E(TRIGGERED, 1), E(CLOSED, 2), E(LEFT, 2)],
        [("closed", 2), ("closed", 2)],
    ),
    (
        "tie-left-then-closed-closed-wins",
        [E(TRIGGERED, 1), E(LEFT, 2), E(CLOSED, 2)],
        [("visitor_left", 2), ("closed", 2)],
    ),
    (
        "tie-normal-then-left-end-wins",
        [E(TRIGGERED, 1), E(VISITOR_MSG, 2), E(LEFT, 2)],
        [("visitor_left", 2)],
    ),
    (
        "tie-left-then-normal-stays-ended",
        [E(TRIGGERED, 1), E(LEFT, 2), E(VISITOR_MSG, 2)],
        [("visitor_left", 2), ("visitor_left", 2)],
    ),
    (
        "tie-normal-then-closed-end-wins",
        [E(TRIGGERED, 1), E(AGENT_MSG, 2), E(CLOSED, 2)],
        [("closed", 2)],
    ),
    (
        "tie-closed-then-normal-stays-ended",
        [E(TRIGGERED, 1), E(CLOSED, 2), E(CLICK, 2)],
        [("closed", 2), ("closed", 2)],
    ),
    (
        "normal-after-left-reopens-without-revision",
        [E(TRIGGERED, 1), E(LEFT, 2), E(VISITOR_MSG, 3)],
        [("visitor_left", 2)],
    ),
    (
        "reopened-then-ends-again",
        [E(TRIGGERED, 1), E(LEFT, 2), E(VISITOR_MSG, 3), E(LEFT, 4)],
        [("visitor_left", 2), ("visitor_left", 4)],
    ),
    (
        "closed-after-left-ends-again-as-closed",
        [E(TRIGGERED, 1), E(LEFT, 2), E(CLOSED, 3)],
        [("visitor_left", 2), ("closed", 3)],
    ),
    (
        "late-event-before-end-new-revision-same-end",
        [E(TRIGGERED, 1), E(LEFT, 5), E(CLICK, 3)],
        [("visitor_left", 5), ("visitor_left", 5)],
    ),
    (
        "late-end-event-before-end-keeps-the-latest",
        [E(TRIGGERED, 1), E(LEFT, 5), E(CLOSED, 3)],
        [("visitor_left", 5), ("visitor_left", 5)],
    ),
    (
        "late-events-each-give-a-revision",
        [E(TRIGGERED, 1), E(CLOSED, 5), E(CLICK, 2), E(BOT_MSG, 3), E(STARTED, 0)],
        [("closed", 5)] * 4,
    ),
    (
        "revisions-1-2-3-across-a-reopen",
        [
            E(TRIGGERED, 1),
            E(LEFT, 2),  # revision 1
            E(VISITOR_MSG, 3),  # reopens: nothing
            E(CLOSED, 4),  # revision 2
            E(AGENT_MSG, 3.5),  # late, before the end: revision 3
        ],
        [("visitor_left", 2), ("closed", 4), ("closed", 4)],
    ),
    (
        "two-reopen-cycles",
        [
            E(TRIGGERED, 1),
            E(LEFT, 2),
            E(VISITOR_MSG, 3),
            E(LEFT, 4),
            E(VISITOR_MSG, 5),
            E(CLOSED, 6),
        ],
        [("visitor_left", 2), ("visitor_left", 4), ("closed", 6)],
    ),
]


@pytest.mark.parametrize(
    ("events", "expected"), [c[1:] for c in ENDINGS], ids=[c[0] for c in ENDINGS]
)
def test_ending_and_revisions(events, expected):
    harness = Harness()
    harness.feed(*(ev(type, at, **data) for type, at, data in events))
    got = harness.revisions_of("c-1")
    assert [(r["end_reason"], r["ended_at"]) for r in got] == [
        (reason, iso(at_ms(at))) for reason, at in expected
    ]
    assert [r["revision"] for r in got] == list(range(1, len(expected) + 1))


def test_reopened_conversation_is_open_until_it_ends_again():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 1), ev(LEFT, 2))
    assert harness.feed(ev(VISITOR_MSG, 3)) == []
    # Open again: it now ends by inactivity, 30 minutes after its latest event.
    assert revisions(harness.advance(3 + 30 - 1 / MINUTE)) == []
    [record] = revisions(harness.advance(33))
    assert record["revision"] == 2
    assert record["end_reason"] == "inactivity"
    assert record["ended_at"] == iso(at_ms(3))
    assert record["outcome"] == "transferred_to_agent"


def test_late_event_keeps_end_but_moves_started_at_and_outcome():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 1), ev(LEFT, 5))
    assert harness.latest()["outcome"] == "unengaged"
    [record] = revisions(harness.feed(ev(VISITOR_MSG, 0.5)))
    assert record["revision"] == 2
    assert record["ended_at"] == iso(at_ms(5))
    assert record["end_reason"] == "visitor_left"
    assert record["started_at"] == iso(at_ms(0.5))
    # The visitor wrote before the chatbot: it joined, and was not contacted after it.
    assert record["chatbot_role"] == "joined"
    assert record["outcome"] == "unengaged"


# -- inactivity -------------------------------------------------------------------------------

# (case id, watermark reached by another conversation's event (minutes), c-1 ended?)
IDLE_BOUNDARY = [
    ("idle-minus-1ms-open", 30 - 1 / MINUTE, False),
    ("idle-exactly-ends", 30, True),
    ("idle-plus-1ms-ends", 30 + 1 / MINUTE, True),
    ("far-later-ends", 600, True),
]


@pytest.mark.parametrize(
    ("clock", "ended"), [c[1:] for c in IDLE_BOUNDARY], ids=[c[0] for c in IDLE_BOUNDARY]
)
def test_inactivity_boundary_by_another_event(clock, ended):
    harness = Harness()
    harness.feed(ev(TRIGGERED, 0), ev(CLICK, 0))
    harness.feed(ev(STARTED, clock, conv="c-clock"))
    got = harness.revisions_of("c-1")
    if ended:
        [record] = got
        assert record["end_reason"] == "inactivity"
        assert record["ended_at"] == iso(at_ms(0))
    else:
        assert got == []


@pytest.mark.parametrize(
    ("clock", "ended"), [c[1:] for c in IDLE_BOUNDARY], ids=[c[0] for c in IDLE_BOUNDARY]
)
def test_inactivity_boundary_by_advance(clock, ended):
    harness = Harness()
    harness.feed(ev(TRIGGERED, 0))
    got = revisions(harness.advance(clock))
    if ended:
        assert [(r["end_reason"], r["ended_at"]) for r in got] == [("inactivity", iso(at_ms(0)))]
    else:
        assert got == []


def test_custom_idle_timeout():
    harness = Harness(idle_timeout_ms=5 * MINUTE)
    harness.feed(ev(TRIGGERED, 0))
    assert harness.advance(5 - 1 / MINUTE) == []
    assert [r["end_reason"] for r in revisions(harness.advance(5))] == ["inactivity"]


def test_inactivity_ended_at_is_latest_event_not_when_noticed():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 5), ev(STARTED, 2), ev(CLICK, 4))  # latest event is at 5
    [record] = revisions(harness.advance(5 * 60))  # noticed hours later
    assert record["ended_at"] == iso(at_ms(5))
    assert record["end_reason"] == "inactivity"


def test_advance_backwards_does_nothing():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 0), ev(STARTED, 20, conv="c-2"))
    assert harness.advance(10) == []
    assert harness.proc.watermark == at_ms(20)
    assert harness.advance(31) != []
    assert harness.advance(31) == []


def test_advance_ends_only_idle_conversations():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 0, conv="old"), ev(TRIGGERED, 10, conv="recent"))
    got = revisions(harness.advance(35))
    assert [r["conversation_id"] for r in got] == ["old"]
    got = revisions(harness.advance(40))
    assert [r["conversation_id"] for r in got] == ["recent"]


def test_inactivity_ended_then_late_event_before_end():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 0))
    harness.advance(40)
    [record] = revisions(harness.feed(ev(CLICK, -1)))
    assert record["revision"] == 2
    assert record["end_reason"] == "inactivity"
    assert record["ended_at"] == iso(at_ms(0))
    assert record["billable"] is True


def test_inactivity_ended_then_event_after_end_still_idle_ends_again_at_once():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 0))
    harness.advance(40)
    # Dated after the end (reopens) but already 35 minutes older than the watermark.
    [record] = revisions(harness.feed(ev(CLICK, 5)))
    assert record["revision"] == 2
    assert record["end_reason"] == "inactivity"
    assert record["ended_at"] == iso(at_ms(5))


def test_inactivity_ended_then_recent_event_reopens():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 0))
    harness.advance(40)
    assert revisions(harness.feed(ev(CLICK, 35))) == []
    [record] = revisions(harness.advance(65))
    assert (record["revision"], record["ended_at"]) == (2, iso(at_ms(35)))


def test_end_all_ends_every_open_conversation_by_inactivity():
    harness = Harness()
    harness.feed(
        ev(TRIGGERED, 0, conv="a"),
        ev(CLICK, 3, conv="a"),
        ev(VISITOR_MSG, 1, conv="b"),
        ev(TRIGGERED, 2, conv="done"),
        ev(CLOSED, 4, conv="done"),
    )
    got = revisions(harness.end_all())
    assert sorted((r["conversation_id"], r["end_reason"], r["ended_at"]) for r in got) == [
        ("a", "inactivity", iso(at_ms(3))),
        ("b", "inactivity", iso(at_ms(1))),
    ]
    assert harness.end_all() == []
    assert len(harness.revisions_of("done")) == 1


# -- watermark and lateness -------------------------------------------------------------------

LATENESS = [
    ("retention-before-watermark-is-late", RETENTION, True),
    ("retention-plus-1ms-is-late", RETENTION + 1, True),
    ("retention-minus-1ms-is-accepted", RETENTION - 1, False),
    ("one-day-is-accepted", DAY, False),
]


@pytest.mark.parametrize(("age", "late"), [c[1:] for c in LATENESS], ids=[c[0] for c in LATENESS])
@pytest.mark.parametrize("same_conversation", [False, True], ids=["new-conv", "known-conv"])
def test_late_event(age, late, same_conversation):
    harness = Harness()
    harness.feed(ev(TRIGGERED, 0, conv="c-1"))
    harness.feed(ev(STARTED, 0, conv="clock"))
    conv = "c-1" if same_conversation else "c-2"
    event = ev(VISITOR_MSG, iso(at_ms(0) - age), conv=conv)
    if late:
        with pytest.raises(InvalidRecord) as raised:
            harness.feed(event)
        assert raised.value.code == "late"
    else:
        harness.feed(event)
    harness.end_all()
    expected_events = 1 + (not late and same_conversation)
    assert harness.latest("c-1")["counts"]["events"] == expected_events
    assert ("c-2" in {r["conversation_id"] for r in harness.revisions}) is (
        not late and not same_conversation
    )


def test_custom_retention_late_boundary():
    harness = Harness(retention_ms=2 * 60 * MINUTE)
    harness.feed(ev(TRIGGERED, 120, conv="clock"))
    with pytest.raises(InvalidRecord) as raised:
        harness.feed(ev(TRIGGERED, 0))
    assert raised.value.code == "late"
    harness.feed(ev(TRIGGERED, 1 / MINUTE))


# (case id, now_ms given?, future event minutes, other conversation ended?, watermark minutes)
FUTURE = [
    ("future-event-capped-by-wall-clock", True, 120, False, 10 + 5),
    ("future-event-without-wall-clock", False, 120, True, 120),
    ("event-at-now-plus-skew", True, 15, False, 15),
    ("event-just-within-skew", True, 14, False, 14),
]


@pytest.mark.parametrize(
    ("live", "future", "other_ended", "watermark"),
    [c[1:] for c in FUTURE],
    ids=[c[0] for c in FUTURE],
)
def test_future_event_and_clock_skew(live, future, other_ended, watermark):
    now = at_ms(10)
    harness = Harness()
    harness.feed(ev(TRIGGERED, -10, conv="other"), now_ms=now if live else None)
    harness.feed(ev(TRIGGERED, future, conv="bad-clock"), now_ms=now if live else None)
    assert harness.proc.watermark == at_ms(watermark)
    assert bool(harness.revisions_of("other")) is other_ended


def test_custom_clock_skew():
    harness = Harness(max_clock_skew_ms=0)
    harness.feed(ev(TRIGGERED, 100), now_ms=at_ms(10))
    assert harness.proc.watermark == at_ms(10)
    assert SKEW == 5 * MINUTE


def test_future_event_is_not_late_for_later_events():
    # The watermark stays at now + skew, so an event dated "now" is on time.
    harness = Harness()
    harness.feed(ev(TRIGGERED, 7 * 24 * 60 + 60, conv="far-future"), now_ms=at_ms(0))
    harness.feed(ev(TRIGGERED, 0), now_ms=at_ms(0))
    assert harness.proc.watermark == at_ms(0) + SKEW


def test_idle_partition_advanced_to_wall_clock_ends_conversations():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 0), now_ms=at_ms(0))
    [record] = revisions(harness.advance(at_ms(0) + IDLE, raw_ms=True))
    assert record["end_reason"] == "inactivity"


# -- retention: ended state is dropped ----------------------------------------------------------


def _charged_and_closed(harness: Harness) -> None:
    harness.feed(ev(TRIGGERED, -2), ev(CLICK, -1), ev(CLOSED, 0))


@pytest.mark.parametrize(
    ("advance_to", "dropped"),
    [(RETENTION - 1, False), (RETENTION, True), (RETENTION + DAY, True)],
    ids=["retention-minus-1ms-kept", "retention-exactly-dropped", "retention-plus-a-day-dropped"],
)
def test_ended_state_dropped_after_retention(advance_to, dropped):
    harness = Harness()
    _charged_and_closed(harness)
    assert len(harness.charges) == 1
    harness.advance(at_ms(0) + advance_to, raw_ms=True)
    assert harness.expired == (["c-1"] if dropped else [])
    [record] = revisions(harness.feed(ev(LEFT, iso(at_ms(0) + advance_to))))
    if dropped:
        # Starts afresh: revision 1, one event, not billable (no chatbot in the new state).
        assert record["revision"] == 1
        assert record["counts"]["events"] == 1
        assert record["outcome"] == "no_chatbot"
        assert record["started_at"] == iso(at_ms(0) + advance_to)
    else:
        # Still the same state: reopened by the later event and ended again.
        assert record["revision"] == 2
        assert record["counts"]["events"] == 4
        assert record["outcome"] == "resolved_by_chatbot"
        assert record["billable_at"] == iso(at_ms(-1))


def test_dropped_conversation_starts_afresh_and_is_charged_again():
    harness = Harness()
    _charged_and_closed(harness)
    later = at_ms(0) + RETENTION + DAY  # one day after the drop point
    harness.advance(later, raw_ms=True)
    outputs = harness.feed(
        ev(TRIGGERED, iso(later + MINUTE)),
        ev(CLICK, iso(later + 2 * MINUTE)),
        ev(CLOSED, iso(later + 3 * MINUTE)),
    )
    [new_charge] = charges(outputs)
    assert new_charge.billable_at == later + 2 * MINUTE
    assert new_charge.month == iso(later + 2 * MINUTE)[:7]
    [record] = revisions(outputs)
    assert record["revision"] == 1
    assert record["billable_at"] == iso(later + 2 * MINUTE)
    assert record["counts"]["events"] == 3
    assert len(harness.charges_of("c-1")) == 2


def test_inactivity_ended_state_is_dropped_too():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 0))
    harness.advance(40)  # ended by inactivity, ended_at 0
    harness.advance(at_ms(0) + RETENTION, raw_ms=True)
    [record] = revisions(harness.feed(ev(LEFT, iso(at_ms(0) + RETENTION))))
    assert record["revision"] == 1


def test_open_conversation_jumped_past_retention_ends_then_is_dropped():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 0))
    [record] = revisions(harness.advance(at_ms(0) + RETENTION + DAY, raw_ms=True))
    assert record["end_reason"] == "inactivity"
    [again] = revisions(harness.feed(ev(LEFT, iso(at_ms(0) + RETENTION + DAY))))
    assert again["revision"] == 1


def test_dropped_conversation_may_come_back_with_another_account():
    harness = Harness()
    _charged_and_closed(harness)
    harness.advance(at_ms(0) + RETENTION, raw_ms=True)
    [record] = revisions(harness.feed(ev(LEFT, iso(at_ms(0) + RETENTION), account="acc-2")))
    assert record["account_id"] == "acc-2"


# -- account mismatch ----------------------------------------------------------------------------


@pytest.mark.parametrize("ended_first", [False, True], ids=["open", "ended"])
def test_account_mismatch_is_a_dead_letter_and_changes_nothing(ended_first):
    harness = Harness()
    harness.feed(ev(TRIGGERED, 1, account="acc-1"))
    if ended_first:
        harness.feed(ev(LEFT, 2, account="acc-1"))
    before = list(harness.revisions)
    with pytest.raises(InvalidRecord) as raised:
        harness.feed(ev(CLICK, 1.5, account="acc-2"))
    assert raised.value.code == "account_mismatch"
    assert harness.revisions == before
    assert harness.charges == []
    harness.end_all()
    record = harness.latest()
    assert record["account_id"] == "acc-1"
    assert record["counts"]["chatbot_clicks"] == 0
    assert record["billable"] is False


def test_same_conversation_id_in_other_accounts_is_not_shared_by_mistake():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 1, conv="c-1", account="acc-1"))
    harness.feed(ev(TRIGGERED, 1, conv="c-2", account="acc-2"))
    harness.end_all()
    assert harness.latest("c-1")["account_id"] == "acc-1"
    assert harness.latest("c-2")["account_id"] == "acc-2"


def test_later_event_postpones_the_inactivity_end():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 0), ev(CLICK, 10))
    assert revisions(harness.advance(40 - 1 / MINUTE)) == []
    [record] = revisions(harness.advance(40))
    assert (record["end_reason"], record["ended_at"]) == ("inactivity", iso(at_ms(10)))


def test_processor_rebuilt_over_its_store_keeps_ending_and_dropping():
    """A restarted worker rebuilds its timers from the stored states."""
    harness = Harness()
    harness.feed(
        ev(TRIGGERED, 0, conv="open"), ev(TRIGGERED, 0, conv="done"), ev(LEFT, 1, conv="done")
    )
    watermark = harness.proc.watermark
    harness.proc = PartitionProcessor(harness.config, harness.store, watermark)
    [record] = revisions(harness.advance(30))
    assert (record["conversation_id"], record["end_reason"]) == ("open", "inactivity")
    harness.advance(at_ms(1) + RETENTION, raw_ms=True)
    [again] = revisions(harness.feed(ev(LEFT, iso(at_ms(1) + RETENTION), conv="done")))
    assert again["revision"] == 1


def test_dead_letter_does_not_move_the_watermark():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 0), ev(TRIGGERED, 0, conv="c-2"))
    with pytest.raises(InvalidRecord):
        harness.feed(ev(CLICK, 40, account="acc-other"))
    assert harness.proc.watermark == at_ms(0)
    assert harness.revisions == []
