"""The one registry of botstream's Kafka topics, and how clients connect to Kafka.

:func:`topic_specs` says what every topic of SPEC section 2 (plus the two
internal ones) should look like; :func:`ensure_topics` creates the missing
ones; :func:`kafka_client_kwargs` gives the connection and security arguments
that every aiokafka client of the project passes, so they all connect alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from botstream.config import Settings
from botstream.errors import ConfigError, KafkaUnavailableError

#: How long a command waits for an unreachable broker before giving up.
CONNECT_TIMEOUT_S = 15.0
#: How long the second look at a failed connection (to say why it failed) may take.
DIAGNOSE_TIMEOUT_S = 5.0

DAY_MS = 86_400_000
#: Retention of alerts, dead letters and the internal topics.
OUTPUT_RETENTION_MS = 30 * DAY_MS
#: Retention of widget events when botstream creates the topic (Kafka's own default).
EVENTS_RETENTION_MS = 7 * DAY_MS

_SECURITY_PROTOCOLS = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
_SASL_MECHANISMS = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}


@dataclass(frozen=True)
class TopicSpec:
    """How one topic should be created.

    ``retention_ms`` is None for compacted topics (they keep the last record
    of every key) and -1 for "forever". ``config`` holds the resulting topic
    configuration, as passed to the broker.
    """

    name: str
    partitions: int
    compacted: bool
    retention_ms: int | None
    config: dict[str, str] = field(default_factory=dict)
    replication_factor: int = 1

    @property
    def policy(self) -> str:
        """``compact``, or ``delete`` with its retention, for people."""
        if self.compacted:
            return "compact"
        if self.retention_ms is None or self.retention_ms < 0:
            return "delete, kept forever"
        return f"delete after {_duration(self.retention_ms)}"


def _duration(ms: int) -> str:
    if ms % DAY_MS == 0:
        return f"{ms // DAY_MS}d"
    if ms % 3_600_000 == 0:
        return f"{ms // 3_600_000}h"
    return f"{ms}ms"


def _spec(
    name: str, settings: Settings, *, compacted: bool = False, retention_ms: int | None = None
) -> TopicSpec:
    if compacted:
        config = {"cleanup.policy": "compact"}
    else:
        config = {"cleanup.policy": "delete", "retention.ms": str(retention_ms)}
    return TopicSpec(
        name=name,
        # Every topic gets the same count: Faust joins its streams and tables
        # partition by partition, so they must be co-partitioned.
        partitions=settings.partitions,
        compacted=compacted,
        retention_ms=None if compacted else retention_ms,
        config=config,
        replication_factor=settings.replication_factor,
    )


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic botstream reads or writes, as it should be created (SPEC section 2)."""
    names = settings.topics
    return [
        _spec(names.events, settings, retention_ms=EVENTS_RETENTION_MS),
        # Not compacted: compaction keeps only the latest record per account,
        # but a charge is priced by the plan in effect at its billable_at, so
        # an older record still matters to a late event. botstream keeps every
        # plan record in its own state; this topic is where that state can be
        # rebuilt from, so it keeps everything (plan records are few and small).
        _spec(names.plans, settings, retention_ms=-1),
        _spec(names.outcomes, settings, compacted=True),
        _spec(names.usage, settings, compacted=True),
        _spec(names.alerts, settings, retention_ms=OUTPUT_RETENTION_MS),
        _spec(names.dead_letters, settings, retention_ms=OUTPUT_RETENTION_MS),
        # Internal stream between the stages: every record counts, so delete
        # policy; the retention bounds how long a stopped worker may stay down
        # without losing a charge, a statistics change or a plan change.
        _spec(names.account_updates, settings, retention_ms=OUTPUT_RETENTION_MS),
        # Stage state for recovery: the last value of every key is what counts.
        _spec(names.conversations_changelog, settings, compacted=True),
        _spec(names.accounts_changelog, settings, compacted=True),
        _spec(names.directory, settings, compacted=True),
    ]


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection and security keyword arguments for any aiokafka client.

    ``bootstrap_servers``, ``security_protocol`` and, as the protocol needs
    them, ``sasl_mechanism``/``sasl_plain_username``/``sasl_plain_password``
    (also used for SCRAM) and an ``ssl_context`` built from the CA,
    certificate and key files.
    """
    security = settings.security
    protocol = (security.security_protocol or "PLAINTEXT").upper()
    if protocol not in _SECURITY_PROTOCOLS:
        raise ConfigError(
            f"BOTSTREAM_SECURITY_PROTOCOL: {security.security_protocol!r} is not one of "
            + ", ".join(sorted(_SECURITY_PROTOCOLS))
        )
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": protocol,
    }
    if protocol.startswith("SASL_"):
        mechanism = (security.sasl_mechanism or "PLAIN").upper()
        if mechanism not in _SASL_MECHANISMS:
            raise ConfigError(
                f"BOTSTREAM_SASL_MECHANISM: {security.sasl_mechanism!r} is not one of "
                + ", ".join(sorted(_SASL_MECHANISMS))
            )
        if not security.sasl_username or security.sasl_password is None:
            raise ConfigError(
                f"{protocol} needs BOTSTREAM_SASL_USERNAME and BOTSTREAM_SASL_PASSWORD"
            )
        kwargs.update(
            sasl_mechanism=mechanism,
            sasl_plain_username=security.sasl_username,
            sasl_plain_password=security.sasl_password,
        )
    if protocol.endswith("SSL"):
        from aiokafka.helpers import create_ssl_context

        if bool(security.ssl_certfile) != bool(security.ssl_keyfile):
            raise ConfigError("BOTSTREAM_SSL_CERTFILE and BOTSTREAM_SSL_KEYFILE go together")
        for name, path in (
            ("BOTSTREAM_SSL_CAFILE", security.ssl_cafile),
            ("BOTSTREAM_SSL_CERTFILE", security.ssl_certfile),
            ("BOTSTREAM_SSL_KEYFILE", security.ssl_keyfile),
        ):
            if path and not os.access(path, os.R_OK):
                raise ConfigError(f"{name}: cannot read {path}")
        try:
            kwargs["ssl_context"] = create_ssl_context(
                cafile=security.ssl_cafile or None,
                certfile=security.ssl_certfile or None,
                keyfile=security.ssl_keyfile or None,
            )
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            raise ConfigError(
                f"SSL files ({security.ssl_cafile or '-'}, {security.ssl_certfile or '-'}, "
                f"{security.ssl_keyfile or '-'}): not usable PEM files ({reason})"
            ) from None
    return kwargs


@dataclass(frozen=True)
class TopicStatus:
    """What :func:`ensure_topics` did with one topic."""

    spec: TopicSpec
    created: bool
    partitions: int


@contextlib.asynccontextmanager
async def admin_client(settings: Settings, timeout_s: float = CONNECT_TIMEOUT_S):
    """A started ``AIOKafkaAdminClient``; an unreachable broker is a KafkaUnavailableError."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        **kafka_client_kwargs(settings),
        client_id=f"{settings.app_id}-admin",
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        try:
            await asyncio.wait_for(admin.start(), timeout_s)
        except Exception as exc:
            raise await connection_error(settings, exc) from None
        yield admin
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def connection_error(
    settings: Settings, exc: BaseException, timeout_s: float = DIAGNOSE_TIMEOUT_S
) -> KafkaUnavailableError:
    """A one-line error saying why a client could not connect to Kafka.

    aiokafka reports a failed bootstrap as "Unable to bootstrap" (the cause
    goes to its log only), so when ``exc`` does not say why, one connection to
    the first bootstrap server is tried again, with the same settings, to find
    out: a refused password, an untrusted certificate, a listener that expects
    TLS or SASL... If that says nothing either, the error is the generic
    "cannot reach Kafka".
    """
    reason = _connection_failure(settings, exc)
    if reason is None:
        reason = await _diagnose(settings, timeout_s)
    if reason is None:
        return _unavailable(settings, exc)
    return KafkaUnavailableError(f"Kafka at {settings.bootstrap_servers}: {reason}")


