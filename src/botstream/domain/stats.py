"""Statistics: conversations by outcome per account and month of ``started_at``."""

from __future__ import annotations

import msgspec

from botstream.domain.conversation import OUTCOME_NAMES, Outcome

STAT_FIELDS = tuple(
    OUTCOME_NAMES[o]
    for o in (
        Outcome.RESOLVED_BY_CHATBOT,
        Outcome.TRANSFERRED_TO_AGENT,
        Outcome.UNENGAGED,
        Outcome.NO_CHATBOT,
    )
)


class StatsChange(msgspec.Struct, frozen=True, gc=False):
    """A conversation's latest revision moved it from one (month, outcome) to another.

    ``old`` is None for a conversation's first revision; only the latest
    revision of each conversation counts.
    """

    account_id: str
    old: tuple[str, int] | None
    new: tuple[str, int]


#: Outcome names by their number (a tuple index is cheaper than building the enum).
_NAME_BY_CODE = tuple(OUTCOME_NAMES[Outcome(code)] for code in range(len(Outcome)))


def apply_stats_change(counts: dict[str, dict[str, int]], change: StatsChange) -> None:
    """Apply a change to one account's ``{month: {outcome: count}}``, in place."""
    if change.old is not None:
        month, outcome = change.old
        counts[month][_NAME_BY_CODE[outcome]] -= 1
    month, outcome = change.new
    per_month = counts.get(month)
    if per_month is None:
        per_month = counts[month] = dict.fromkeys(STAT_FIELDS, 0)
    per_month[_NAME_BY_CODE[outcome]] += 1


def apply_kept_stats_change(
    counts: dict[str, dict[str, int]], change: StatsChange, first_kept: str | None
) -> list[str]:
    """:func:`apply_stats_change` on kept history only; the months it changed.

    Months before ``first_kept`` have expired (see :mod:`botstream.domain.history`):
    there is nothing left to count in them, so the change leaves them alone.
    """
    if first_kept is None:
        apply_stats_change(counts, change)
        return [month for month, _ in filter(None, (change.old, change.new))]
    changed = []
    old, new = change.old, change.new
    if old is not None and old[0] >= first_kept:
        counts[old[0]][_NAME_BY_CODE[old[1]]] -= 1
        changed.append(old[0])
    if new[0] >= first_kept:
        per_month = counts.get(new[0])
        if per_month is None:
            per_month = counts[new[0]] = dict.fromkeys(STAT_FIELDS, 0)
        per_month[_NAME_BY_CODE[new[1]]] += 1
        changed.append(new[0])
    return changed


def stats_record(account_id: str, month: str, counts: dict[str, int] | None) -> dict:
    """The statistics record of one account and month (zeros when nothing was counted)."""
    counts = counts or {}
    return {
        "account_id": account_id,
        "month": month,
        **{name: counts.get(name, 0) for name in STAT_FIELDS},
    }
