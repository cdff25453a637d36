"""A hostile log on disk, what must become of each record, and the checks of what did.

:func:`write_feed` writes a :class:`~reliability.hostile.Feed` once, in two
forms: length-prefixed ``(key, value)`` files for Kafka, and JSONL files for
``botstream replay`` (records a JSONL line cannot carry, such as an empty value
or one with a newline, travel only through Kafka). The :class:`Ledger` keeps,
compactly, the expected fate of every record: applied to a conversation, a
duplicate, or a dead letter with one of a set of reasons, identified by a
digest of the key and of the value its dead letter must carry.

The checks compare that with what a run produced: the replay's result files,
or the records a worker committed. They never call botstream's decoders.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from reliability.hostile import APPLIED, DUPLICATE, Feed, Hostile

_NO_KEY = 0xFFFFFFFF
_LENGTH = struct.Struct(">I")


def dead_letter_value(value: bytes, max_bytes: int) -> bytes:
    """The bytes a record's dead letter keeps: all, or the first ``max_bytes`` of a larger one.

    The rule README states for ``too_large`` records (their dead letter must
    itself stay small enough to publish).
    """
    return value[:max_bytes] if len(value) > max_bytes else value


def letter_digest(key: bytes | None, value: bytes) -> bytes:
    """A digest of a dead letter's key and value, as the record was sent."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(b"-" if key is None else b"+" + _LENGTH.pack(len(key)) + key)
    digest.update(value)
    return digest.digest()


@dataclass
class Ledger:
    """The expected fate of every record of one input (events or plans), in send order."""

    max_bytes: int
    #: Index into ``fates`` of each record's expected fate.
    fate_of: array = field(default_factory=lambda: array("H"))
    #: APPLIED, DUPLICATE, or a frozenset of acceptable reason codes.
    fates: list[frozenset[str] | str] = field(default_factory=list)
    #: The conversation an applied event counts for (None for everything else).
    conversation_of: list[str | None] = field(default_factory=list)
    #: Record index of each JSONL line (records a line cannot carry have none).
    index_of_line: array = field(default_factory=lambda: array("l"))
    #: Digest of (key, dead-letter value) -> indexes of the bad records that have it.
    bad_by_digest: dict[bytes, list[int]] = field(default_factory=lambda: defaultdict(list))
    #: The same for the JSONL copy, where a record has no key.
    bad_by_line_digest: dict[bytes, list[int]] = field(default_factory=lambda: defaultdict(list))
    shapes: Counter = field(default_factory=Counter)
    _fate_index: dict = field(default_factory=dict)

    def add(self, record: Hostile, line: int | None) -> None:
        """Note one record (``line``: its JSONL line number, None if it has none)."""
        index = len(self.fate_of)
        fate = record.expect
        slot = self._fate_index.get(fate)
        if slot is None:
            slot = self._fate_index[fate] = len(self.fates)
            self.fates.append(fate)
        self.fate_of.append(slot)
        self.conversation_of.append(record.conversation_id if fate == APPLIED else None)
        if line is not None:
            self.index_of_line.append(index)
        if record.bad:
            kept = dead_letter_value(record.value, self.max_bytes)
            self.bad_by_digest[letter_digest(record.key, kept)].append(index)
            if line is not None:
                self.bad_by_line_digest[letter_digest(None, kept)].append(index)
        self.shapes[record.shape.split(":")[0] if record.shape != "mutated" else "mutated"] += 1

    def fate(self, index: int) -> frozenset[str] | str:
        """The expected fate of record ``index``."""
        return self.fates[self.fate_of[index]]

    def __len__(self) -> int:
        return len(self.fate_of)

    def counts(self, jsonl_only: bool = False) -> Counter:
        """Records by expected fate: ``applied``, ``duplicate``, ``bad``."""
        indexes = self.index_of_line if jsonl_only else range(len(self))
        counts: Counter = Counter()
        for index in indexes:
            fate = self.fate(index)
            counts[fate if type(fate) is str else "bad"] += 1
        return counts

    def applied_per_conversation(self, jsonl_only: bool = False) -> Counter:
        """Conversation id -> how many of its events must be applied."""
        indexes = self.index_of_line if jsonl_only else range(len(self))
        conversation_of = self.conversation_of
        return Counter(conversation_of[i] for i in indexes if conversation_of[i] is not None)


