"""The offline replay on a hostile log: nothing escapes, every line is applied or a dead letter.

A small version of ``make fuzz``'s replay target: a log of valid conversations
among records broken every way (``reliability/hostile.py``), with a 10 MiB
line, 1 MiB lines and lines exactly at the size limit, goes through the same
steps as ``botstream replay``. Every bad line must be one dead letter, with
the expected reason and the bytes the rule keeps; every conversation must
count exactly its valid events; redeliveries change nothing.
"""

from __future__ import annotations

import base64

import orjson

from botstream.commands.replay import replay_files, write_results
from botstream.config import load_settings
from botstream.replay.engine import ReplayEngine
from reliability.fuzz import RUN_ENV
from reliability.hostile import APPLIED, DUPLICATE, Feed, FeedConfig
from reliability.ledger import check_replay_results, write_feed


def test_hostile_log_replays_to_the_expected_fates(tmp_path):
    config = FeedConfig(seed=11, events=4000, broken_plans=200, ten_mib=1, one_mib=1, at_limit=6)
    files = write_feed(Feed(config), tmp_path / "feed")
    engine = ReplayEngine(load_settings(env=RUN_ENV).domain)
    result = replay_files(files.events_jsonl, files.plans_jsonl, engine)
    write_results(result, tmp_path / "out")

    findings = check_replay_results(files, tmp_path / "out")

    assert findings.problems == []
    counts = files.events.counts(jsonl_only=True)
    assert findings.applied == counts[APPLIED]
    assert result.duplicates == counts[DUPLICATE]
    assert (
        sum(n for code, n in findings.dead_letters.items() if not code.startswith("plan "))
        == (counts["bad"])
    )
    # Every kind of reason occurs, the state's own ones included.
    assert {"too_large", "invalid_json", "not_object", "missing_field", "invalid_field"} <= set(
        findings.dead_letters
    )
    assert {"invalid_timestamp", "unknown_type", "late", "account_mismatch"} <= set(
        findings.dead_letters
    )
    assert {"plan unknown_plan", "plan invalid_field"} <= set(findings.dead_letters)


def test_a_10_mib_line_is_one_dead_letter_of_bounded_size(tmp_path):
    line = b'{"event_id":"e-1","pad":"' + b"x" * (10 * 1024 * 1024) + b'"}'
    events = tmp_path / "events.jsonl"
    events.write_bytes(b'{"not": "an event"}\n' + line + b"\n")
    engine = ReplayEngine(load_settings(env={}).domain)
    write_results(replay_files(events, None, engine), tmp_path / "out")

    letters = [orjson.loads(x) for x in (tmp_path / "out" / "dead_letters.jsonl").open("rb")]
    assert [(d["offset"], d["error"].split(":")[0]) for d in letters] == [
        (0, "missing_field"),
        (1, "too_large"),
    ]
    assert base64.b64decode(letters[1]["value"]) == line[: 64 * 1024]
