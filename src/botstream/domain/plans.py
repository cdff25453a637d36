"""Plan records and each account's plan history (SPEC section 5)."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from botstream.domain.config import DomainConfig
from botstream.domain.events import MAX_ID_LENGTH
from botstream.domain.timefmt import parse_timestamp_ms
from botstream.errors import InvalidRecord


@dataclass(frozen=True, slots=True)
class PlanRecord:
    """One plan change of an account, effective from ``effective_at`` (epoch ms)."""

    account_id: str
    plan: str
    chatbot_pack: bool
    effective_at: int


@dataclass(frozen=True, slots=True)
class PlanTerms:
    """The plan in force at some moment, with its monthly limit."""

    plan: str
    chatbot_pack: bool
    limit: int


#: An account's plan records in the order read: ``[effective_at, plan, chatbot_pack]``.
PlanHistory = list[list]


def decode_plan(raw: bytes, config: DomainConfig) -> PlanRecord:
    """Decode a raw ``account-plans`` record, or raise :class:`InvalidRecord`."""
    if len(raw) > config.max_event_bytes:
        limit = config.max_event_bytes
        raise InvalidRecord(
            "too_large",
            f"{len(raw)} bytes exceeds the limit of {limit}; "
            f"the dead letter keeps the first {limit}",
            keep_bytes=limit,
        )
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord("invalid_json", str(exc)) from None
    if type(obj) is not dict:
        raise InvalidRecord("not_object", "a plan record must be a JSON object")
    for name in ("account_id", "plan", "chatbot_pack", "effective_at"):
        if name not in obj:
            raise InvalidRecord("missing_field", f"{name} is required")
    account_id, plan, pack = obj["account_id"], obj["plan"], obj["chatbot_pack"]
    if type(account_id) is not str or not 1 <= len(account_id) <= MAX_ID_LENGTH:
        raise InvalidRecord(
            "invalid_field", f"account_id must be a string of 1 to {MAX_ID_LENGTH} characters"
        )
    if type(plan) is not str:
        raise InvalidRecord("invalid_field", "plan must be a string")
    if plan not in config.plan_limits:
        known = ", ".join(sorted(config.plan_limits))
        raise InvalidRecord("unknown_plan", f"{plan[:64]!r} is not a configured plan ({known})")
    if type(pack) is not bool:
        raise InvalidRecord("invalid_field", "chatbot_pack must be true or false")
    effective_text = obj["effective_at"]
    if type(effective_text) is not str:
        # As for occurred_at: a wrong type is a bad field, a bad string a bad timestamp.
        raise InvalidRecord("invalid_field", "effective_at must be a string")
    effective_at = parse_timestamp_ms(effective_text)
    if effective_at is None:
        raise InvalidRecord(
            "invalid_timestamp", "effective_at is not an RFC 3339 date-time with an offset"
        )
    return PlanRecord(account_id, plan, pack, effective_at)


def add_plan(history: PlanHistory | None, record: PlanRecord) -> PlanHistory:
    """The account's history with ``record`` appended (read order is kept)."""
    entry = [record.effective_at, record.plan, record.chatbot_pack]
    return [entry] if history is None else [*history, entry]


def plan_at(history: PlanHistory | None, at: int, config: DomainConfig) -> PlanTerms:
    """The plan in force at ``at``: the greatest ``effective_at`` at or before it.

    Among records with the same ``effective_at`` the one read later wins; with
    none, the configured default plan applies.
    """
    best: list | None = None
    for entry in history or ():
        if entry[0] <= at and (best is None or entry[0] >= best[0]):
            best = entry
    if best is None:
        plan, pack = config.default_plan, config.default_pack
    else:
        _, plan, pack = best
    # A plan removed from the configuration since it was read falls back to the default.
    if plan not in config.plan_limits:
        plan, pack = config.default_plan, config.default_pack
    return PlanTerms(plan, pack, config.limit_for(plan, pack))