# -- the feed on disk ----------------------------------------------------------------------


@dataclass
class FeedFiles:
    """Where a written feed is, and its ledgers."""

    directory: Path
    events: Ledger
    plans: Ledger
    events_bin: Path
    plans_bin: Path
    events_jsonl: Path
    plans_jsonl: Path
    #: Bytes of the events' JSONL file.
    events_jsonl_bytes: int = 0


def write_feed(
    feed: Feed,
    directory: Path,
    on_event: Callable[[Hostile], None] | None = None,
    on_plan: Callable[[Hostile], None] | None = None,
) -> FeedFiles:
    """Write ``feed`` to ``directory``; ``on_event``/``on_plan`` see every record on the way."""
    directory.mkdir(parents=True, exist_ok=True)
    max_bytes = feed.config.max_bytes
    files = FeedFiles(
        directory,
        Ledger(max_bytes),
        Ledger(max_bytes),
        directory / "events.bin",
        directory / "plans.bin",
        directory / "events.jsonl",
        directory / "plans.jsonl",
    )
    for records, ledger, binary, jsonl, hook in (
        (feed.plan_records(), files.plans, files.plans_bin, files.plans_jsonl, on_plan),
        (feed.event_records(), files.events, files.events_bin, files.events_jsonl, on_event),
    ):
        line = 0
        with binary.open("wb") as out, jsonl.open("wb") as lines:
            for record in records:
                if hook is not None:
                    hook(record)
                key, value = record.key, record.value
                out.write(_LENGTH.pack(_NO_KEY if key is None else len(key)))
                if key is not None:
                    out.write(key)
                out.write(_LENGTH.pack(len(value)))
                out.write(value)
                if record.jsonl_ok:
                    lines.write(value + b"\n")
                    ledger.add(record, line)
                    line += 1
                else:
                    ledger.add(record, None)
    files.events_jsonl_bytes = files.events_jsonl.stat().st_size
    return files


def read_records(path: Path) -> Iterator[tuple[bytes | None, bytes]]:
    """The ``(key, value)`` records of a length-prefixed file, in order."""
    with path.open("rb") as handle:
        while header := handle.read(4):
            (length,) = _LENGTH.unpack(header)
            key = None if length == _NO_KEY else handle.read(length)
            (length,) = _LENGTH.unpack(handle.read(4))
            yield key, handle.read(length)


# -- checks ----------------------------------------------------------------------------------


@dataclass
class Findings:
    """What a check found: problems (empty when all is well) and the figures it measured."""

    problems: list[str] = field(default_factory=list)
    dead_letters: Counter = field(default_factory=Counter)
    applied: int = 0
    conversations: int = 0

    def problem(self, text: str) -> None:
        """Note a problem (the first few of a kind are enough to act on)."""
        if len(self.problems) < 50:
            self.problems.append(text)


