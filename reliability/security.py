"""``python -m reliability security``: the secured broker, refused clients, the locked read API.

One run measures, on a local broker started with SASL_SSL (``LocalKafka(secure=True)``):

* how long the broker takes to start, and keytool to make a fresh CA and stores;
* ``botstream worker``, ``simulate``, ``alerts`` and ``demo`` with a wrong password,
  a CA that did not sign the broker's certificate, and a plaintext client: each
  must exit non-zero with one line on stderr, within 30 s (median and worst of
  ``--runs``);
* the right credentials: ``simulate`` sends ``--count`` events that a worker
  (with an API token) reads, and ``alerts`` prints what it committed;
* the read API of that worker: reads without, with a wrong and with the right
  token, and a list of hostile paths and queries, each answered with JSON and
  the expected status;
* the worker's log, at debug level, searched for the visitor id and message
  text of events sent for the purpose, and for the SASL password.

Figures go to the terminal and to the ``security`` block of ``docs/reliability.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import orjson

from reliability.report import machine, number, table, write_section

FAIL_WITHIN_S = 30.0
TOKEN = "reliability-token-" + uuid.uuid4().hex
VISITOR = "VISITOR-reliability-do-not-log"
MESSAGE = "MESSAGE-reliability-do-not-log"
COMMANDS = {
    "worker": ["worker"],
    "simulate": ["simulate", "--count", "10", "--quiet"],
    "alerts": ["alerts"],
    "demo": ["demo", "--no-live", "--duration", "5"],
}
#: Hostile requests (with the token) and the status each must get.
HOSTILE = [
    ("/usage/" + "a" * 129, 400),
    ("/usage/a%00b", 400),
    ("/usage/a%0Ab", 400),
    ("/usage/%FF%FE", 400),
    ("/usage/%ED%A0%80", 400),
    ("/usage/acc-1?month=2026-13", 400),
    ("/usage/acc-1?month=%D9%A2%D9%A0%D9%A2%D9%A6-%D9%A1%D9%A1", 400),
    ("/usage/acc-1?month=2026-01&month=2026-02", 400),
    ("/stats/acc-1?q=" + "x" * 300, 400),
    ("/usage/" + "b" * 1500, 414),
    ("/usage/acc-1?q=" + "y" * 7000, 414),
    ("/no/such/path", 404),
    ("/usage/", 404),
    ("/../../etc/passwd", 404),
]


def main(argv: list[str]) -> int:
    """Run the security section; 0 when every check held."""
    args = _parser().parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="botstream-security-"))
    from botstream.kafka.local_broker import LocalKafka, ensure_tls, generate_ca

    began = time.perf_counter()
    ensure_tls(work / "fresh-tls")
    keytool_s = time.perf_counter() - began
    other_ca = generate_ca(work / "other-ca", "other-ca-password", name="other CA")
    problems: list[str] = []
    with LocalKafka(secure=True) as broker:
        start_s = broker.timings["total_s"]
        print(f"security: secured broker at {broker.bootstrap} in {start_s:.1f} s", flush=True)
        env = _base_env(broker)
        refused = _refusals(env, other_ca, args.runs, work, problems)
        flow = asyncio.run(_with_credentials(broker, env, args.count, work, problems))
    markdown = _markdown(args, keytool_s, start_s, refused, flow, problems)
    print(markdown)
    if not args.no_doc:
        print(f"security: figures written to {write_section('security', markdown)}")
    for problem in problems:
        print(f"security: PROBLEM {problem}", file=sys.stderr)
    return 1 if problems else 0


def _base_env(broker) -> dict[str, str]:
    """This process's environment, without its settings, plus the broker's and isolated topics."""
    from botstream.config import TopicNames

    prefix = f"sec{uuid.uuid4().hex[:6]}-"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTSTREAM_")}
    env |= broker.client_env() | {"BOTSTREAM_APP_ID": prefix + "botstream"}
    for name, value in vars(TopicNames()).items():
        env[f"BOTSTREAM_TOPIC_{name.upper()}"] = prefix + value
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str, float]:
    began = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "botstream", *args],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=FAIL_WITHIN_S * 2,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return -1, "", "(hung)", time.perf_counter() - began
    return done.returncode, done.stdout, done.stderr, time.perf_counter() - began


def _refusals(env, other_ca: Path, runs: int, work: Path, problems: list[str]) -> list[tuple]:
    cases = {
        "wrong password": ({"BOTSTREAM_SASL_PASSWORD": "not-the-password"}, "authentication"),
        "untrusted CA": ({"BOTSTREAM_SSL_CAFILE": str(other_ca)}, "not trusted"),
        "plaintext client": ({"BOTSTREAM_SECURITY_PROTOCOL": "PLAINTEXT"}, "may expect TLS"),
    }
    rows = []
    for case, (changes, words) in cases.items():
        for command, args in COMMANDS.items():
            if command == "demo":
                args = [*args, "--dir", str(work / "demo")]
            times, lines = [], set()
            for _ in range(runs):
                code, _, stderr, took = _run(args, env | changes, work)
                times.append(took)
                lines.add(stderr.strip())
                if code == 0 or code == -1 or stderr.count("\n") != 1 or words not in stderr:
                    problems.append(f"{case}, {command}: exit {code}, stderr {stderr[-300:]!r}")
                if took >= FAIL_WITHIN_S:
                    problems.append(f"{case}, {command}: took {took:.1f} s")
            rows.append((case, command, statistics.median(times), max(times), lines.pop()))
            print(f"  {case:<16} {command:<9} {max(times):5.2f} s  {rows[-1][-1][:90]}")
    return rows


def _events(count_accounts: int, now_ms: int) -> list[tuple[bytes | None, bytes]]:
    from botstream.domain.timefmt import format_timestamp

    records = []
    for n in range(count_accounts):
        for i, kind in enumerate(("chatbot.triggered", "chatbot.button_clicked", "visitor.left")):
            event = {
                "event_id": f"e-rel-{n}-{i}",
                "type": kind,
                "occurred_at": format_timestamp(now_ms - 600_000 + n * 1000 + i * 100),
                "account_id": f"acc-rel-{n}",
                "conversation_id": f"c-rel-{n}",
                "visitor_id": VISITOR,
                "data": {"text": MESSAGE},
            }
            records.append((f"c-rel-{n}".encode(), orjson.dumps(event)))
    records.append((VISITOR.encode(), f'{{"visitor_id": "{VISITOR}", "{MESSAGE}'.encode()))
    return records


async def _with_credentials(broker, env, count: int, work: Path, problems: list[str]) -> dict:
    """Topics, a worker with an API token, simulate, alerts, the API's answers, the log."""
    from aiokafka import AIOKafkaProducer

    from botstream.config import load_settings
    from botstream.demo.processes import WorkerProcess
    from botstream.kafka.local_broker import free_port
    from botstream.kafka.topics import ensure_topics, kafka_client_kwargs

    flow: dict = {}
    settings_env = {k: v for k, v in env.items() if k.startswith("BOTSTREAM_")}
    settings = load_settings(env=settings_env)
    await ensure_topics(settings)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    worker_env = settings_env | {
        "BOTSTREAM_API_TOKEN": TOKEN,
        "BOTSTREAM_WEB_PORT": str(port),
        "BOTSTREAM_PLAN_LIMITS": "standard=3/6,pro=5/10",
        "BOTSTREAM_DATA_DIR": str(work / "worker-data"),
    }
    worker = WorkerProcess(
        ["worker", "--log-level", "debug"], worker_env, work / "worker.log", cwd=work
    )
    worker.start()
    try:
        began = time.perf_counter()
        while _get(url, "/health")[0] != 200:
            if not worker.running or time.perf_counter() - began > 90:
                problems.append(f"the worker did not start: {worker.log_tail()}")
                return flow
            await asyncio.sleep(0.5)
        flow["worker_ready_s"] = time.perf_counter() - began
        code, _, stderr, flow["simulate_s"] = _run(
            ["simulate", "--count", str(count), "--seed", "3", "--accounts", "3", "--quiet"],
            env,
            work,
        )
        if code != 0:
            problems.append(f"simulate with credentials: exit {code}: {stderr[-300:]}")
        producer = AIOKafkaProducer(**kafka_client_kwargs(settings), acks="all")
        await producer.start()
        try:
            for key, value in _events(4, int(time.time() * 1000)):
                await producer.send_and_wait(settings.topics.events, value, key=key)
        finally:
            await producer.stop()
        sent = await _records_in(settings, settings.topics.events)
        began = time.perf_counter()
        while True:
            status, body = _get(url, "/metrics", TOKEN)
            read = _metric(body, "botstream_events_in_total") if status == 200 else 0
            if read >= sent:
                break
            if time.perf_counter() - began > 120:
                problems.append(f"the worker read {read:.0f} of at least {sent} records")
                break
            await asyncio.sleep(0.5)
        flow["records_read"] = int(read)
        await asyncio.sleep(2)  # the last transactions of the account stage
        code, stdout, stderr, flow["alerts_s"] = _run(["alerts", "--json"], env, work)
        flow["alerts"] = len(stdout.splitlines())
        if code != 0 or not flow["alerts"]:
            problems.append(f"alerts with credentials: exit {code}, {flow['alerts']} alerts")
        flow["api"] = _api_checks(url, problems)
    finally:
        worker.stop()
    log = (work / "worker.log").read_text(errors="replace")
    flow["log_lines"] = len(log.splitlines())
    password = broker.client_credentials.password
    secrets = {"visitor id": VISITOR, "message text": MESSAGE, "SASL password": password}
    flow["leaks"] = {name: log.count(value) for name, value in secrets.items()}
    for name, found in flow["leaks"].items():
        if found:
            problems.append(f"the worker log holds the {name} {found} times")
    return flow


