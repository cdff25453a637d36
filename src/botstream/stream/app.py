"""The Faust application: the worker process, its stages, and the read API.

:func:`create_app` is the factory. The app hosts the three exactly-once stages
of :mod:`botstream.stream.topology` as a service, and serves SPEC section 7's
read API on its web server. Reads of an account are answered by the worker
that owns the account's partition of the account stage; any other worker
forwards the request there. Owners announce themselves on the compacted
``botstream-directory`` topic, which every worker follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import aiohttp
import faust
import mode
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faust.app.base import BootStrategy

from botstream.config import Settings
from botstream.domain.forecast import add_forecast
from botstream.domain.metering import empty_usage_record, usage_record
from botstream.domain.stats import stats_record
from botstream.domain.timefmt import month_of, parse_month
from botstream.kafka.partitioner import default_partition
from botstream.kafka.topics import kafka_client_kwargs
from botstream.stream.directory import Directory, announcement
from botstream.stream.metrics import StreamMetrics
from botstream.stream.topology import build_stages
from botstream.web.dashboard import add_dashboard
from botstream.web.security import forward_headers, install_security

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-Botstream-Forwarded"


def account_partition(account_id: str, partitions: int) -> int:
    """The partition of ``account_id`` in keyed topics (Kafka's default partitioner)."""
    return default_partition(account_id.encode(), partitions)


class Worker:
    """Everything one worker runs, independent of Faust (so tests can drive it)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = StreamMetrics()
        self.url = settings.advertised_url
        self.stages = build_stages(
            settings,
            metrics=self.metrics,
            clock=clock,
            on_account_partition=self._account_partition,
        )
        #: Who serves each partition of the account stage, as announced.
        self.directory = Directory()
        self._announcements: asyncio.Queue[tuple[bytes, bytes]] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._stopping = False

    async def start(self) -> None:
        """Start the stages, the directory follower and the announcer."""
        self._tasks = [
            asyncio.create_task(stage.run(), name=f"stage-{name}")
            for name, stage in self.stages.items()
        ]
        self._tasks.append(asyncio.create_task(self._follow_directory(), name="directory"))
        self._tasks.append(asyncio.create_task(self._announce(), name="announce"))

    async def stop(self) -> None:
        """Stop everything and wait for it (committed work stays committed)."""
        self._stopping = True
        for stage in self.stages.values():
            stage.stop()
        for task in self._tasks[len(self.stages) :]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def failed(self) -> BaseException | None:
        """The error of a stage that stopped unexpectedly, if any."""
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return None

    # -- ownership directory ----------------------------------------------------------

    def _account_partition(self, partition: int, generation: int, owned: bool) -> None:
        self._announcements.put_nowait(announcement(partition, self.url, generation, owned))

    async def _announce(self) -> None:
        producer = AIOKafkaProducer(**kafka_client_kwargs(self.settings), acks="all")
        await producer.start()
        try:
            while True:
                key, value = await self._announcements.get()
                await producer.send_and_wait(self.settings.topics.directory, value, key=key)
        finally:
            await producer.stop()

    async def _follow_directory(self) -> None:
        topic = self.settings.topics.directory
        consumer = AIOKafkaConsumer(
            **kafka_client_kwargs(self.settings),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(self.settings.partitions)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            async for record in consumer:
                self.directory.apply(record.key, record.value)
        finally:
            await consumer.stop()

    # -- reads ------------------------------------------------------------------------

    def account_views(self) -> dict[int, object]:
        """The account-stage state this worker serves reads from, by partition.

        Each view has ``plans`` (account -> plan history), ``usage`` ((account,
        month) -> :class:`~botstream.domain.metering.Usage`) and ``stats``
        (account -> month -> counts by outcome). Read them, never change them.
        """
        stage = self.stages["accounts"]
        if not stage.serves_reads:
            return {}
        return {partition: owned.task.view for partition, owned in stage.owned.items()}

    def owner_of(self, account_id: str) -> tuple[int, object | None]:
        """``(partition, local account view or None)`` for an account."""
        partition = account_partition(account_id, self.settings.partitions)
        return partition, self.account_views().get(partition)

    def usage(self, task, account_id: str, month: str) -> dict:
        """The usage record of an account and month, from the owning task, with its forecast."""
        config = self.settings.domain
        plans = task.plans.get(account_id)
        usage = task.usage.get((account_id, month))
        if usage is None:
            start, _ = parse_month(month)
            record = empty_usage_record(account_id, month, start, plans, config)
        else:
            record = usage_record(usage, plans, config)
        return add_forecast(record, plans, int(self.clock() * 1000), config)

    def stats(self, task, account_id: str, month: str) -> dict:
        """The statistics record of an account and month, from the owning task."""
        return stats_record(account_id, month, task.stats.get(account_id, {}).get(month))


def _faust_credentials(settings: Settings):
    kwargs = kafka_client_kwargs(settings)
    protocol = kwargs["security_protocol"]
    if protocol.startswith("SASL_"):
        return faust.SASLCredentials(
            username=kwargs["sasl_plain_username"],
            password=kwargs["sasl_plain_password"],
            mechanism=kwargs["sasl_mechanism"],
            ssl_context=kwargs.get("ssl_context"),
        )
    if protocol == "SSL":
        return faust.SSLCredentials(kwargs["ssl_context"])
    return None


class _BootStrategy(BootStrategy):
    """Faust runs the worker's lifecycle and web server, not a Kafka client of its own.

    Every Kafka client belongs to the stages. Without Faust's consumer (and the
    table recovery that waits on its group), the stages start as soon as the
    web server does, and a restarted worker does not first wait out its dead
    predecessor's session in a consumer group that does nothing.
    """

    def server(self):
        """The services a worker starts: sensors and the web server."""
        return self._chain(self.sensors(), self.web_server())


def create_app(settings: Settings, clock: Callable[[], float] = time.time) -> faust.App:
    """The Faust app of one botstream worker (see the module docstring)."""
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host}" for host in settings.bootstrap_servers.split(",")],
        broker_credentials=_faust_credentials(settings),
        web_host=settings.web_host,
        web_bind=settings.web_host,  # Faust's default binds every interface
        web_port=settings.web_port,
        web_enabled=True,
        store="memory://",
        datadir=settings.data_dir,
        autodiscover=False,
        topic_replication_factor=settings.replication_factor,
    )
    app.boot_strategy = _BootStrategy(app)
    worker = Worker(settings, clock)
    app.botstream = worker

    class StagesService(mode.Service):
        """Runs the exactly-once stages for as long as the Faust worker runs."""

        async def on_start(self) -> None:
            await worker.start()

        async def on_stop(self) -> None:
            await worker.stop()

        @mode.Service.task
        async def _watch(self) -> None:
            # A stage that dies takes the worker down: a supervisor restarts it,
            # and the new process resumes from what was committed.
            while not self.should_stop:
                if worker.failed is not None:
                    log.error("a stage stopped: %r; stopping the worker", worker.failed)
                    await app.crash(worker.failed)
                    return
                await asyncio.sleep(1)

    app.service(StagesService)
    _add_views(app, worker)
    add_dashboard(app, worker)
    install_security(app, settings)
    return app


def _add_views(app: faust.App, worker: Worker) -> None:
    @app.page("/health")
    async def health(web, request):
        owned = {name: sorted(stage.owned) for name, stage in worker.stages.items()}
        restoring = {
            name: {
                str(partition): {"restored": progress.restored, "total": progress.total}
                for partition, progress in stage.restoring.items()
            }
            for name, stage in worker.stages.items()
            if stage.restoring
        }
        status = "failed" if worker.failed is not None else "ok"
        return web.json(
            {"status": status, "url": worker.url, "partitions": owned, "restoring": restoring},
            status=200 if status == "ok" else 503,
        )

    @app.page("/metrics")
    async def metrics(web, request):
        return web.bytes(worker.metrics.exposition(), content_type="text/plain; version=0.0.4")

    @app.page("/usage/{account_id}")
    async def usage(web, request, account_id: str):
        return await _account_read(web, request, worker, account_id, worker.usage)

    @app.page("/stats/{account_id}")
    async def stats(web, request, account_id: str):
        return await _account_read(web, request, worker, account_id, worker.stats)


async def _account_read(web, request, worker: Worker, account_id: str, read) -> object:
    month = request.query.get("month") or month_of(int(worker.clock() * 1000))
    if parse_month(month) is None:
        return web.json({"error": f"month {month!r} is not YYYY-MM"}, status=400)
    partition, task = worker.owner_of(account_id)
    if task is not None:
        if task.expired(month):  # its usage and statistics expired (domain/history.py)
            error = f"month {month} is no longer kept: the history starts at {task.first_kept}"
            return web.json({"error": error}, status=410)
        return web.json(read(task, account_id, month))
    owner = worker.directory.owner(partition)
    if request.headers.get(FORWARDED_HEADER) or owner is None or owner == worker.url:
        return web.json(
            {"error": f"partition {partition} has no owner right now; retry"}, status=503
        )
    # The raw path: an account id may hold "/" (as %2F), which the decoded path loses.
    url = f"{owner}{request.rel_url.raw_path}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(
                url,
                params={"month": month},
                headers={FORWARDED_HEADER: worker.url, **forward_headers(worker.settings)},
            ) as response,
        ):
            body = await response.read()
            return web.bytes(body, content_type="application/json", status=response.status)
    except (TimeoutError, aiohttp.ClientError) as exc:
        with contextlib.suppress(Exception):
            log.warning("forwarding %s to %s failed: %s", request.path, owner, exc)
        return web.json({"error": f"owner {owner} did not answer; retry"}, status=503)
