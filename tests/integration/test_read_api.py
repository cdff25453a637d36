"""SPEC section 7: the read API of two workers sharing the work.

Each worker answers for the accounts whose account-stage partition it owns
and forwards the other reads to the owner, so both workers give the same
answer for every account, and that answer is the replay's.
"""

from __future__ import annotations

import time

import pytest

from botstream.domain.timefmt import month_of
from botstream.stream.app import account_partition
from tests.integration.harness import (
    Outputs,
    compare_with_replay,
    exactly_once_problems,
    generate_log,
    log_line,
    produce,
    run_replay,
)
from tests.unit.schema_helpers import validator

pytestmark = pytest.mark.integration


BAD_MONTHS = ("2026-13", "2026-1", "2026-11-01", "nov-2026", "202611", "2026-00", " 2026-11")


async def test_read_api_of_two_workers(stream_settings, tmp_path, pool) -> None:
    settings = stream_settings
    topics = settings.topics
    log = generate_log(tmp_path / "log", count=6_000, seed=17)
    replay = run_replay(log, tmp_path / "replay")
    first, second = pool.add("a", log.env), pool.add("b", log.env)
    async with Outputs(settings) as outputs:
        await produce(settings, topics.plans, log.plans)
        first.start()
        second.start()
        # Both own partitions before any event flows, so that no record is
        # processed by one and again by the other after a rebalance, and the
        # counters below are exact.
        await pool.wait_owning([first, second])
        await outputs.wait_plans_read(len(log.plans))
        await produce(settings, topics.events, log.events)
        await outputs.wait_settled(
            set(replay.outcomes), len(replay.dead_letters), 90, alive=[first, second]
        )
        problems = compare_with_replay(log, outputs, replay)
        problems += exactly_once_problems(outputs, log)
        published_alerts = len(outputs.records("alerts"))
    assert not problems, "\n".join(problems) + "\n" + pool.report()

    # /health: both up, the account partitions split between them.
    health = {w.name: await w.get_json("/health") for w in (first, second)}
    for worker in (first, second):
        assert health[worker.name]["status"] == "ok"
        assert health[worker.name]["url"] == worker.url
    owned = {name: set(h["partitions"]["accounts"]) for name, h in health.items()}
    assert owned["a"] and owned["b"] and not owned["a"] & owned["b"]
    assert owned["a"] | owned["b"] == set(range(settings.partitions))

    # /usage: every account and month with charges, asked of both workers.
    # The answer is the usage record plus a forecast (schemas/usage-response.schema.json).
    usage_check = validator("usage-response")
    began = time.monotonic()
    for (account, month), want in sorted(replay.usage.items()):
        for worker in (first, second):
            got = await worker.get_json(f"/usage/{account}", month=month)
            usage_check.validate(got)
            forecast = got.pop("forecast")
            assert got == want, f"{worker.name} /usage/{account}?month={month}"
            assert (forecast["status"] == "reached") == (want["used"] >= forecast["limit"])
    log_line(
        f"{2 * len(replay.usage)} /usage reads in {time.monotonic() - began:.1f} s, "
        "half of them forwarded"
    )
    # Accounts owned by b, read from a (forwarded), include ones over their limit.
    by_b = [
        key for key in replay.usage if account_partition(key[0], settings.partitions) in owned["b"]
    ]
    assert by_b, "no account with charges is owned by b"
    assert any(replay.usage[key]["over_limit"] > 0 for key in replay.usage)

    # /stats: every account and month of the replay's statistics, from both.
    stats_check = validator("stats")
    for want in replay.stats:
        for worker in (first, second):
            got = await worker.get_json(f"/stats/{want['account_id']}", month=want["month"])
            stats_check.validate(got)
            assert got == want, f"{worker.name} /stats for {want}"

    # A month without charges: used 0 and the plan in force at its start
    # (README); an account botstream never saw: the default plan.
    account = by_b[0][0]
    quiet_month = month_of(int((time.time() - 180 * 86_400) * 1000))  # before the log
    quiet = {w.name: await w.get_json(f"/usage/{account}", month=quiet_month) for w in pool.workers}
    assert quiet["a"] == quiet["b"]
    usage_check.validate(quiet["a"])
    assert quiet["a"]["used"] == 0
    assert quiet["a"]["updated_at"] == f"{quiet_month}-01T00:00:00.000Z"
    # A month older than the kept history (13 months) is gone, and says so.
    status, _ = await first.get(f"/usage/{account}", month="2020-01")
    assert status == 410
    unknown = await first.get_json("/usage/acc-never-seen", month="2026-11")
    assert unknown["used"] == 0 and unknown["plan"] == "standard"
    assert unknown["limit"] == 20  # BOTSTREAM_PLAN_LIMITS standard=20/60
    # No month: the current UTC month.
    current = await second.get_json(f"/usage/{account}")
    assert current["month"] == month_of(int(time.time() * 1000))

    # A month that is not YYYY-MM: 400 from both, owner or not, for both reads.
    for worker in (first, second):
        for bad in BAD_MONTHS:
            for path in (f"/usage/{account}", f"/stats/{account}"):
                status, body = await worker.get(path, month=bad)
                assert status == 400, f"{worker.name} {path}?month={bad!r}: {status} {body!r}"

    # /metrics: Prometheus text from both; together they read every record
    # once and charged every billable conversation once.
    events_in = charges = alerts = dead = 0.0
    for worker in (first, second):
        status, body = await worker.get("/metrics")
        assert status == 200
        text = body.decode()
        assert "# TYPE botstream_events_in_total counter" in text
        assert "# TYPE botstream_charges_total counter" in text
        own_events = await worker.metric("botstream_events_in_total")
        assert own_events > 0, f"{worker.name} read no event"
        events_in += own_events
        charges += await worker.metric("botstream_charges_total")
        alerts += await worker.metric("botstream_alerts_total")
        dead += await worker.metric("botstream_dead_letters_total")
    assert events_in == len(log.events)
    assert charges == replay.charges
    # (Not necessarily the replay's count: where a month's limit changed, the
    # order of charges across partitions decides which alerts fire.)
    assert alerts == published_alerts
    assert dead == len(replay.dead_letters)
    for worker in (first, second):
        assert not worker.errors(), worker.errors()
