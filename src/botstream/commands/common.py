"""Flags shared by several commands, and turning them into :class:`Settings`.

Precedence, lowest first: built-in defaults, ``--config FILE`` (TOML), ``BOTSTREAM_*``
environment variables, flags.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from typing import Any

from botstream.config import FLAG_FOR_ENV, Settings, load_settings
from botstream.errors import ConfigError

_DOMAIN_FLAGS = {
    "BOTSTREAM_IDLE_TIMEOUT": "idle timeout that ends a silent conversation (default 30m)",
    "BOTSTREAM_RETENTION": "how long ended conversations are kept, in event time (default 7d)",
    "BOTSTREAM_MAX_CLOCK_SKEW": "how far past wall clock an event may push event time (5m)",
    "BOTSTREAM_WARNING_PERCENT": "usage percent of the limit that raises quota.warning (80)",
    "BOTSTREAM_PLAN_LIMITS": "monthly limits, NAME=WITHOUT/WITH pack, comma separated "
    "(default standard=100/500,pro=500/10000)",
    "BOTSTREAM_DEFAULT_PLAN": "plan of an account without plan record (standard)",
    "BOTSTREAM_DEFAULT_PACK": "whether that default plan has the chatbot pack (false)",
    "BOTSTREAM_MAX_EVENT_BYTES": "larger input records are dead letters (65536)",
    "BOTSTREAM_HISTORY_MONTHS": "months of account history kept: usage, statistics and "
    "plans of the latest month seen and the ones before it; 0 keeps all (13)",
}
_KAFKA_FLAGS = {
    "BOTSTREAM_BOOTSTRAP": "Kafka bootstrap servers host:port[,host:port]",
    "BOTSTREAM_PARTITIONS": "partitions of the topics botstream creates (4)",
    "BOTSTREAM_SECURITY_PROTOCOL": "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
    "BOTSTREAM_SASL_MECHANISM": "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
    "BOTSTREAM_SASL_USERNAME": "SASL user name",
    "BOTSTREAM_SASL_PASSWORD": "SASL password (prefer the environment variable)",
    "BOTSTREAM_SSL_CAFILE": "CA certificate file for SSL",
    "BOTSTREAM_SSL_CERTFILE": "client certificate file for SSL",
    "BOTSTREAM_SSL_KEYFILE": "client key file for SSL",
}


_WORKER_FLAGS = {
    "BOTSTREAM_APP_ID": "application id: prefix of consumer groups and transactional ids",
    "BOTSTREAM_WEB_HOST": "address the read API listens on (127.0.0.1)",
    "BOTSTREAM_WEB_PORT": "port of the read API (6066)",
    "BOTSTREAM_WEB_URL": "URL other workers use to reach this one's read API "
    "(default http://HOST:PORT)",
    "BOTSTREAM_DATA_DIR": "directory for the worker's local files (.botstream-data)",
    "BOTSTREAM_STORE": "where conversations are kept: memory, or rocksdb (on disk in the "
    "data directory, so a restart need not read the changelog) (memory)",
    "BOTSTREAM_API_TOKEN": "bearer token the read API requires, except /health "
    "(default: none; prefer the environment variable)",
}

_API_FLAGS = {
    "BOTSTREAM_API_TOKEN": "bearer token of the workers' read API (prefer the environment "
    "variable)",
}


def _add(group: argparse._ArgumentGroup, env_names: dict[str, str]) -> None:
    for env_name, text in env_names.items():
        flag = FLAG_FOR_ENV[env_name]
        group.add_argument(
            f"--{flag}",
            dest=f"env:{env_name}",
            metavar="VALUE",
            help=f"{text} [env {env_name}]",
        )


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    """``--config FILE``: a TOML file of settings, keys as the flags (``idle-timeout = "10m"``)."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help='TOML file of settings; keys are flag names, e.g. idle-timeout = "10m"',
    )


def add_domain_flags(parser: argparse.ArgumentParser) -> None:
    """Flags for the business rules (timeouts, limits, thresholds)."""
    _add(parser.add_argument_group("rules"), _DOMAIN_FLAGS)


def add_kafka_flags(parser: argparse.ArgumentParser) -> None:
    """Flags for reaching Kafka."""
    _add(parser.add_argument_group("kafka"), _KAFKA_FLAGS)


def add_worker_flags(parser: argparse.ArgumentParser) -> None:
    """Flags of a worker process (identity, read API)."""
    _add(parser.add_argument_group("worker"), _WORKER_FLAGS)


def add_api_flags(parser: argparse.ArgumentParser) -> None:
    """Flags of a client of the read API (the token)."""
    _add(parser.add_argument_group("read API"), _API_FLAGS)


def _config_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            table = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    env_for_flag = {flag: env for env, flag in FLAG_FOR_ENV.items()}
    values: dict[str, Any] = {}
    for key, value in table.items():
        env_name = env_for_flag.get(key.replace("_", "-"))
        if env_name is None:
            raise ConfigError(f"config file {path}: unknown setting {key!r}")
        values[env_name] = str(value).lower() if isinstance(value, bool) else str(value)
    return values


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from ``--config``, the environment and the flags of ``args``."""
    return load_settings(env=setting_values(args))


def setting_values(args: argparse.Namespace) -> dict[str, Any]:
    """The raw ``BOTSTREAM_*`` values of ``--config``, the environment and the flags, merged.

    As environment variables, they give a child process (a worker) the same settings.
    """
    merged: dict[str, Any] = {}
    if getattr(args, "config", None):
        merged.update(_config_file(args.config))
    merged.update({k: v for k, v in os.environ.items() if k in FLAG_FOR_ENV})
    merged.update(
        {
            key.removeprefix("env:"): value
            for key, value in vars(args).items()
            if key.startswith("env:") and value is not None
        }
    )
    return merged