def check_dead_letters(
    ledger: Ledger,
    letters: Iterable[dict],
    findings: Findings,
    *,
    by_line: bool,
    what: str,
) -> None:
    """Every bad record has exactly one dead letter, with an expected reason, and nothing else.

    ``by_line``: the replay's letters, matched by line number (``offset``);
    else a worker's, matched by key and value (Kafka offsets are the broker's).
    """
    pending = ledger.bad_by_line_digest if by_line else ledger.bad_by_digest
    pending = {digest: list(indexes) for digest, indexes in pending.items()}
    seen_where: set[tuple] = set()
    for letter in letters:
        code = letter["error"].split(":", 1)[0]
        findings.dead_letters[code] += 1
        where = (letter["topic"], letter["partition"], letter["offset"])
        if where in seen_where:
            findings.problem(f"{what}: two dead letters for {where}")
        seen_where.add(where)
        key = None if letter["key"] is None else base64.b64decode(letter["key"])
        value = base64.b64decode(letter["value"])
        digest = letter_digest(key, value)
        indexes = pending.get(digest)
        if by_line:
            line = letter["offset"]
            index = ledger.index_of_line[line] if 0 <= line < len(ledger.index_of_line) else None
            if index is None or not indexes or index not in indexes:
                fate = None if index is None else ledger.fate(index)
                findings.problem(
                    f"{what}: a dead letter ({code}) for line {line}, expected {fate!r}"
                )
                continue
            indexes.remove(index)
        else:
            match = next(
                (i for i in indexes or () if code in ledger.fate(i)),
                None,
            )
            if match is None:
                fates = sorted({str(sorted(ledger.fate(i))) for i in indexes or ()})
                findings.problem(
                    f"{what}: a dead letter ({letter['error'][:120]}) for no bad record "
                    f"with that key and value (same bytes expected: {fates or 'none'})"
                )
                continue
            indexes.remove(match)
            index = match
        fate = ledger.fate(index)
        if code not in fate:
            findings.problem(f"{what}: record {index} dead-lettered as {code}, expected {fate}")
    missing = [i for indexes in pending.values() for i in indexes]
    if missing:
        sample = [(i, sorted(ledger.fate(i))) for i in missing[:5]]
        findings.problem(f"{what}: {len(missing)} bad records without a dead letter, e.g. {sample}")


def check_applied(
    expected: Counter, outcomes: Iterable[dict], findings: Findings, what: str
) -> None:
    """Each conversation's latest outcome counts exactly the events that had to be applied."""
    latest: dict[str, dict] = {}
    for record in outcomes:
        latest[record["conversation_id"]] = record
    findings.conversations = len(latest)
    findings.applied = sum(r["counts"]["events"] for r in latest.values())
    missing = [c for c in expected if c not in latest]
    extra = [c for c in latest if c not in expected]
    wrong = [
        (c, latest[c]["counts"]["events"], n)
        for c, n in expected.items()
        if c in latest and latest[c]["counts"]["events"] != n
    ]
    if missing:
        findings.problem(f"{what}: {len(missing)} conversations without an outcome: {missing[:5]}")
    if extra:
        findings.problem(f"{what}: {len(extra)} unexpected conversations: {extra[:5]}")
    if wrong:
        findings.problem(
            f"{what}: {len(wrong)} conversations applied a wrong number of events "
            f"(id, applied, expected): {wrong[:5]}"
        )


def check_replay_results(files: FeedFiles, out: Path) -> Findings:
    """Check the five result files of ``botstream replay`` of the feed's JSONL files."""
    findings = Findings()
    letters = [orjson.loads(line) for line in (out / "dead_letters.jsonl").open("rb")]
    by_source: dict[str, list[dict]] = defaultdict(list)
    for letter in letters:
        by_source[letter["topic"]].append(letter)
    unknown = set(by_source) - {files.events_jsonl.name, files.plans_jsonl.name}
    if unknown:
        findings.problem(f"replay: dead letters from unknown sources {sorted(unknown)}")
    check_dead_letters(
        files.plans,
        by_source[files.plans_jsonl.name],
        findings,
        by_line=True,
        what="replay plans",
    )
    plan_letters = Counter(findings.dead_letters)
    findings.dead_letters.clear()
    check_dead_letters(
        files.events,
        by_source[files.events_jsonl.name],
        findings,
        by_line=True,
        what="replay events",
    )
    findings.dead_letters.update({f"plan {code}": n for code, n in plan_letters.items()})
    outcomes = (orjson.loads(line) for line in (out / "outcomes.jsonl").open("rb"))
    check_applied(files.events.applied_per_conversation(True), outcomes, findings, "replay")
    return findings


def duplicates_expected(ledger: Ledger, jsonl_only: bool = False) -> int:
    """How many records are exact redeliveries."""
    return ledger.counts(jsonl_only)[DUPLICATE]