async def _diagnose(settings: Settings, timeout_s: float) -> str | None:
    """Why one connection to the first bootstrap server fails, or None if it works.

    Like aiokafka's bootstrap, it connects (TLS, SASL) and asks for metadata.
    """
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    kwargs = kafka_client_kwargs(settings)
    host, _, port = kwargs.pop("bootstrap_servers").split(",")[0].strip().rpartition(":")
    if not port.isdigit():
        return None  # not host:port: the generic message shows the address
    try:
        conn = await asyncio.wait_for(
            create_conn(
                host.strip("[]") or "localhost",
                int(port),
                request_timeout_ms=int(timeout_s * 1000),
                **kwargs,
            ),
            timeout_s,
        )
    except Exception as exc:
        return _connection_failure(settings, exc)
    try:
        await asyncio.wait_for(conn.send(MetadataRequest([])), timeout_s)
    except Exception as exc:
        return _connection_failure(settings, exc)
    finally:
        conn.close()
    return None


def _connection_failure(settings: Settings, exc: BaseException) -> str | None:
    """What a connection error means, in words, or None when it does not say."""
    from aiokafka.errors import (
        KafkaConnectionError,
        SaslAuthenticationFailed,
        UnsupportedSaslMechanismError,
    )

    security = settings.security
    protocol = (security.security_protocol or "PLAINTEXT").upper()
    mechanism = (security.sasl_mechanism or "PLAIN").upper()
    if isinstance(exc, SaslAuthenticationFailed):
        return (
            f"authentication failed for user {security.sasl_username!r} ({mechanism}); "
            "check BOTSTREAM_SASL_USERNAME and BOTSTREAM_SASL_PASSWORD"
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        return f"the broker does not accept SASL mechanism {mechanism} (BOTSTREAM_SASL_MECHANISM)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = getattr(exc, "verify_message", None) or "verification failed"
        if exc.verify_code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
            return f"TLS: the broker's certificate is not valid for this host name ({detail})"
        if exc.verify_code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
            return f"TLS: the broker's certificate has expired ({detail})"
        trusted_by = (
            f"BOTSTREAM_SSL_CAFILE ({security.ssl_cafile})"
            if security.ssl_cafile
            else "the system's CAs (BOTSTREAM_SSL_CAFILE is not set)"
        )
        return f"TLS: the broker's certificate is not trusted by {trusted_by}: {detail}"
    if isinstance(exc, ssl.SSLError):
        return (
            f"TLS handshake failed ({getattr(exc, 'reason', None) or exc}); "
            "does the listener speak TLS? "
            f"(BOTSTREAM_SECURITY_PROTOCOL is {protocol})"
        )
    if isinstance(exc, KafkaConnectionError) and str(exc).endswith(" closed"):
        if protocol in {"PLAINTEXT", "SASL_PLAINTEXT"}:
            return (
                "the broker closed the connection at once; it may expect TLS "
                f"(BOTSTREAM_SECURITY_PROTOCOL is {protocol}: try SSL or SASL_SSL)"
            )
        if protocol == "SSL":
            return (
                "the broker closed the connection after the TLS handshake; it may expect "
                "SASL (BOTSTREAM_SECURITY_PROTOCOL is SSL: try SASL_SSL)"
            )
    return None


def _unavailable(settings: Settings, exc: BaseException) -> KafkaUnavailableError:
    from aiokafka.errors import KafkaConnectionError

    if isinstance(exc, TimeoutError):
        reason = "no answer in time"
    elif isinstance(exc, KafkaConnectionError):
        reason = "connection failed"
    else:
        reason = str(exc) or type(exc).__name__
    return KafkaUnavailableError(
        f"cannot reach Kafka at {settings.bootstrap_servers} ({reason}); "
        "start one with `botstream kafka start` or set --bootstrap"
    )


async def ensure_topics(
    settings: Settings,
    specs: Iterable[TopicSpec] | None = None,
    timeout_s: float = CONNECT_TIMEOUT_S,
) -> list[TopicStatus]:
    """Create the topics of ``specs`` (default: all of :func:`topic_specs`) that are missing.

    Idempotent: existing topics are left as they are, but one whose partition
    count differs from its spec is a ConfigError (botstream's stages rely on
    co-partitioned topics). Returns one status per spec, in order.
    """
    from aiokafka.admin import NewTopic
    from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

    specs = list(topic_specs(settings) if specs is None else specs)
    async with admin_client(settings, timeout_s) as admin:
        try:
            existing = await _partition_counts(admin, [s.name for s in specs], timeout_s)
            missing = [s for s in specs if s.name not in existing]
            if missing:
                response = await asyncio.wait_for(
                    admin.create_topics(
                        [
                            NewTopic(
                                name=s.name,
                                num_partitions=s.partitions,
                                replication_factor=s.replication_factor,
                                topic_configs=dict(s.config),
                            )
                            for s in missing
                        ],
                        timeout_ms=int(timeout_s * 1000),
                    ),
                    timeout_s,
                )
                for name, code, *rest in response.topic_errors:
                    error = for_code(code)
                    # Created meanwhile by someone else: compared below like any other.
                    if code and error is not TopicAlreadyExistsError:
                        message = rest[0] if rest and rest[0] else error.__name__
                        raise KafkaUnavailableError(f"cannot create topic {name}: {message}")
                existing = await _await_created(admin, specs, {s.name for s in missing}, timeout_s)
        except TimeoutError as exc:
            raise _unavailable(settings, exc) from None
        except KafkaError as exc:
            raise KafkaUnavailableError(f"Kafka at {settings.bootstrap_servers}: {exc}") from None
    created = {s.name for s in missing}
    statuses = [TopicStatus(s, s.name in created, existing.get(s.name, 0)) for s in specs]
    wrong = [st for st in statuses if st.partitions != st.spec.partitions]
    if wrong:
        details = ", ".join(
            f"{st.spec.name} has {st.partitions} (expected {st.spec.partitions})" for st in wrong
        )
        raise ConfigError(
            f"wrong number of partitions: {details}; set --partitions to match the "
            "existing topics, or recreate them"
        )
    return statuses


async def _partition_counts(admin: Any, names: list[str], timeout_s: float) -> dict[str, int]:
    """Partition count of each topic of ``names`` that exists."""
    from aiokafka.errors import UnknownTopicOrPartitionError

    described = await asyncio.wait_for(admin.describe_topics(names), timeout_s)
    counts: dict[str, int] = {}
    for topic in described:
        if topic["error_code"] == UnknownTopicOrPartitionError.errno:
            continue
        counts[topic["topic"]] = len(topic["partitions"])
    return counts


async def _await_created(
    admin: Any, specs: list[TopicSpec], created: set[str], timeout_s: float
) -> dict[str, int]:
    """Partition counts once the broker's metadata shows the topics just created.

    The controller confirms a creation before the broker's metadata cache has
    it; until then a new topic looks missing or has no partitions yet.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        counts = await _partition_counts(admin, [s.name for s in specs], timeout_s)
        if all(counts.get(name) for name in created):
            return counts
        if asyncio.get_running_loop().time() >= deadline:
            raise TimeoutError
        await asyncio.sleep(0.1)
