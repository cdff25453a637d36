"""Load the published JSON Schemas under ``schemas/`` and validate records with them.

    from tests.unit.schema_helpers import validator

    validator("outcome").validate(record)  # raises jsonschema.ValidationError

Names are the file names without ``.schema.json`` (``widget-event``, ``outcome``...).
Validators are Draft 2020-12 with format checking on (``date-time`` needs the
``rfc3339-validator`` package, part of the ``dev`` extra).

JSON Schema patterns are ECMA-262 regular expressions, where ``$`` matches only at
the very end of the string. Python's ``re`` also lets ``$`` match before a final
newline, so plain ``jsonschema`` would accept ``"2026-11-24T20:15:00Z\\n"``. The
validators here use ECMA-262's ``$`` so that they agree with other validators and
with botstream's own decoder.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.protocols import Validator

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"

SCHEMA_NAMES = (
    "widget-event",
    "plan-record",
    "outcome",
    "usage",
    "usage-response",
    "alert",
    "dead-letter",
    "stats",
)

_SUFFIX = ".schema.json"


def schema_path(name: str) -> Path:
    """The file of schema ``name`` (with or without the ``.schema.json`` suffix)."""
    return SCHEMA_DIR / (name if name.endswith(_SUFFIX) else name + _SUFFIX)


def load_schema(name: str) -> dict:
    """A fresh copy of schema ``name``, e.g. ``load_schema("outcome")``."""
    with schema_path(name).open(encoding="utf-8") as handle:
        return json.load(handle)


def ecma_regex(pattern: str) -> str:
    """``pattern`` for Python's ``re`` with ECMA-262's ``$``: only at the end of the string.

    Every unescaped ``$`` outside a character class becomes ``\\Z``.
    """
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            char = r"\Z"
        out.append(char)
        i += 1
    return "".join(out)


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(ecma_regex(pattern))


def _pattern(validator, pattern, instance, schema):
    if validator.is_type(instance, "string") and not _compiled(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


#: Draft 2020-12 with ECMA-262 end anchors in ``pattern``.
EcmaDraft202012Validator = validators.extend(Draft202012Validator, validators={"pattern": _pattern})


@cache
def validator(name: str) -> Validator:
    """A Draft 2020-12 validator of schema ``name`` with format checking on."""
    schema = load_schema(name)
    EcmaDraft202012Validator.check_schema(schema)
    return EcmaDraft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def errors(name: str, instance: object) -> list[str]:
    """Readable messages of every way ``instance`` breaks schema ``name`` (empty if valid)."""
    found = validator(name).iter_errors(instance)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found]
