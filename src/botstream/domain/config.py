"""The settings the domain rules depend on (SPEC sections 4 to 6), with SPEC's defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

MINUTE_MS = 60_000
DAY_MS = 24 * 60 * MINUTE_MS

#: Per plan: (monthly limit without the chatbot pack, with the pack).
DEFAULT_PLAN_LIMITS: dict[str, tuple[int, int]] = {
    "standard": (100, 500),
    "pro": (500, 10_000),
}

#: How many distinct event ids per conversation are remembered to drop duplicates.
DUPLICATE_WINDOW = 256


#: The largest ``max_event_bytes``: the dead letter of a record that size, in base64
#: with its key and reason, stays under Kafka's default message size of 1 MiB.
MAX_EVENT_BYTES_LIMIT = 512 * 1024


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """Every tunable of the domain rules. Times are milliseconds."""

    idle_timeout_ms: int = 30 * MINUTE_MS
    retention_ms: int = 7 * DAY_MS
    max_clock_skew_ms: int = 5 * MINUTE_MS
    warning_percent: int = 80
    plan_limits: dict[str, tuple[int, int]] = field(
        default_factory=lambda: dict(DEFAULT_PLAN_LIMITS)
    )
    default_plan: str = "standard"
    default_pack: bool = False
    max_event_bytes: int = 64 * 1024
    #: Months of account history kept (usage, statistics, plans): the latest month the
    #: account stage has seen and the ones before it; 0 keeps every month.
    history_months: int = 13

    def __post_init__(self) -> None:
        """Reject settings under which the SPEC's rules would contradict each other."""
        problems = []
        if self.idle_timeout_ms <= 0:
            problems.append("idle timeout must be positive")
        if self.retention_ms <= self.idle_timeout_ms:
            problems.append("retention must be longer than the idle timeout")
        if self.max_clock_skew_ms < 0:
            problems.append("max clock skew must not be negative")
        if not 1 <= self.warning_percent <= 100:
            problems.append("warning percent must be between 1 and 100")
        if self.default_plan not in self.plan_limits:
            problems.append(f"default plan {self.default_plan!r} is not a configured plan")
        for plan, limits in self.plan_limits.items():
            if len(limits) != 2 or any(not isinstance(n, int) or n < 0 for n in limits):
                problems.append(f"plan {plan!r} needs two limits >= 0 (without, with pack)")
        if not 0 < self.max_event_bytes <= MAX_EVENT_BYTES_LIMIT:
            # A bad record up to the limit goes into its dead letter whole, a third
            # larger in base64: it must still fit in a Kafka message (1 MiB).
            problems.append(f"max event bytes must be between 1 and {MAX_EVENT_BYTES_LIMIT}")
        if self.history_months < 0:
            problems.append("history months must not be negative (0 keeps every month)")
        if problems:
            raise ValueError("; ".join(problems))

    def limit_for(self, plan: str, chatbot_pack: bool) -> int:
        """The monthly limit of chatbot conversations for a plan, with or without the pack."""
        without_pack, with_pack = self.plan_limits[plan]
        return with_pack if chatbot_pack else without_pack
