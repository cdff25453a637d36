"""``botstream simulate`` from the command line."""

from __future__ import annotations

import argparse

import pytest

from botstream.cli import main
from botstream.commands.simulate import build_config, register
from botstream.domain.config import DAY_MS
from botstream.domain.events import decode_event
from botstream.domain.timefmt import parse_timestamp_ms
from botstream.errors import InvalidRecord

START = "2026-11-30T22:00:00Z"


def _simulate(tmp_path, *flags: str, name: str = "events.jsonl") -> list[str]:
    events = tmp_path / name
    argv = ["simulate", "--out", str(events), "--plans-out", str(tmp_path / "plans.jsonl")]
    assert main([*argv, *flags]) == 0
    return events.read_bytes().splitlines()


def test_writes_events_and_plans_and_a_summary(tmp_path, capsys):
    lines = _simulate(tmp_path, "--count", "3000", "--seed", "5", "--start", START)
    assert len(lines) == 3000
    valid = 0
    for line in lines:
        try:
            decode_event(line)
            valid += 1
        except InvalidRecord:
            pass
    assert valid >= 2900
    plans = (tmp_path / "plans.jsonl").read_bytes().splitlines()
    assert plans and all(line.startswith(b'{"account_id":') for line in plans)
    out = capsys.readouterr().out
    assert "3,000 event records" in out
    assert "resolved_by_chatbot" in out
    assert "duplicates" in out and "malformed" in out
    assert "months 2026-11, 2026-12" in out


def test_same_flags_give_the_same_file(tmp_path):
    flags = ("--count", "2000", "--seed", "9", "--start", START, "--quiet")
    first = _simulate(tmp_path, *flags, name="a.jsonl")
    second = _simulate(tmp_path, *flags, name="b.jsonl")
    assert first == second
    other = _simulate(tmp_path, "--count", "2000", "--seed", "10", "--start", START, "--quiet")
    assert other != first


def test_quiet_prints_nothing(tmp_path, capsys):
    _simulate(tmp_path, "--count", "100", "--quiet", "--start", START)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_stdout_output_keeps_the_summary_on_stderr(capsys):
    assert main(["simulate", "--out", "-", "--count", "50", "--start", START]) == 0
    captured = capsys.readouterr()
    # capsys replaces sys.stdout with a text stream; records go to its buffer
    # when there is one, so only the summary is checked here.
    assert "50 event records to stdout" in captured.err


def test_zero_fault_rates_give_only_valid_events(tmp_path):
    lines = _simulate(
        tmp_path,
        *("--count", "2000", "--start", START, "--quiet"),
        *("--duplicate-rate", "0", "--out-of-order-rate", "0", "--malformed-rate", "0"),
    )
    for line in lines:
        decode_event(line)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--duplicate-rate", "1.5"], "--duplicate-rate"),
        (["--malformed-rate", "lots"], "--malformed-rate"),
        (["--out-of-order-rate", "-0.1"], "--out-of-order-rate"),
        (["--count", "0"], "--count"),
        (["--count", "ten"], "--count"),
        (["--rate", "-5"], "--rate"),
        (["--speed", "fast"], "--speed"),
        (["--start", "2026-11-30 22:00"], "--start"),
        (["--duration", "60"], "--duration needs --speed or --rate"),
        (["--duration", "soon", "--rate", "5"], "--duration"),
        (["--accounts", "-1"], "--accounts"),
        (["--bootstrap", "127.0.0.1:9092"], "--out and --bootstrap"),
    ],
)
def test_bad_flags_are_one_line_errors(tmp_path, capsys, flags, message):
    status = main(["simulate", "--out", str(tmp_path / "e.jsonl"), *flags])
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("botstream: ")
    assert message in err


def test_plans_out_needs_out(capsys):
    assert main(["simulate", "--plans-out", "plans.jsonl"]) == 2
    assert "--plans-out needs --out" in capsys.readouterr().err


def test_unwritable_output_is_a_one_line_error(tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "dir" / "events.jsonl"
    assert main(["simulate", "--out", str(missing), "--count", "10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write" in err


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "--start 2026-11-30T22:00:00Z" in out


def _args(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["simulate", *flags])


NOW = parse_timestamp_ms("2026-11-24T20:15:00.123Z")


def test_default_start_ends_the_run_before_now_on_a_midnight_for_files():
    config, speed, rate = build_config(_args("--out", "x", "--count", "100000"), NOW, True)
    assert config.start_ms % DAY_MS == 0
    assert config.start_ms < NOW - 2 * DAY_MS  # 100k records are about a week
    assert speed is None and rate == 0


def test_default_start_for_kafka_is_not_rounded():
    config, _, _ = build_config(_args("--count", "1000"), NOW, False)
    assert config.start_ms % DAY_MS != 0 and config.start_ms < NOW


def test_duration_with_speed_is_simulated_time():
    config, speed, _ = build_config(
        _args("--speed", "1440", "--duration", "60", "--start", START), NOW, False
    )
    assert speed == 1440
    assert config.end_ms - config.start_ms == DAY_MS
    assert config.count is None


def test_duration_with_rate_is_a_count():
    config, _, rate = build_config(_args("--rate", "500", "--duration", "2m"), NOW, False)
    assert rate == 500 and config.count == 60_000 and config.end_ms is None


def test_count_defaults_to_ten_thousand():
    config, _, _ = build_config(_args("--out", "x"), NOW, True)
    assert config.count == 10_000
