"""The topology: which stages exist, what each reads and where its state lives.

    widget-events ──► conversations ──► botstream-outcomes, botstream-dead-letters
                           │ charges, statistics changes (keyed by account)
                           ▼
    account-plans ──► plans ──► botstream-account-updates ──► accounts ──► botstream-usage,
                                                                          botstream-alerts

Every arrow out of a stage is written in that stage's transaction, together
with its changelog and its input offsets (see :mod:`botstream.stream.engine`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from botstream.config import Settings
from botstream.stream.engine import Stage
from botstream.stream.tasks import AccountTask, ConversationTask, PlanTask


def build_stages(
    settings: Settings,
    *,
    metrics=None,
    clock: Callable[[], float] | None = None,
    on_account_partition: Callable[[int, int, bool], None] | None = None,
) -> dict[str, Stage]:
    """The three stages of botstream, keyed by name, ready to :meth:`Stage.run`.

    ``on_account_partition(partition, generation, owned)`` is told each time
    this worker starts (``owned``) or stops serving a partition of the account
    stage (the read API's directory).
    """
    topics = settings.topics
    extra = {} if clock is None else {"clock": clock}
    return {
        "conversations": Stage(
            "conversations",
            settings,
            topics.events,
            topics.conversations_changelog,
            partial(ConversationTask, settings=settings, metrics=metrics),
            metrics=metrics,
            **extra,
        ),
        "plans": Stage(
            "plans",
            settings,
            topics.plans,
            None,
            partial(PlanTask, settings=settings, metrics=metrics),
            metrics=metrics,
            **extra,
        ),
        "accounts": Stage(
            "accounts",
            settings,
            topics.account_updates,
            topics.accounts_changelog,
            partial(AccountTask, settings=settings, metrics=metrics),
            metrics=metrics,
            on_ownership=on_account_partition,
            **extra,
        ),
    }
