"""``botstream replay`` as a user runs it: files in, five JSONL files out, one-line errors."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from botstream.cli import main
from botstream.commands.replay import read_lines
from botstream.domain.timefmt import parse_timestamp_ms
from botstream.sim.generator import SimConfig, TrafficSimulator
from tests.unit.schema_helpers import validator

OUTPUT_SCHEMAS = {
    "outcomes.jsonl": "outcome",
    "usage.jsonl": "usage",
    "alerts.jsonl": "alert",
    "stats.jsonl": "stats",
    "dead_letters.jsonl": "dead-letter",
}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", []),
        (b"a", [(0, b"a")]),
        (b"a\n", [(0, b"a")]),
        (b"a\r\nb\r\n", [(0, b"a"), (1, b"b")]),
        (b"\n\n x \n \t \nlast", [(2, b" x "), (4, b"last")]),
        (b"a\n\n\nb\n", [(0, b"a"), (3, b"b")]),
    ],
    ids=["empty", "no-newline", "newline", "crlf", "blank-lines-keep-numbers", "gaps"],
)
@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 1 << 20])
def test_read_lines(tmp_path: Path, data: bytes, expected: list, chunk_bytes: int) -> None:
    """Blank lines are skipped but counted, whatever the read size."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    assert list(read_lines(path, chunk_bytes)) == expected


@pytest.fixture(scope="module")
def generated_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30,000-record simulated log across a month boundary, replayed once."""
    folder = tmp_path_factory.mktemp("replay")
    simulator = TrafficSimulator(
        SimConfig(
            seed=11,
            count=30_000,
            start_ms=parse_timestamp_ms("2026-11-29T00:00:00Z"),
            duplicate_rate=0.02,
            out_of_order_rate=0.05,
            malformed_rate=0.01,
        )
    )
    (folder / "plans.jsonl").write_bytes(
        b"".join(record.value + b"\n" for record in simulator.plan_records())
    )
    (folder / "events.jsonl").write_bytes(
        b"".join(record.value + b"\n" for record in simulator.events())
    )
    status = main(
        [
            "replay",
            str(folder / "events.jsonl"),
            "--plans",
            str(folder / "plans.jsonl"),
            "--out",
            str(folder / "out"),
            "--quiet",
        ]
    )
    assert status == 0
    return folder / "out"


@pytest.mark.parametrize("file_name", sorted(OUTPUT_SCHEMAS))
def test_every_written_record_matches_its_schema(generated_run: Path, file_name: str) -> None:
    """Each of the five files holds records the published schema accepts."""
    records = [orjson.loads(line) for line in (generated_run / file_name).read_bytes().splitlines()]
    assert records, f"{file_name} is empty: the generated log should exercise it"
    schema = validator(OUTPUT_SCHEMAS[file_name])
    for record in records:
        schema.validate(record)


def test_generated_run_covers_the_month_boundary(generated_run: Path) -> None:
    """Usage is kept per month: the log starts in November and runs into December."""
    usage = [
        orjson.loads(line) for line in (generated_run / "usage.jsonl").read_bytes().splitlines()
    ]
    assert {"2026-11", "2026-12"} <= {record["month"] for record in usage}


def test_summary_is_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --quiet the command ends with a short summary naming the output files."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(
        b'{"event_id":"e1","type":"chatbot.triggered","occurred_at":"2026-11-24T20:00:00Z",'
        b'"account_id":"acc-1","conversation_id":"c-1"}\nnot json\n'
    )
    assert main(["replay", str(events), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "2 events" in out
    assert "dead letters 1" in out
    assert "outcomes.jsonl (1)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "missing.jsonl", "--out", "o"], "events file missing.jsonl not found"),
        (
            ["replay", "{events}", "--plans", "nope.jsonl", "--out", "o"],
            "plans file nope.jsonl not found",
        ),
        (["replay", "{events}", "--out", "o", "--idle-timeout", "soon"], "is not a duration"),
        (["replay", "{events}", "--out", "o", "--plan-limits", "gold"], "NAME=WITHOUT/WITH"),
        (
            ["replay", "{events}", "--out", "o", "--retention", "1m"],
            "retention must be longer than the idle timeout",
        ),
        (["replay", "{events}", "--out", "{events}"], "is not a directory"),
        (["replay", "{events}"], "the following arguments are required: --out"),
        (["replay", "{events}", "--out", "o", "--bogus"], "unrecognized arguments: --bogus"),
    ],
    ids=[
        "missing-events",
        "missing-plans",
        "bad-duration",
        "bad-limits",
        "retention-too-short",
        "out-is-a-file",
        "no-out",
        "unknown-flag",
    ],
)
def test_bad_input_gives_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    """A missing file or bad flag exits 2 with one line on stderr, never a traceback."""
    monkeypatch.chdir(tmp_path)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"")
    argv = [arg.replace("{events}", str(events)) for arg in args]
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


@pytest.mark.parametrize("chunk_bytes", [1, 7, 1 << 20])
def test_replay_numbers_lines_like_read_lines(tmp_path: Path, chunk_bytes: int) -> None:
    """Dead letters carry the 0-based line number, blank lines counted, CRLF accepted."""
    from botstream.commands.replay import read_chunks
    from botstream.domain.config import DomainConfig
    from botstream.replay.engine import ReplayEngine

    good = (
        b'{"event_id":"e1","type":"chatbot.triggered","occurred_at":"2026-11-24T20:00:00Z",'
        b'"account_id":"acc-1","conversation_id":"c-1"}'
    )
    data = b"\n  \n" + good + b"\r\nbad one\r\n\t\n not json\n" + good.replace(b"e1", b"e2")
    path = tmp_path / "events.jsonl"
    path.write_bytes(data)
    engine = ReplayEngine(DomainConfig())
    engine.add_event_lines(read_chunks(path, chunk_bytes), path.name)
    result = engine.finish()
    assert result.events_read == len(list(read_lines(path))) == 4
    assert [letter["offset"] for letter in result.dead_letters] == [3, 5]
    assert result.dead_letters[0]["value"] == "YmFkIG9uZQ=="  # "bad one", without the \r
