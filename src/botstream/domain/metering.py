"""Metering: charges, monthly usage per account, and quota alerts (SPEC section 5)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from botstream.domain.config import DomainConfig
from botstream.domain.plans import PlanHistory, plan_at
from botstream.domain.timefmt import format_timestamp

WARNING = "quota.warning"
LIMIT_REACHED = "quota.limit_reached"
EXCEEDED = "quota.exceeded"


class Charge(msgspec.Struct, frozen=True, gc=False):
    """One billable chatbot conversation, counted toward ``month`` of its ``billable_at``."""

    account_id: str
    conversation_id: str
    billable_at: int
    month: str


@dataclass(slots=True)
class Usage:
    """Usage of one account in one month."""

    account_id: str
    month: str
    used: int = 0
    #: The latest ``billable_at`` among the month's charges (epoch ms).
    updated_at: int = 0
    #: Alerts already published, as ``"kind:limit"``.
    alerts_sent: list[str] = field(default_factory=list)


def warning_threshold(limit: int, warning_percent: int) -> int:
    """``ceil(P × L / 100)`` in exact integer arithmetic."""
    return -(-warning_percent * limit // 100)


def apply_charge(
    usage: Usage | None, charge: Charge, plans: PlanHistory | None, config: DomainConfig
) -> tuple[Usage, dict, list[dict]]:
    """Count one charge: the new usage state, its usage record and the alerts it raises.

    ``usage`` is updated in place (or created). Alerts use the limit in force at
    the charge's ``billable_at`` and are raised once per (account, month, kind,
    limit), in the order warning, limit reached, exceeded.
    """
    usage, alerts = count_charge(usage, charge, plans, config)
    return usage, usage_record(usage, plans, config), alerts


def count_charge(
    usage: Usage | None, charge: Charge, plans: PlanHistory | None, config: DomainConfig
) -> tuple[Usage, list[dict]]:
    """:func:`apply_charge` without building the usage record: the usage and the alerts.

    For callers that only need the last usage record of a month (the offline
    replay), which :func:`usage_record` then builds once.
    """
    if usage is None:
        usage = Usage(charge.account_id, charge.month)
    usage.used += 1
    if charge.billable_at > usage.updated_at:
        usage.updated_at = charge.billable_at
    limit = plan_at(plans, charge.billable_at, config).limit
    used = usage.used
    # The warning threshold is at most the limit, so below it no alert is due.
    if used < warning_threshold(limit, config.warning_percent):
        return usage, []
    alerts = []
    for kind, raised in (
        (WARNING, True),
        (LIMIT_REACHED, used >= limit),
        (EXCEEDED, used > limit),
    ):
        tag = f"{kind}:{limit}"
        if raised and tag not in usage.alerts_sent:
            usage.alerts_sent.append(tag)
            alerts.append(alert_record(charge, kind, used, limit))
    return usage, alerts


def usage_record(usage: Usage, plans: PlanHistory | None, config: DomainConfig) -> dict:
    """The usage record (SPEC section 5) with the plan in force at ``updated_at``."""
    terms = plan_at(plans, usage.updated_at, config)
    return {
        "account_id": usage.account_id,
        "month": usage.month,
        "plan": terms.plan,
        "chatbot_pack": terms.chatbot_pack,
        "limit": terms.limit,
        "used": usage.used,
        "remaining": max(0, terms.limit - usage.used),
        "over_limit": max(0, usage.used - terms.limit),
        "updated_at": format_timestamp(usage.updated_at),
    }


def nearest_limit(records: Iterable[dict], count: int) -> list[dict]:
    """The ``count`` usage records with the highest share of their limit, highest first."""
    return sorted(records, key=lambda r: r["used"] / max(r["limit"], 1), reverse=True)[:count]


def empty_usage_record(
    account_id: str,
    month: str,
    month_start: int,
    plans: PlanHistory | None,
    config: DomainConfig,
) -> dict:
    """The usage record of a month without charges (used 0), for the read API.

    The plan is the one in force at the start of the month, which is also
    ``updated_at``.
    """
    return usage_record(Usage(account_id, month, 0, month_start), plans, config)


def alert_record(charge: Charge, kind: str, used: int, limit: int) -> dict:
    """The alert record (SPEC section 5) raised by ``charge``."""
    return {
        "alert_id": f"{charge.account_id}:{charge.month}:{kind}:{limit}",
        "kind": kind,
        "account_id": charge.account_id,
        "month": charge.month,
        "used": used,
        "limit": limit,
        "conversation_id": charge.conversation_id,
        "at": format_timestamp(charge.billable_at),
    }
