"""Securing the Kafka side without a broker: TLS material, broker settings, client errors.

The secured broker itself, and every command against it, are in
``tests/integration/test_secure_broker.py``; here are the pieces that need
no broker: the keytool-made CA and stores, the properties and format command
of a secured broker, the client environment, and how a failed connection is
put into words.
"""

from __future__ import annotations

import json
import os
import shlex
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from botstream.config import KafkaSecurity, Settings
from botstream.errors import ConfigError
from botstream.kafka import local_broker
from botstream.kafka.local_broker import (
    BrokerState,
    LocalKafka,
    TlsMaterial,
    ensure_tls,
    export_lines,
)
from botstream.kafka.topics import _connection_failure, connection_error, kafka_client_kwargs

SASL_SSL = KafkaSecurity(
    security_protocol="SASL_SSL",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="botstream",
    sasl_password="pw",
    ssl_cafile="/etc/botstream/ca.pem",
)


def _settings(security: KafkaSecurity = SASL_SSL) -> Settings:
    return Settings(bootstrap_servers="127.0.0.1:9", security=security)


# -- TLS material -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    """A CA and broker stores made with keytool (about 2 s)."""
    return ensure_tls(tmp_path_factory.mktemp("cache") / "tls")


def test_the_ca_is_pem_that_python_trusts(tls: TlsMaterial) -> None:
    context = ssl.create_default_context(cafile=str(tls.ca_pem))
    (ca,) = context.get_ca_certs()
    assert dict(item[0] for item in ca["subject"])["commonName"] == "botstream local CA"
    assert ca["subject"] == ca["issuer"]  # self-signed


def test_the_tls_directory_is_private(tls: TlsMaterial) -> None:
    assert tls.directory.stat().st_mode & 0o777 == 0o700
    for path in tls.directory.iterdir():
        public = path.name == "ca.pem"
        assert path.stat().st_mode & 0o077 == (0o044 if public else 0), path.name
    assert tls.password == (tls.directory / "store.password").read_text().strip()
    assert len(tls.password) >= 24


