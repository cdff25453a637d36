"""The published JSON Schemas under ``schemas/``: well-formed, self-consistent, and
accepting exactly the cases in ``tests/unit/fixtures/schema_cases/``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from tests.unit.schema_helpers import (
    SCHEMA_DIR,
    SCHEMA_NAMES,
    ecma_regex,
    errors,
    load_schema,
    schema_path,
    validator,
)

CASES_DIR = Path(__file__).parent / "fixtures" / "schema_cases"

INPUT_TIMESTAMP = (
    r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
# Inputs are limited to years 1970-2999 as written; normalised to UTC, an input
# with an offset can land in 1969 or 3000, so outputs allow those years too.
OUTPUT_TIMESTAMP = (
    r"^(19[6-9][0-9]|2[0-9]{3}|3000)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{3}Z$"
)
INPUTS = ("widget-event", "plan-record")
OUTPUTS = ("outcome", "usage", "usage-response", "alert", "dead-letter", "stats")


def _load_cases(name: str) -> dict:
    with (CASES_DIR / f"{name}.json").open(encoding="utf-8") as handle:
        return json.load(handle)


CASES = {name: _load_cases(name) for name in SCHEMA_NAMES}


def _params(kind: str) -> list:
    return [
        pytest.param(name, case["value"], id=f"{name}: {case['case']}")
        for name in SCHEMA_NAMES
        for case in CASES[name].get(kind, [])
    ]


def _examples() -> list:
    return [
        pytest.param(name, example, id=f"{name}: example {i}")
        for name in SCHEMA_NAMES
        for i, example in enumerate(load_schema(name)["examples"])
    ]


# --- the schema files ---


def test_every_schema_file_is_listed() -> None:
    on_disk = sorted(p.name for p in SCHEMA_DIR.glob("*.schema.json"))
    assert on_disk == sorted(schema_path(name).name for name in SCHEMA_NAMES)
    assert sorted(p.stem for p in CASES_DIR.glob("*.json")) == sorted(SCHEMA_NAMES)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://botstream.invalid/schemas/{name}.schema.json"
    assert schema["title"]
    assert len(schema["description"]) > 80
    assert len(schema["examples"]) >= 2
    assert schema["type"] == "object"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_field_is_described(name: str) -> None:
    schema = load_schema(name)
    for field, subschema in schema["properties"].items():
        assert subschema.get("description"), f"{name}: {field} has no description"


@pytest.mark.parametrize("name", INPUTS)
def test_inputs_are_open(name: str) -> None:
    """Producers may add fields: botstream ignores them."""
    assert load_schema(name)["additionalProperties"] is True


@pytest.mark.parametrize("name", OUTPUTS)
def test_outputs_are_closed(name: str) -> None:
    schema = load_schema(name)
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == sorted(schema["properties"])


@pytest.mark.parametrize("name", INPUTS)
def test_input_timestamp_pattern(name: str) -> None:
    timestamp = load_schema(name)["$defs"]["timestamp"]
    assert timestamp["pattern"] == INPUT_TIMESTAMP
    assert timestamp["format"] == "date-time"


@pytest.mark.parametrize("name", ("outcome", "usage", "usage-response", "alert"))
def test_output_timestamp_pattern(name: str) -> None:
    timestamp = load_schema(name)["$defs"]["timestamp"]
    assert timestamp["pattern"] == OUTPUT_TIMESTAMP
    assert timestamp["format"] == "date-time"


def test_usage_response_is_the_usage_record_and_a_forecast() -> None:
    """The read API's answer repeats the record's fields exactly, and adds ``forecast``."""
    record, answer = load_schema("usage"), load_schema("usage-response")
    fields = dict(answer["properties"])
    forecast_fields = {"status", "limit_reached_on", "per_day", "limit", "as_of"}
    assert set(fields.pop("forecast")["required"]) == forecast_fields
    assert fields == record["properties"]
    assert answer["required"] == [*record["required"], "forecast"]
    assert answer["$defs"] == record["$defs"] and answer["allOf"] == record["allOf"]
    for example, answer_example in zip(record["examples"], answer["examples"], strict=True):
        assert {k: v for k, v in answer_example.items() if k != "forecast"} == example


def test_widget_event_types_match_spec() -> None:
    types = load_schema("widget-event")["properties"]["type"]["enum"]
    assert types == [
        "conversation.started",
        "chatbot.triggered",
        "chatbot.message",
        "chatbot.button_clicked",
        "visitor.message",
        "agent.joined",
        "agent.message",
        "conversation.transferred",
        "widget.closed",
        "visitor.left",
        "conversation.closed",
    ]


# --- format checking is really on ---


def test_date_time_format_is_checked() -> None:
    """Without rfc3339-validator, ``format`` would silently pass everything."""
    assert "date-time" in Draft202012Validator.FORMAT_CHECKER.checkers
    event = {
        "event_id": "e-1",
        "type": "visitor.message",
        "occurred_at": "2026-02-30T10:00:00Z",
        "account_id": "acc-1",
        "conversation_id": "c-1",
    }
    found = errors("widget-event", event)
    assert found and all("date-time" in message for message in found), found


def test_pattern_end_anchor_is_ecma() -> None:
    """``$`` matches only at the very end, as in ECMA-262, not before a final newline."""
    assert ecma_regex(r"^a$") == r"^a\Z"
    assert ecma_regex(r"^[$]\$$") == r"^[$]\$\Z"
    assert validator("stats").is_valid(CASES["stats"]["valid"][0]["value"])
    stats = dict(CASES["stats"]["valid"][0]["value"], month="2026-11\n")
    assert not validator("stats").is_valid(stats)


# --- examples and cases ---


@pytest.mark.parametrize(("name", "value"), _examples())
def test_examples_validate(name: str, value: object) -> None:
    assert errors(name, value) == []


@pytest.mark.parametrize(("name", "value"), _params("valid"))
def test_valid_case(name: str, value: object) -> None:
    assert errors(name, value) == []


@pytest.mark.parametrize(("name", "value"), _params("invalid") + _params("invalid_json_values"))
def test_invalid_case(name: str, value: object) -> None:
    assert not validator(name).is_valid(value)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_cases_are_well_formed(name: str) -> None:
    cases = CASES[name]
    assert set(cases) <= {"description", "valid", "invalid", "invalid_json_values"}
    names = [
        c["case"]
        for kind in ("valid", "invalid", "invalid_json_values")
        for c in cases.get(kind, [])
    ]
    assert len(names) == len(set(names)), "case names must be unique"
    for case in cases["invalid"]:
        assert isinstance(case["value"], dict), case["case"]
        assert case["why"] and len(case["why"]) <= 60, case["case"]
    for case in cases.get("invalid_json_values", []):
        assert not isinstance(case["value"], dict), case["case"]


def test_enough_widget_event_cases() -> None:
    assert len(CASES["widget-event"]["invalid"]) >= 40
    assert len(CASES["widget-event"]["valid"]) >= 20