def _get(url: str, path: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url + path, headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def _metric(body: bytes, name: str) -> float:
    from botstream.stream.metrics import metric_total

    return metric_total(body.decode(), name) or 0.0


def _api_checks(url: str, problems: list[str]) -> dict:
    checks = {
        "no token": (None, 401),
        "wrong token": (TOKEN[:-1] + "x", 401),
        "token": (TOKEN, 200),
    }
    answers = {}
    for name, (token, want) in checks.items():
        status, _ = _get(url, "/usage/acc-rel-0", token)
        answers[name] = status
        if status != want:
            problems.append(f"read API, {name}: {status}, expected {want}")
    answers["health without token"] = _get(url, "/health")[0]
    good = 0
    for path, want in HOSTILE:
        status, body = _get(url, path, TOKEN)
        if status == want and _is_json_error(body):
            good += 1
        else:
            problems.append(f"read API {path[:60]}: {status} {body[:100]!r}, expected {want}")
    answers["hostile refused"] = f"{good} of {len(HOSTILE)}"
    return answers


async def _records_in(settings, topic: str) -> int:
    """How many records ``topic`` holds (the sum of its partitions' end offsets)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from botstream.kafka.topics import kafka_client_kwargs

    consumer = AIOKafkaConsumer(**kafka_client_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


def _is_json_error(body: bytes) -> bool:
    try:
        return set(orjson.loads(body)) == {"error"}
    except orjson.JSONDecodeError:
        return False


def _markdown(args, keytool_s, start_s, refused, flow, problems) -> str:
    rows = [
        (case, f"`{command}`", f"{median:.2f}", f"{worst:.2f}", f"`{line[:110]}`")
        for case, command, median, worst, line in refused
    ]
    api = flow.get("api", {})
    leaks = flow.get("leaks", {})
    lines = [
        "## Security",
        "",
        f"`python -m reliability security --runs {args.runs} --count {args.count}` ({machine()}).",
        "",
        f"* Secured broker (SASL_SSL, SCRAM-SHA-512, TLS) ready in {start_s:.1f} s; "
        f"keytool makes a fresh CA and stores in {keytool_s:.1f} s (first start only).",
        "* Refused clients: exit status 2, one line on stderr, seconds from start to exit "
        f"(median and worst of {args.runs}; the limit is {FAIL_WITHIN_S:.0f} s):",
        "",
        table(rows, ("case", "command", "median s", "worst s", "stderr")),
        "",
        "* With the right credentials: a worker answering in "
        f"{flow.get('worker_ready_s', 0):.1f} s, "
        f"`simulate` sent {number(args.count)} events in {flow.get('simulate_s', 0):.1f} s, the "
        f"worker read {number(flow.get('records_read', 0))} records, and `alerts` printed "
        f"{flow.get('alerts', 0)} alerts in {flow.get('alerts_s', 0):.1f} s.",
        "* Read API with a token: " + ", ".join(f"{k} {v}" for k, v in api.items()) + " "
        "(hostile paths and queries answered with a JSON error and the expected status).",
        f"* The worker's log at debug level ({number(flow.get('log_lines', 0))} lines): "
        + ", ".join(f"{name} found {count} times" for name, count in leaks.items())
        + ".",
        "",
        "Problems: " + ("; ".join(problems) if problems else "none."),
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reliability security",
        description="The secured broker, refused clients and the locked read API, with figures.",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each refused command")
    parser.add_argument("--count", type=int, default=5000, help="events simulate sends")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/reliability.md")
    return parser
