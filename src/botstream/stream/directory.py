"""Which worker serves which partition of the account stage (the read API's routing).

Workers announce on the compacted ``botstream-directory`` topic each time they
start or stop serving a partition, with the consumer group's generation of the
assignment. Announcements can arrive late and out of order (a worker that was
paused, a slow producer), so the newest generation wins, never the latest
record: a stale "I own it" from a previous owner cannot point readers back at
it. Each worker's claim on a partition has a key of its own, so compaction
keeps every worker's last word rather than whichever was written last.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(frozen=True, slots=True)
class Claim:
    """One worker's last announcement about one partition."""

    url: str
    generation: int
    owned: bool


def announcement(partition: int, url: str, generation: int, owned: bool) -> tuple[bytes, bytes]:
    """The directory record ``(key, value)`` saying that ``url`` starts or stops serving."""
    key = f"{partition}@{url}".encode()
    value = orjson.dumps(
        {"partition": partition, "url": url, "generation": generation, "owned": owned}
    )
    return key, value


class Directory:
    """The directory as read from the topic: the newest claim of each partition wins."""

    def __init__(self) -> None:
        self._claims: dict[int, dict[str, Claim]] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Take one directory record into account (malformed ones are ignored)."""
        if key is None or value is None:
            return
        try:
            data = orjson.loads(value)
            url = str(data["url"])
            if "partition" in data:
                partition = int(data["partition"])
                claim = Claim(url, int(data["generation"]), bool(data["owned"]))
            else:  # the earlier format: key = partition, the latest record won
                partition = int(key)
                claim = Claim(url, -1, True)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return
        self._claims.setdefault(partition, {})[url] = claim

    def owner(self, partition: int) -> str | None:
        """The URL serving ``partition``, or None while nobody is known to."""
        claims = self._claims.get(partition)
        if not claims:
            return None
        # On equal generations an "owned" claim beats a retraction: the retraction
        # is the previous owner's, made as the group moved to that generation.
        newest = max(claims.values(), key=lambda claim: (claim.generation, claim.owned))
        return newest.url if newest.owned else None

    def owners(self) -> dict[int, str]:
        """Every partition with a known owner, and its URL."""
        found = {partition: self.owner(partition) for partition in self._claims}
        return {partition: url for partition, url in found.items() if url is not None}
