"""``botstream usage``, ``botstream stats`` and ``botstream alerts``: look at a live botstream.

``usage`` and ``stats`` ask a worker's read API (SPEC section 7) for one
account and month and print a readable view, or the record itself with
``--json``. Any worker will do: one that does not own the account forwards
the read to the one that does. The worker is ``--url``, else
``BOTSTREAM_WEB_URL``, else ``http://WEB_HOST:WEB_PORT`` from the settings
(``http://127.0.0.1:6066``). While a worker starts or the workers rebalance, an
account's partition may have no owner for a moment: the worker answers 503,
and the command retries for a few seconds before giving up.

``alerts`` reads the alerts topic itself, as any consumer of botstream's
outputs must: ``read_committed`` (never an alert of an aborted transaction),
every partition assigned to it, no consumer group (nothing is committed, and
it never takes partitions from another consumer). Its semantics:

* ``botstream alerts``: every alert committed so far, from the start of the
  topic (its retention is 30 days), then stop. "So far" is the end of each
  partition when the command started, so it always ends.
* ``botstream alerts --follow``: only alerts committed from now on, until
  Ctrl-C (exit status 0); with ``--from-beginning`` the earlier ones first.

Alerts come in log order per account (the topic is keyed by account);
different accounts interleave. Each alert is printed as the topic holds it:
botstream publishes each ``alert_id`` once, so there is nothing to deduplicate.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from botstream.commands.common import (
    add_api_flags,
    add_config_flag,
    add_kafka_flags,
    settings_from_args,
)
from botstream.config import Settings
from botstream.domain.timefmt import parse_month
from botstream.errors import BotstreamError, ConfigError, KafkaUnavailableError

USAGE_EXAMPLES = """\
examples:
  botstream usage acc-17                          # this month, from http://127.0.0.1:6066
  botstream usage acc-17 --month 2026-11
  botstream usage acc-17 --url http://worker-2:6066 --json | jq .remaining
  BOTSTREAM_WEB_URL=http://worker-2:6066 botstream usage acc-17

Asks a running worker (botstream worker) for the account's usage in a UTC
month: plan, pack, used of the limit, remaining, over the limit, and the time
of the latest charge. Any worker answers for any account. Workers started with
an API token want it too: export BOTSTREAM_API_TOKEN (or give --api-token).
"""

STATS_EXAMPLES = """\
examples:
  botstream stats acc-17                          # this month, from http://127.0.0.1:6066
  botstream stats acc-17 --month 2026-11 --json

Asks a running worker for the account's conversations by outcome, counted in
the month each conversation started (latest revision of each).
"""

ALERTS_EXAMPLES = """\
examples:
  botstream alerts                                # every committed alert, then stop
  botstream alerts --follow                       # new alerts as they come, until Ctrl-C
  botstream alerts --follow --from-beginning --json | jq -c 'select(.kind=="quota.exceeded")'
  botstream alerts --account acc-17 --bootstrap kafka:9092