def test_the_broker_certificate_is_signed_by_the_ca_for_loopback(tls: TlsMaterial) -> None:
    keytool = local_broker.find_keytool()
    listing = subprocess.run(
        [keytool, "-list", "-v", "-keystore", str(tls.keystore), "-storepass", tls.password],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Owner: CN=localhost" in listing and "Issuer: CN=botstream local CA" in listing
    assert "IPAddress: 127.0.0.1" in listing and "DNSName: localhost" in listing
    assert "serverAuth" in listing and "clientAuth" in listing


def test_tls_material_is_reused_until_close_to_expiry(tls: TlsMaterial) -> None:
    again = ensure_tls(tls.directory)
    assert again.password == tls.password  # not made again
    made = json.loads((tls.directory / "made.json").read_text())
    renew_at = made["valid_days"] * 86_400 - local_broker._RENEW_BEFORE_S
    (tls.directory / "made.json").write_text(
        json.dumps({**made, "made_at": time.time() - renew_at - 60})
    )
    renewed = ensure_tls(tls.directory)
    assert renewed.password != tls.password
    assert ssl.create_default_context(cafile=str(renewed.ca_pem)).get_ca_certs()


# -- the secured broker's configuration -------------------------------------------------


def _configured(tmp_path: Path) -> LocalKafka:
    broker = LocalKafka(secure=True, work_dir=tmp_path)
    broker.tls = TlsMaterial(
        tmp_path, tmp_path / "ca.pem", tmp_path / "k.p12", tmp_path / "t.p12", "storepw"
    )
    broker.port, broker.controller_port = 19092, 19093
    return broker


def test_secured_properties_have_no_plaintext_listener(tmp_path: Path) -> None:
    text = _configured(tmp_path)._server_properties(tmp_path / "data")
    # Later lines win in a Java properties file: read it as the broker does.
    props: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            props[key] = value
    assert props["listeners"] == "SASL_SSL://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:19092"
    assert props["listener.security.protocol.map"] == "CONTROLLER:SSL,SASL_SSL:SASL_SSL"
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["ssl.keystore.location"] == str(tmp_path / "k.p12")
    assert (
        'username="kafka-broker"' in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    )
    assert "PLAINTEXT" not in props["listener.security.protocol.map"]


def test_plain_properties_stay_plain(tmp_path: Path) -> None:
    broker = LocalKafka(work_dir=tmp_path)
    broker.port, broker.controller_port = 19092, 19093
    text = broker._server_properties(tmp_path / "data")
    assert "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" in text
    assert "SASL" not in text and "ssl." not in text


def test_both_users_are_created_at_format_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []

    def run(command, **kwargs):
        seen.append(command)
        return subprocess.CompletedProcess(command, 0, b"", b"")

    monkeypatch.setattr(local_broker.subprocess, "run", run)
    broker = _configured(tmp_path)
    broker._format(["java", "-cp", "libs/*"], tmp_path / "server.properties", tmp_path)
    (command,) = seen
    scram = [command[i + 1] for i, arg in enumerate(command) if arg == "--add-scram"]
    users = {entry.split("name=")[1].split(",")[0]: entry for entry in scram}
    assert set(users) == {"botstream", "kafka-broker"}
    assert all(entry.startswith("SCRAM-SHA-512=[") for entry in scram)
    assert broker._passwords["botstream"] in users["botstream"]


def test_passwords_are_random_and_kept_across_restarts() -> None:
    one, two = LocalKafka(secure=True), LocalKafka(secure=True)
    assert one._passwords["botstream"] != two._passwords["botstream"]
    assert one._passwords["botstream"] != one._passwords["kafka-broker"]
    assert len(one._passwords["botstream"]) >= 24


def test_client_env_round_trips_through_the_export_file(tmp_path: Path) -> None:
    env = {
        "BOTSTREAM_BOOTSTRAP": "127.0.0.1:9092",
        "BOTSTREAM_SASL_PASSWORD": "it's $weird; `quoted`",
        "BOTSTREAM_SSL_CAFILE": "/a path/ca.pem",
    }
    path = tmp_path / "client.env"
    path.write_text(export_lines(env))
    state = BrokerState(
        pid=1,
        java_pid=None,
        bootstrap="127.0.0.1:9092",
        work_dir=str(tmp_path),
        log="",
        version="4.3.1",
        started_at=0.0,
        secure=True,
        client_env=str(path),
    )
    assert state.client_settings() == env
    # And a shell reads it the same way.
    shell = subprocess.run(
        ["sh", "-c", f'. {shlex.quote(str(path))}; printf %s "$BOTSTREAM_SASL_PASSWORD"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout == env["BOTSTREAM_SASL_PASSWORD"]


def test_kafka_env_without_a_broker(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "botstream", "kafka", "env"],
        env={**os.environ, "BOTSTREAM_CACHE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "no local Kafka broker runs" in done.stderr


# -- client settings and errors ---------------------------------------------------------


def test_an_unreadable_ca_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="BOTSTREAM_SSL_CAFILE: cannot read /nonexistent"):
        kafka_client_kwargs(_settings(KafkaSecurity("SSL", ssl_cafile="/nonexistent/ca.pem")))


def test_a_ca_file_that_is_not_pem_is_a_config_error(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="not usable PEM files"):
        kafka_client_kwargs(_settings(KafkaSecurity("SSL", ssl_cafile=str(junk))))


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    error.verify_code, error.verify_message = code, message
    return error


@pytest.mark.parametrize(
    ("security", "error", "words"),
    [
        (SASL_SSL, SaslAuthenticationFailed("invalid credentials"), "authentication failed for "
         "user 'botstream' (SCRAM-SHA-512); check BOTSTREAM_SASL_USERNAME and "
         "BOTSTREAM_SASL_PASSWORD"),
        (SASL_SSL, UnsupportedSaslMechanismError(), "does not accept SASL mechanism SCRAM-SHA-512"),
        (SASL_SSL, _verify_error(19, "self-signed certificate in certificate chain"),
         "not trusted by BOTSTREAM_SSL_CAFILE (/etc/botstream/ca.pem): self-signed"),
        (KafkaSecurity("SSL"), _verify_error(20, "unable to get local issuer certificate"),
         "not trusted by the system's CAs (BOTSTREAM_SSL_CAFILE is not set)"),
        (SASL_SSL, _verify_error(62, "Hostname mismatch"), "not valid for this host name"),
        (SASL_SSL, _verify_error(10, "certificate has expired"), "has expired"),
        (SASL_SSL, ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
         "TLS handshake failed"),
        (KafkaSecurity(), KafkaConnectionError("Connection at 127.0.0.1:9 closed"),
         "may expect TLS (BOTSTREAM_SECURITY_PROTOCOL is PLAINTEXT"),
        (KafkaSecurity("SSL"), KafkaConnectionError("Connection at 127.0.0.1:9 closed"),
         "may expect SASL"),
    ],
)  # fmt: skip
def test_connection_failures_in_words(
    security: KafkaSecurity, error: BaseException, words: str
) -> None:
    assert words in _connection_failure(_settings(security), error)


@pytest.mark.parametrize(
    "error",
    [KafkaConnectionError("Unable to bootstrap from [...]"), TimeoutError(), OSError("refused")],
)
def test_failures_that_say_nothing_are_left_to_the_diagnosis(error: BaseException) -> None:
    assert _connection_failure(_settings(), error) is None


async def test_nobody_listening_is_the_plain_unreachable_message() -> None:
    settings = Settings(bootstrap_servers=f"127.0.0.1:{local_broker.free_port()}")
    began = time.monotonic()
    error = await connection_error(settings, KafkaConnectionError("Unable to bootstrap"))
    assert time.monotonic() - began < 5
    assert str(error).startswith(f"cannot reach Kafka at {settings.bootstrap_servers}")
