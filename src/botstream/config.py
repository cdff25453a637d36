"""Runtime configuration: environment variables (``BOTSTREAM_*``) overridden by flags.

One :class:`Settings` object carries everything a command needs: where Kafka
is, how it is secured, the topic names and partition counts, and the
:class:`~botstream.domain.config.DomainConfig` of the business rules.
Every value is checked here, so a bad one fails as a one-line
:class:`~botstream.errors.ConfigError` before anything starts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from botstream.domain.config import DEFAULT_PLAN_LIMITS, DomainConfig
from botstream.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
#: An API token: long enough not to be guessed, and safe in a header and a cookie.
_API_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{16,256}")


def parse_duration_ms(text: str) -> int:
    """Parse ``90s``, ``30m``, ``7d``, ``250ms`` or plain seconds into milliseconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise ConfigError(f"{text!r} is not a duration (examples: 90s, 30m, 12h, 7d)")
    number, unit = match.groups()
    return int(float(number) * _UNIT_MS[unit or "s"])


def parse_plan_limits(text: str) -> dict[str, tuple[int, int]]:
    """Parse ``standard=100/500,pro=500/10000`` (limit without / with the chatbot pack)."""
    limits: dict[str, tuple[int, int]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, values = part.partition("=")
        without, slash, with_pack = values.partition("/")
        if not (
            sep
            and slash
            and name.strip()
            and without.strip().isdigit()
            and with_pack.strip().isdigit()
        ):
            raise ConfigError(f"{part!r} is not NAME=WITHOUT/WITH (example: standard=100/500)")
        limits[name.strip()] = (int(without), int(with_pack))
    if not limits:
        raise ConfigError("no plan given (example: standard=100/500,pro=500/10000)")
    return limits


@dataclass(frozen=True)
class TopicNames:
    """The names of every topic botstream reads or writes (SPEC section 2)."""

    events: str = "widget-events"
    plans: str = "account-plans"
    outcomes: str = "botstream-outcomes"
    usage: str = "botstream-usage"
    alerts: str = "botstream-alerts"
    dead_letters: str = "botstream-dead-letters"
    #: Internal: charges, statistics changes and plan changes, keyed by account,
    #: from the conversation and plan stages to the account stage.
    account_updates: str = "botstream-account-updates"
    #: Internal, compacted: the state of each stage, for recovery.
    conversations_changelog: str = "botstream-conversations-changelog"
    accounts_changelog: str = "botstream-accounts-changelog"
    #: Internal, compacted: which worker owns which account partition (read API routing).
    directory: str = "botstream-directory"


@dataclass(frozen=True)
class KafkaSecurity:
    """Client security settings, passed through to aiokafka unchanged."""

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None


@dataclass(frozen=True)
class Settings:
    """Everything a botstream command needs to run."""

    bootstrap_servers: str = "127.0.0.1:9092"
    app_id: str = "botstream"
    partitions: int = 4
    replication_factor: int = 1
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    #: How other workers reach this one's read API; by default built from the
    #: host and port (with this machine's name when listening on every interface).
    web_url: str | None = None
    data_dir: str = ".botstream-data"
    #: The bearer token the read API requires (None: open); see botstream.web.security.
    api_token: str | None = None
    #: Where the conversation stage keeps its conversations: ``memory`` or ``rocksdb``.
    store: str = "memory"
    topics: TopicNames = field(default_factory=TopicNames)
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    domain: DomainConfig = field(default_factory=DomainConfig)

    @property
    def advertised_url(self) -> str:
        """The URL other workers use to forward read requests to this one."""
        if self.web_url:
            return self.web_url.rstrip("/")
        host = self.web_host
        if host in {"0.0.0.0", "::", ""}:
            import socket

            host = socket.gethostname()
        return f"http://{host}:{self.web_port}"

    def with_prefix(self, prefix: str) -> Settings:
        """A copy whose topics and app id (so groups and transactional ids) start with ``prefix``.

        Copies with different prefixes share a cluster without seeing each other.
        """
        topics = TopicNames(
            **{f.name: prefix + getattr(self.topics, f.name) for f in fields(TopicNames)}
        )
        return replace(self, topics=topics, app_id=prefix + self.app_id)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some top-level fields replaced."""
        return replace(self, **changes)


# Environment variable -> (section, field, parser). Sections: "" (top level),
# "topics", "security", "domain".
_ENV: dict[str, tuple[str, str, Any]] = {
    "BOTSTREAM_BOOTSTRAP": ("", "bootstrap_servers", str),
    "BOTSTREAM_APP_ID": ("", "app_id", str),
    "BOTSTREAM_PARTITIONS": ("", "partitions", int),
    "BOTSTREAM_REPLICATION_FACTOR": ("", "replication_factor", int),
    "BOTSTREAM_WEB_HOST": ("", "web_host", str),
    "BOTSTREAM_WEB_PORT": ("", "web_port", int),
    "BOTSTREAM_WEB_URL": ("", "web_url", str),
    "BOTSTREAM_DATA_DIR": ("", "data_dir", str),
    "BOTSTREAM_API_TOKEN": ("", "api_token", str),
    "BOTSTREAM_STORE": ("", "store", str),
    "BOTSTREAM_SECURITY_PROTOCOL": ("security", "security_protocol", str),
    "BOTSTREAM_SASL_MECHANISM": ("security", "sasl_mechanism", str),
    "BOTSTREAM_SASL_USERNAME": ("security", "sasl_username", str),
    "BOTSTREAM_SASL_PASSWORD": ("security", "sasl_password", str),
    "BOTSTREAM_SSL_CAFILE": ("security", "ssl_cafile", str),
    "BOTSTREAM_SSL_CERTFILE": ("security", "ssl_certfile", str),
    "BOTSTREAM_SSL_KEYFILE": ("security", "ssl_keyfile", str),
    "BOTSTREAM_IDLE_TIMEOUT": ("domain", "idle_timeout_ms", parse_duration_ms),
    "BOTSTREAM_RETENTION": ("domain", "retention_ms", parse_duration_ms),
    "BOTSTREAM_MAX_CLOCK_SKEW": ("domain", "max_clock_skew_ms", parse_duration_ms),
    "BOTSTREAM_WARNING_PERCENT": ("domain", "warning_percent", int),
    "BOTSTREAM_PLAN_LIMITS": ("domain", "plan_limits", parse_plan_limits),
    "BOTSTREAM_DEFAULT_PLAN": ("domain", "default_plan", str),
    "BOTSTREAM_DEFAULT_PACK": ("domain", "default_pack", lambda v: _parse_bool(v)),
    "BOTSTREAM_MAX_EVENT_BYTES": ("domain", "max_event_bytes", int),
    "BOTSTREAM_HISTORY_MONTHS": ("domain", "history_months", int),
}
_ENV.update(
    {f"BOTSTREAM_TOPIC_{f.name.upper()}": ("topics", f.name, str) for f in fields(TopicNames)}
)

#: The flag (without dashes) that overrides each environment variable, for --help texts.
FLAG_FOR_ENV = {name: name.removeprefix("BOTSTREAM_").lower().replace("_", "-") for name in _ENV}


def _setting_name(env_name: str) -> str:
    """How to name a setting in a message: its flag and its environment variable."""
    return f"--{FLAG_FOR_ENV[env_name]} ({env_name})"


def _parse_bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{text!r} is not a boolean (use true or false)")


def load_settings(
    env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Build settings from environment variables, then flag overrides.

    ``overrides`` maps environment variable names (``BOTSTREAM_RETENTION``) to
    raw values as given on the command line; ``None`` values are ignored.
    """
    env = os.environ if env is None else env
    raw: dict[str, Any] = {k: v for k, v in env.items() if k in _ENV}
    unknown = sorted(k for k in env if k.startswith("BOTSTREAM_TOPIC_") and k not in _ENV)
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]}")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    sections: dict[str, dict[str, Any]] = {"": {}, "topics": {}, "security": {}, "domain": {}}
    for name, value in raw.items():
        section, attr, parse = _ENV[name]
        try:
            parsed = value if not isinstance(value, str) or parse is str else parse(value)
        except ConfigError as exc:
            raise ConfigError(f"{_setting_name(name)}: {exc}") from None
        except ValueError:
            raise ConfigError(f"{_setting_name(name)}: {value!r} is not a valid value") from None
        if isinstance(parsed, str) and not parsed.strip() and section != "security":
            raise ConfigError(f"{_setting_name(name)}: must not be empty")
        sections[section][attr] = parsed
    try:
        domain = DomainConfig(**{"plan_limits": dict(DEFAULT_PLAN_LIMITS), **sections["domain"]})
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    settings = Settings(
        topics=TopicNames(**sections["topics"]),
        security=KafkaSecurity(**sections["security"]),
        domain=domain,
        **sections[""],
    )
    if settings.partitions < 1:
        raise ConfigError(f"{_setting_name('BOTSTREAM_PARTITIONS')}: must be at least 1")
    if not 0 < settings.web_port < 65536:
        raise ConfigError(f"{_setting_name('BOTSTREAM_WEB_PORT')}: must be a TCP port (1-65535)")
    if settings.store not in ("memory", "rocksdb"):
        raise ConfigError(
            f"{_setting_name('BOTSTREAM_STORE')}: {settings.store!r} is not memory or rocksdb"
        )
    if settings.api_token is not None and not _API_TOKEN.fullmatch(settings.api_token):
        raise ConfigError(
            f"{_setting_name('BOTSTREAM_API_TOKEN')}: use 16 to 256 characters of A-Z a-z 0-9 "
            "and . _ ~ + / = - (make one with: python3 -c "
            "'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return settings