Reads the alerts topic read_committed, without a consumer group. Without
--follow it prints the alerts committed when it started and stops; with
--follow it prints the alerts committed from then on (--from-beginning: the
earlier ones first) until Ctrl-C.
"""

#: How many times, and how far apart, a 503 (no owner for the partition yet) is retried.
RETRIES_ON_503 = 6
RETRY_PAUSE_S = 0.5
#: How long one HTTP request may take.
HTTP_TIMEOUT_S = 10.0
#: Width of the bars, in characters.
BAR_WIDTH = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``usage``, ``stats`` and ``alerts`` sub-commands."""
    for name, help_text, description, epilog, func in (
        (
            "usage",
            "show an account's usage of its monthly limit (read API)",
            "Show an account's chatbot conversations used this month against its plan limit.",
            USAGE_EXAMPLES,
            run_usage,
        ),
        (
            "stats",
            "show an account's conversations by outcome (read API)",
            "Show an account's conversations by outcome in a month, with their shares.",
            STATS_EXAMPLES,
            run_stats,
        ),
    ):
        parser = subparsers.add_parser(
            name,
            help=help_text,
            description=description,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("account", metavar="ACCOUNT", help="the account id")
        parser.add_argument(
            "--month", metavar="YYYY-MM", help="UTC month (default: the current one)"
        )
        parser.add_argument(
            "--url",
            metavar="URL",
            help="a worker's read API (default http://WEB_HOST:WEB_PORT, "
            "http://127.0.0.1:6066) [env BOTSTREAM_WEB_URL]",
        )
        parser.add_argument("--json", action="store_true", help="print the record as JSON")
        add_config_flag(parser)
        add_api_flags(parser)
        parser.set_defaults(func=func)

    alerts = subparsers.add_parser(
        "alerts",
        help="print quota alerts from the alerts topic",
        description="Print botstream's quota alerts, read_committed from the alerts topic.",
        epilog=ALERTS_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    alerts.add_argument(
        "--follow", action="store_true", help="keep printing new alerts until Ctrl-C"
    )
    alerts.add_argument(
        "--from-beginning",
        action="store_true",
        help="with --follow, print the committed alerts first (without --follow: always)",
    )
    alerts.add_argument("--account", metavar="ACCOUNT", help="only this account's alerts")
    alerts.add_argument("--json", action="store_true", help="one JSON object per line")
    add_config_flag(alerts)
    add_kafka_flags(alerts)
    alerts.set_defaults(func=run_alerts)


# -- the read API -------------------------------------------------------------------


def worker_url(args: argparse.Namespace, settings: Settings) -> str:
    """The read API to ask: ``--url``, else the settings' (``BOTSTREAM_WEB_URL``, host, port)."""
    url = args.url or settings.advertised_url
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in {"http", "https"} or not parsed.netloc:
        raise ConfigError(f"--url {url!r} is not an http:// or https:// URL")
    return url.rstrip("/")


def check_month(month: str | None) -> str | None:
    """``month`` if it is ``YYYY-MM`` (or None); a ConfigError otherwise."""
    if month is not None and parse_month(month) is None:
        raise ConfigError(f"--month {month!r} is not a month, YYYY-MM (example: 2026-11)")
    return month


def fetch_json(
    url: str,
    path: str,
    month: str | None = None,
    *,
    retries: int | None = None,
    pause_s: float | None = None,
    timeout_s: float | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """``GET url+path?month=...`` as a JSON object; every failure is a one-line BotstreamError.

    A 503 (the account's partition has no owner right now) is retried
    ``retries`` times, ``pause_s`` apart (default: :data:`RETRIES_ON_503`,
    :data:`RETRY_PAUSE_S`); one request may take ``timeout_s``
    (:data:`HTTP_TIMEOUT_S`). ``token`` is sent as ``Authorization: Bearer``.
    """
    import urllib.error  # here: the other commands (a replay) need not load them
    import urllib.request

    retries = RETRIES_ON_503 if retries is None else retries
    pause_s = RETRY_PAUSE_S if pause_s is None else pause_s
    timeout_s = HTTP_TIMEOUT_S if timeout_s is None else timeout_s
    target = url + path + ("?" + urllib.parse.urlencode({"month": month}) if month else "")
    # The read API is internal: connect directly, whatever proxy the environment sets.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(
        target, headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    for attempt in range(retries + 1):
        try:
            with opener.open(request, timeout=timeout_s) as response:
                body = response.read()
            break
        except urllib.error.HTTPError as exc:
            status, detail = exc.code, _error_detail(exc.read())
            if status == 503 and attempt < retries:
                time.sleep(pause_s)
                continue
            if status == 503:
                raise BotstreamError(
                    f"the worker at {url} cannot answer yet ({detail or 'no owner'}); "
                    "workers are starting or rebalancing, retry in a few seconds"
                ) from None
            if status == 400:
                raise ConfigError(f"the worker at {url} refused the request: {detail}") from None
            if status == 401:
                raise ConfigError(
                    f"the worker at {url} refused the API token (BOTSTREAM_API_TOKEN or "
                    "--api-token)"
                    if token
                    else f"the worker at {url} needs an API token: set BOTSTREAM_API_TOKEN "
                    "(or --api-token)"
                ) from None
            if status == 404:
                raise BotstreamError(
                    f"{target}: HTTP 404 (is {url} a botstream worker's read API?)"
                ) from None
            raise BotstreamError(
                f"the worker at {url} answered HTTP {status}" + (f": {detail}" if detail else "")
            ) from None
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                raise BotstreamError(
                    f"the worker at {url} did not answer within {timeout_s:g} s"
                ) from None
            raise BotstreamError(
                f"no botstream worker answers at {url} ({_reason(reason)}); "
                "start one with: botstream worker"
            ) from None
    try:
        record = json.loads(body)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise BotstreamError(f"the worker at {url} answered {target} with something not JSON")
    return record


def _error_detail(body: bytes) -> str:
    """The ``error`` of a JSON error body, else its first line (at most 200 characters)."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        error = None
    if not error:
        lines = body.decode(errors="replace").strip().splitlines()
        error = lines[0] if lines else ""
    return str(error)[:200]


def _reason(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    return str(getattr(reason, "strerror", None) or reason) or type(reason).__name__


def _read(args: argparse.Namespace, path: str) -> tuple[dict[str, Any], Settings]:
    if not args.account.strip():
        raise ConfigError("ACCOUNT must not be empty")
    month = check_month(args.month)
    settings = settings_from_args(args)
    url = worker_url(args, settings)
    account = urllib.parse.quote(args.account, safe="")
    return fetch_json(url, f"{path}/{account}", month, token=settings.api_token), settings


def run_usage(args: argparse.Namespace) -> int:
    """``botstream usage``: print an account's usage record of a month."""
    record, settings = _read(args, "/usage")
    if args.json:
        _print_json(record)
    else:
        _console().print(render_usage(record, settings.domain.warning_percent))
    return 0


def run_stats(args: argparse.Namespace) -> int:
    """``botstream stats``: print an account's conversations by outcome in a month."""
    record, _ = _read(args, "/stats")
    if args.json:
        _print_json(record)
    else:
        _console().print(render_stats(record))
    return 0


# -- rendering ----------------------------------------------------------------------


def bar(value: int, total: int, width: int = BAR_WIDTH) -> str:
    """``value`` of ``total`` as a bar of ``width`` characters (full when at or past it)."""
    share = (1 if value > 0 else 0) if total <= 0 else value / total
    filled = min(width, round(width * share))
    return "█" * filled + "░" * (width - filled)


def render_usage(record: dict[str, Any], warning_percent: int = 80):
    """A usage record as a few readable lines (a rich ``Text``; ``.plain`` without style)."""
    from rich.text import Text

    used, limit = record["used"], record["limit"]
    if used > limit:
        style = "bold red"
    elif used >= limit:
        style = "red"
    elif used * 100 >= warning_percent * limit:
        style = "yellow"
    else:
        style = "green"
    plan = record["plan"] + (" + chatbot pack" if record["chatbot_pack"] else ", no chatbot pack")
    share = f"{100 * used / limit:.0f}%" if limit > 0 else "—"
    text = Text()
    text.append(f"{record['account_id']}  {record['month']}  ", style="bold")
    text.append(f"plan {plan}\n")
    text.append(f"  used        {used:,} of {limit:,}  ")
    text.append(bar(used, limit), style=style)
    text.append(f"  {share}\n")
    text.append(f"  remaining   {record['remaining']:,}\n")
    text.append(
        f"  over limit  {record['over_limit']:,}\n", style="bold red" if used > limit else ""
    )
    text.append(f"  updated at  {record['updated_at']}")
    return text


def render_stats(record: dict[str, Any]):
    """A statistics record: each outcome's count, share and bar (a rich ``Text``)."""
    from rich.text import Text

    counts = {k: v for k, v in record.items() if k not in {"account_id", "month"}}
    total = sum(counts.values())
    width = max([len(name) for name in counts] + [len("total")])
    digits = len(f"{total:,}")
    text = Text()
    text.append(f"{record['account_id']}  {record['month']}  ", style="bold")
    text.append("conversations by outcome (by the month they started)\n")
    for name, count in counts.items():
        share = f"{100 * count / total:5.1f}%" if total else "     —"
        text.append(f"  {name:<{width}}  {count:>{digits},}  {share}  ")
        text.append(bar(count, total), style="cyan")
        text.append("\n")
    text.append(f"  {'total':<{width}}  {total:>{digits},}", style="bold")
    return text


def render_alert(alert: dict[str, Any]):
    """One alert as one line: time, kind, account, month, used/limit, conversation."""
    from rich.text import Text

    style = {
        "quota.warning": "yellow",
        "quota.limit_reached": "red",
        "quota.exceeded": "bold red",
    }.get(alert.get("kind"), "")
    text = Text()
    text.append(f"{alert.get('at', '?')}  ")
    text.append(f"{alert.get('kind', '?'):<19}", style=style)
    text.append(
        f"  {alert.get('account_id', '?'):<12}  {alert.get('month', '?')}  "
        f"{alert.get('used', '?')}/{alert.get('limit', '?')}  {alert.get('conversation_id', '?')}"
    )
    return text


def _console():
    """A console for stdout: colours on a terminal only (and never with NO_COLOR), no wrapping."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _print_json(record: dict[str, Any]) -> None:
    print(json.dumps(record, ensure_ascii=False), flush=True)


# -- alerts ---------------------------------------------------------------------------


def run_alerts(args: argparse.Namespace) -> int:
    """``botstream alerts``: print alerts from the alerts topic (see the module docstring)."""
    import asyncio

    settings = settings_from_args(args)
    # aiokafka logs each failed connection attempt; the one-line error says it all.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    if args.json:
        emit: Callable[[dict[str, Any]], None] = _print_json
    else:
        console = _console()

        def emit(alert: dict[str, Any]) -> None:
            console.print(render_alert(alert))
            sys.stdout.flush()

    try:
        count = asyncio.run(
            read_alerts(
                settings,
                emit,
                follow=args.follow,
                from_beginning=args.from_beginning or not args.follow,
                account=args.account,
            )
        )
    except KeyboardInterrupt:
        # Ctrl-C is how --follow ends: asyncio.run cancelled the reader, which
        # closed its consumer; nothing else to say.
        return 0
    except BrokenPipeError:
        # The reader of our output went away (``| head``): stop quietly.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if not args.json and not args.follow and sys.stderr.isatty():
        print(f"{count:,} alert{'s' if count != 1 else ''}", file=sys.stderr)
    return 0


async def read_alerts(
    settings: Settings,
    emit: Callable[[dict[str, Any]], None],
    *,
    follow: bool = False,
    from_beginning: bool = True,
    account: str | None = None,
    poll_ms: int = 500,
) -> int:
    """Pass each committed alert of the alerts topic to ``emit``; return how many.

    Without ``follow``, stops at the end offsets of the partitions when it
    started; with it, runs until cancelled. Records that are not JSON objects
    are reported on stderr and skipped.
    """
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    from botstream.kafka.topics import CONNECT_TIMEOUT_S, kafka_client_kwargs

    topic = settings.topics.alerts
    partitions = [TopicPartition(topic, p) for p in await topic_partitions(settings, topic)]
    consumer = AIOKafkaConsumer(
        **kafka_client_kwargs(settings),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        request_timeout_ms=int(CONNECT_TIMEOUT_S * 1000),
    )
    try:
        try:
            await asyncio.wait_for(consumer.start(), CONNECT_TIMEOUT_S)
        except Exception as exc:
            raise KafkaUnavailableError(
                f"cannot read from Kafka at {settings.bootstrap_servers} "
                f"({str(exc) or type(exc).__name__})"
            ) from None
        consumer.assign(partitions)
        if from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        if follow:
            for tp in partitions:
                await consumer.position(tp)  # resolve the starting offsets now
            print(
                f"botstream: following {topic} "
                f"({'from the beginning' if from_beginning else 'new alerts only'}); "
                "Ctrl-C to stop",
                file=sys.stderr,
                flush=True,
            )
        # read_committed: the end offsets are the last stable offsets, so the
        # snapshot holds no alert of a transaction still open.
        end = None if follow else await consumer.end_offsets(partitions)
        count = 0
        while True:
            wanted = partitions
            if end is not None:
                wanted = [tp for tp in partitions if await consumer.position(tp) < end[tp]]
                if not wanted:
                    return count
            batch = await consumer.getmany(*wanted, timeout_ms=poll_ms)
            for tp, records in sorted(batch.items()):
                for record in records:
                    if end is not None and record.offset >= end[tp]:
                        continue
                    alert = _decode(record)
                    if alert is None or (
                        account is not None and alert.get("account_id") != account
                    ):
                        continue
                    emit(alert)
                    count += 1
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()


async def topic_partitions(settings: Settings, topic: str) -> list[int]:
    """The partition ids of ``topic``; a one-line error when Kafka or the topic is missing.

    Asks for the list of every topic first: a metadata request naming a
    missing topic would create it on a cluster that creates topics on demand.
    """
    import asyncio

    from botstream.kafka.topics import CONNECT_TIMEOUT_S, admin_client

    async with admin_client(settings) as admin:
        try:
            if topic not in await asyncio.wait_for(admin.list_topics(), CONNECT_TIMEOUT_S):
                raise ConfigError(
                    f"topic {topic} does not exist; create it with: botstream topics create"
                )
            described = await asyncio.wait_for(admin.describe_topics([topic]), CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise KafkaUnavailableError(
                f"Kafka at {settings.bootstrap_servers} did not answer in time"
            ) from None
    ids = sorted(
        p["partition"]
        for entry in described
        if entry["topic"] == topic
        for p in entry["partitions"]
    )
    if not ids:
        raise KafkaUnavailableError(f"Kafka has no partition of topic {topic} to read")
    return ids


def _decode(record: Any) -> dict[str, Any] | None:
    try:
        value = json.loads(record.value) if record.value is not None else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        print(
            f"botstream: skipped a record that is not an alert "
            f"(partition {record.partition}, offset {record.offset})",
            file=sys.stderr,
        )
        return None
    return value
