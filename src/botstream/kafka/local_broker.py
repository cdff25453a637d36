"""A real single-node Apache Kafka broker, started by botstream itself.

Used by ``botstream kafka start``, ``botstream demo`` and the integration
tests, on machines without Docker. It needs Java 17+ and, on the first run
only, Maven:

1. :func:`resolve_jars` copies the jars listed in the packaged ``pom.xml``
   (Kafka and a logging backend) into ``<cache>/kafka-<version>/libs`` with
   ``mvn dependency:copy-dependencies``; a marker file makes later runs skip
   Maven entirely.
2. :class:`LocalKafka` formats a KRaft storage directory with a random cluster
   id and starts ``kafka.Kafka`` as combined broker and controller on
   127.0.0.1, waits until it answers metadata requests and hands out the
   bootstrap address.

The JVM must never outlive whoever started it (unless asked to, see
:func:`start_detached`). It runs under a tiny watchdog process (this module
run with ``python -m``) in its own process group: the watchdog stops the JVM
cleanly when the parent process disappears, even after SIGKILL, and the JVM
itself gets SIGKILL from the kernel if the watchdog dies
(``PR_SET_PDEATHSIG``). The parent also stops its brokers at exit and on
SIGTERM/SIGHUP.

:meth:`LocalKafka.restart` stops the broker (cleanly, or with SIGKILL) and
starts it again on the same ports and data directory, for fault tests.

``secure=True`` (``botstream kafka start --secure``) starts it with one
SASL_SSL listener instead of the plaintext one: SCRAM-SHA-512 users created
when the storage is formatted, and TLS with a broker certificate signed by a
local CA that :func:`ensure_tls` makes with the JDK's ``keytool`` and exports
as PEM, which is all Python's ``ssl`` needs to trust it
(:attr:`LocalKafka.client_credentials` says what a client must set).

The cache directory is ``$BOTSTREAM_CACHE_DIR``, else
``$XDG_CACHE_HOME/botstream``, else ``~/.cache/botstream``.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from botstream.errors import BrokerSetupError

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
SERVER_PROPERTIES = HERE / "server.properties"
SECURE_PROPERTIES = HERE / "secure.properties"
LOG4J2_PROPERTIES = HERE / "log4j2.properties"

DEFAULT_PORT = 9092
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
MAVEN_TIMEOUT_S = 900.0
#: Kafka 4.x brokers are built for Java 17.
MIN_JAVA = 17

_WATCHDOG_POLL_S = 0.5
_MARKER = ".complete"
_STATE_FILE = "broker.json"
#: Present in the work directory while :meth:`LocalKafka.restart` stops the broker.
_KEEP_DATA = "keep-data"
_CLIENT_ENV_FILE = "broker-client.env"

#: How clients of the secured broker authenticate, and as whom.
SECURITY_PROTOCOL = "SASL_SSL"
SCRAM_MECHANISM = "SCRAM-SHA-512"
CLIENT_USER = "botstream"
#: The broker's own user, for its connections to itself (inter-broker listener).
BROKER_USER = "kafka-broker"
#: Lifetime of the local CA and of the broker certificate it signs; renewed a month early.
CA_VALIDITY_DAYS = 3650
CERT_VALIDITY_DAYS = 825
_RENEW_BEFORE_S = 30 * 86_400


# --------------------------------------------------------------------------- jars


def kafka_version(pom: Path = POM) -> str:
    """The Kafka version pinned in the packaged ``pom.xml`` (its ``kafka.version``)."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ElementTree.parse(pom).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise BrokerSetupError(f"{pom} has no kafka.version property")
    return node.text.strip()


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """botstream's cache directory (jars, detached broker state), not created here."""
    env = os.environ if env is None else env
    if env.get("BOTSTREAM_CACHE_DIR"):
        return Path(env["BOTSTREAM_CACHE_DIR"]).expanduser()
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "botstream"


def _pom_digest(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def jars_dir(cache: Path | None = None) -> Path:
    """Where :func:`resolve_jars` puts the jars of the pinned Kafka version."""
    return (cache or cache_dir()) / f"kafka-{kafka_version()}" / "libs"


def jars_ready(cache: Path | None = None) -> bool:
    """Whether the jars are cached already (a run would not call Maven)."""
    marker = jars_dir(cache) / _MARKER
    try:
        return marker.read_text().strip() == _pom_digest(POM)
    except OSError:
        return False


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock, so that two processes never fetch the jars at once."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def resolve_jars(cache: Path | None = None) -> Path:
    """Return the directory of Kafka's jars, fetching them with Maven on the first run.

    The jars are copied to a fresh directory that is renamed into place only
    after Maven succeeded and the marker was written, so an interrupted fetch
    never leaves a half-filled ``libs`` that looks complete.
    """
    libs = jars_dir(cache)
    digest = _pom_digest(POM)
    if jars_ready(cache):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerSetupError(
            "mvn not found: Maven is needed once to fetch the Kafka jars "
            "(install it, e.g. apt-get install maven)"
        )
    base = libs.parent
    base.mkdir(parents=True, exist_ok=True)
    with _file_lock(base / ".lock"):
        if jars_ready(cache):  # another process fetched them while we waited
            return libs
        version = kafka_version()
        print(f"fetching Kafka {version} jars (first run only)...", file=sys.stderr, flush=True)
        # Maven runs on a copy: the packaged pom may sit in a read-only site-packages.
        shutil.copyfile(POM, base / "pom.xml")
        staging = Path(tempfile.mkdtemp(prefix="libs.", dir=base))
        staging.chmod(0o755)  # mkdtemp makes it private; the jars are not secret
        log = base / "maven.log"
        command = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(base / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        try:
            with open(log, "wb") as out:
                result = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=MAVEN_TIMEOUT_S,
                    check=False,
                )
        except subprocess.TimeoutExpired:
            shutil.rmtree(staging, ignore_errors=True)
            raise BrokerSetupError(
                f"fetching the Kafka jars took over {MAVEN_TIMEOUT_S:g} s; see {log}"
            ) from None
        if result.returncode != 0 or not (staging / f"kafka_2.13-{version}.jar").exists():
            shutil.rmtree(staging, ignore_errors=True)
            raise BrokerSetupError(
                f"fetching the Kafka jars with Maven failed (exit {result.returncode}); see {log}"
            )
        (staging / _MARKER).write_text(digest + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
    return libs


# --------------------------------------------------------------------------- java


def find_java() -> str:
    """The ``java`` to run: ``$JAVA_HOME/bin/java``, else the one on ``PATH``."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home, "bin", "java"), os.X_OK):
        return str(Path(java_home, "bin", "java"))
    java = shutil.which("java")
    if java is None:
        raise BrokerSetupError(
            f"java not found: the local Kafka broker needs Java {MIN_JAVA} or newer "
            "(install it, e.g. apt-get install openjdk-17-jre-headless, or set JAVA_HOME)"
        )
    return java


def _check_java(java: str) -> None:
    try:
        result = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerSetupError(f"{java} -version failed: {exc}") from None
    # 'openjdk version "17.0.15" 2025-04-15' or, for Java 8, '"1.8.0_392"'.
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr)
    if not match:
        return  # an unusual build: let the broker itself complain if it must
    major = int(match.group(2) if match.group(1) == "1" else match.group(1))
    if major < MIN_JAVA:
        raise BrokerSetupError(
            f"Kafka {kafka_version()} needs Java {MIN_JAVA} or newer, {java} is Java {major}"
        )


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class TlsMaterial:
    """The local CA and the broker's key and trust stores (PKCS12), see :func:`ensure_tls`."""

    directory: Path
    #: The CA certificate in PEM, for clients (``BOTSTREAM_SSL_CAFILE``).
    ca_pem: Path
    #: The broker's key and its certificate chain, signed by the CA.
    keystore: Path
    #: The CA alone, for the broker's own connections (to itself, to the controller).
    truststore: Path
    password: str


def find_keytool(java: str | None = None) -> str:
    """The JDK's ``keytool``: next to ``java`` (``$JAVA_HOME/bin``), else on ``PATH``."""
    beside = Path(java or find_java()).resolve().parent / "keytool"
    if os.access(beside, os.X_OK):
        return str(beside)
    keytool = shutil.which("keytool")
    if keytool is None:
        raise BrokerSetupError(
            "keytool not found: the secured local broker makes its certificates with the "
            "JDK's keytool (install a JDK, e.g. apt-get install openjdk-17-jdk-headless)"
        )
    return keytool


def _keytool(keytool: str, *args: str) -> None:
    # A short-lived tool: the quick JIT tier and the serial collector start it
    # in a fraction of the time (0.2 s instead of 0.9 s a call).
    quick = ["-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC", "-J-XX:-UsePerfData"]
    try:
        result = subprocess.run(
            [keytool, *quick, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerSetupError(f"keytool {args[0]} failed: {exc}") from None
    if result.returncode != 0:
        lines = (result.stdout + result.stderr).strip().splitlines()
        raise BrokerSetupError(
            f"keytool {args[0]} failed (exit {result.returncode})"
            + (f": {lines[-1][:200]}" if lines else "")
        )


def generate_ca(
    directory: Path, password: str, *, name: str = "botstream local CA", keytool: str | None = None
) -> Path:
    """Make a self-signed CA in ``directory`` (``ca.p12`` and ``ca.pem``); return ``ca.pem``."""
    keytool = keytool or find_keytool()
    directory.mkdir(parents=True, exist_ok=True)
    store = directory / "ca.p12"
    _keytool(
        keytool, "-genkeypair", "-alias", "ca", "-keyalg", "EC", "-groupname", "secp256r1",
        "-dname", f"CN={name}", "-ext", "bc:c=ca:true", "-ext", "ku:c=keyCertSign,cRLSign",
        "-validity", str(CA_VALIDITY_DAYS), "-keystore", str(store), "-storetype", "PKCS12",
        "-storepass", password, "-keypass", password,
    )  # fmt: skip
    pem = directory / "ca.pem"
    _keytool(
        keytool, "-exportcert", "-alias", "ca", "-rfc", "-file", str(pem),
        "-keystore", str(store), "-storepass", password,
    )  # fmt: skip
    return pem


def _make_tls(directory: Path, keytool: str) -> None:
    """The CA, the broker's key signed by it (for 127.0.0.1 and localhost), both stores."""
    password = secrets.token_urlsafe(24)
    ca_pem = generate_ca(directory, password, keytool=keytool)
    ca_store, keystore = directory / "ca.p12", directory / "broker.p12"
    common = ["-storepass", password]
    _keytool(
        keytool, "-genkeypair", "-alias", "broker", "-keyalg", "EC", "-groupname", "secp256r1",
        "-dname", "CN=localhost", "-validity", str(CERT_VALIDITY_DAYS),
        "-keystore", str(keystore), "-storetype", "PKCS12", "-keypass", password, *common,
    )  # fmt: skip
    csr, signed = directory / "broker.csr", directory / "broker.pem"
    _keytool(keytool, "-certreq", "-alias", "broker", "-file", str(csr),
             "-keystore", str(keystore), *common)  # fmt: skip
    # serverAuth for clients, clientAuth for the broker's connections to the controller.
    _keytool(
        keytool, "-gencert", "-alias", "ca", "-infile", str(csr), "-outfile", str(signed),
        "-rfc", "-validity", str(CERT_VALIDITY_DAYS), "-ext", "san=ip:127.0.0.1,dns:localhost",
        "-ext", "ku:c=digitalSignature,keyEncipherment", "-ext", "eku=serverAuth,clientAuth",
        "-keystore", str(ca_store), *common,
    )  # fmt: skip
    for alias, cert in (("ca", ca_pem), ("broker", signed)):
        _keytool(keytool, "-importcert", "-noprompt", "-alias", alias, "-file", str(cert),
                 "-keystore", str(keystore), *common)  # fmt: skip
    _keytool(
        keytool, "-importcert", "-noprompt", "-alias", "ca", "-file", str(ca_pem),
        "-keystore", str(directory / "truststore.p12"), "-storetype", "PKCS12", *common,
    )  # fmt: skip
    csr.unlink()
    (directory / "store.password").write_text(password + "\n")
    (directory / "made.json").write_text(
        json.dumps({"made_at": time.time(), "valid_days": CERT_VALIDITY_DAYS}) + "\n"
    )
    for path in directory.iterdir():  # private, but for the CA certificate clients read
        path.chmod(0o644 if path.name == "ca.pem" else 0o600)


def _tls_fresh(directory: Path) -> bool:
    try:
        made = json.loads((directory / "made.json").read_text())
        age_s = time.time() - float(made["made_at"])
        names = ("ca.pem", "broker.p12", "truststore.p12", "store.password")
        present = all((directory / name).is_file() for name in names)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return present and age_s < float(made["valid_days"]) * 86_400 - _RENEW_BEFORE_S


def tls_dir(cache: Path | None = None) -> Path:
    """Where :func:`ensure_tls` keeps the local CA and the broker's stores."""
    return (cache or cache_dir()) / "tls"


def ensure_tls(directory: Path | None = None, keytool: str | None = None) -> TlsMaterial:
    """The local CA and broker stores, made with keytool on first use (and a month before expiry).

    The directory is private (0700): it holds the CA's key. Made in a staging
    directory renamed into place, under a lock, so concurrent starts share one set.
    """
    directory = directory or tls_dir()
    directory.parent.mkdir(parents=True, exist_ok=True)
    if not _tls_fresh(directory):
        with _file_lock(directory.parent / ".tls.lock"):
            if not _tls_fresh(directory):
                staging = Path(tempfile.mkdtemp(prefix="tls.", dir=directory.parent))
                try:
                    _make_tls(staging, keytool or find_keytool())
                except BaseException:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
                shutil.rmtree(directory, ignore_errors=True)
                staging.rename(directory)  # mkdtemp made it 0700
    return TlsMaterial(
        directory=directory,
        ca_pem=directory / "ca.pem",
        keystore=directory / "broker.p12",
        truststore=directory / "truststore.p12",
        password=(directory / "store.password").read_text().strip(),
    )


@dataclass(frozen=True)
class ClientCredentials:
    """What a client of the secured broker must set, as ``BOTSTREAM_*`` settings."""

    bootstrap: str
    username: str
    password: str
    cafile: str
    security_protocol: str = SECURITY_PROTOCOL
    mechanism: str = SCRAM_MECHANISM

    def env(self) -> dict[str, str]:
        """The ``BOTSTREAM_*`` environment variables (bootstrap included)."""
        return {
            "BOTSTREAM_BOOTSTRAP": self.bootstrap,
            "BOTSTREAM_SECURITY_PROTOCOL": self.security_protocol,
            "BOTSTREAM_SASL_MECHANISM": self.mechanism,
            "BOTSTREAM_SASL_USERNAME": self.username,
            "BOTSTREAM_SASL_PASSWORD": self.password,
            "BOTSTREAM_SSL_CAFILE": self.cafile,
        }

    def client_kwargs(self) -> dict[str, Any]:
        """aiokafka keyword arguments for this broker (used by the readiness probe)."""
        import ssl

        return {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
            "sasl_mechanism": self.mechanism,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password,
            "ssl_context": ssl.create_default_context(cafile=self.cafile),
        }


def export_lines(env: Mapping[str, str]) -> str:
    """``export NAME=value`` lines, quoted for a POSIX shell (``eval`` or ``.`` them)."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


# --------------------------------------------------------------------------- ports


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a TCP listener could bind ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- readiness


def _run_blocking(factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine to completion from synchronous code, inside a running loop or not."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    # Called from a coroutine (an async fixture, say): its loop is busy running
    # us, so the probe gets a loop of its own in a helper thread.
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(factory())
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="botstream-kafka-probe")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


async def _answers_metadata(client_kwargs: Mapping[str, Any], timeout_s: float) -> bool:
    """Whether the broker of ``client_kwargs`` answers a cluster metadata request."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_kwargs, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout_s)
        return bool(cluster.get("brokers")) and cluster.get("controller_id", -1) >= 0
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


# --------------------------------------------------------------------------- processes


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not running any more.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """``preexec_fn``: the kernel sends SIGKILL to this child when its parent dies.

    Only used in the single-threaded watchdog: PR_SET_PDEATHSIG fires when the
    *thread* that forked exits, which in a threaded parent could be any time.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# Brokers of this process that are running, stopped at exit and on SIGTERM/SIGHUP.
_LIVE: weakref.WeakSet[LocalKafka] = weakref.WeakSet()
_HANDLERS_INSTALLED = False


def _stop_all() -> None:
    for broker in list(_LIVE):
        with contextlib.suppress(Exception):
            broker.stop()


def _install_cleanup() -> None:
    """Stop this process's brokers at exit and on SIGTERM/SIGHUP (chaining prior handlers)."""
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    _HANDLERS_INSTALLED = True
    atexit.register(_stop_all)
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread; the watchdog remains
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(signum)
        if previous is signal.SIG_IGN:
            continue

        def handler(num: int, frame: Any, previous: Any = previous) -> None:
            _stop_all()
            if callable(previous):
                previous(num, frame)
            else:  # SIG_DFL: die of the same signal, as without us
                signal.signal(num, signal.SIG_DFL)
                os.kill(os.getpid(), num)

        signal.signal(signum, handler)


# --------------------------------------------------------------------------- broker


def _cluster_id() -> str:
    """A random KRaft cluster id: a UUID in URL-safe base64 without padding.

    Never one starting with ``-``: the storage tool would read it as an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class LocalKafka:
    """A single-node KRaft Kafka broker on 127.0.0.1, data in a temporary directory.

    Use as a context manager, or call :meth:`start` and :meth:`stop`::

        with LocalKafka() as kafka:
            produce_to(kafka.bootstrap)

    ``port=0`` (the default) picks a free port; so does ``controller_port=0``.
    """

    def __init__(
        self,
        port: int = 0,
        controller_port: int = 0,
        *,
        work_dir: Path | str | None = None,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        heap: str | None = None,
        detached: bool = False,
        cache: Path | None = None,
        secure: bool = False,
        tls: Path | None = None,
        keep_data: bool = False,
    ) -> None:
        self.host = "127.0.0.1"
        self._requested_port = port
        self._requested_controller_port = controller_port
        self.port = port
        self.controller_port = controller_port
        self.startup_timeout_s = startup_timeout_s
        self.heap = heap or os.environ.get("BOTSTREAM_KAFKA_HEAP") or "512m"
        self.detached = detached
        self.cache = cache
        self.work_dir: Path | None = Path(work_dir) if work_dir else None
        self._own_work_dir = work_dir is None
        self._process: subprocess.Popen[bytes] | None = None
        self.version = kafka_version()
        #: SASL_SSL with SCRAM users and TLS (see the module docstring); ``tls`` is
        #: the directory of the CA and stores (default: ``<cache>/tls``).
        self.secure = secure
        self._tls_dir = Path(tls) if tls else None
        self.tls: TlsMaterial | None = None
        # Chosen once, so that a restart of this broker keeps its users' passwords.
        self._passwords = {user: secrets.token_urlsafe(18) for user in (CLIENT_USER, BROKER_USER)}
        #: Seconds spent fetching/checking the jars and starting the broker, by the last start().
        self.timings: dict[str, float] = {}
        #: The JVM's command line, kept by start() for restart().
        self._java_command: list[str] | None = None
        #: Keep the data directory even when the broker dies on its own (a full disk,
        #: say), so that restart() can start it again on that data.
        self.keep_data = keep_data

    # -- public ------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``host:port`` of the running broker, for ``bootstrap_servers``."""
        if not self.running:
            raise BrokerSetupError("the local Kafka broker is not running")
        return f"{self.host}:{self.port}"

    @property
    def client_credentials(self) -> ClientCredentials | None:
        """What a client must set to connect (None for a plaintext broker)."""
        if not self.secure or self.tls is None:
            return None
        return ClientCredentials(
            bootstrap=self.bootstrap,
            username=CLIENT_USER,
            password=self._passwords[CLIENT_USER],
            cafile=str(self.tls.ca_pem),
        )

    def client_env(self) -> dict[str, str]:
        """The ``BOTSTREAM_*`` variables that point a command at this broker (with credentials)."""
        credentials = self.client_credentials
        return credentials.env() if credentials else {"BOTSTREAM_BOOTSTRAP": self.bootstrap}

    @property
    def pid(self) -> int | None:
        """Process id of the watchdog (the JVM's parent); its process group is the broker's."""
        return self._process.pid if self._process else None

    @property
    def java_pid(self) -> int | None:
        """Process id of the JVM, once started."""
        if self.work_dir is None:
            return None
        try:
            return int((self.work_dir / "java.pid").read_text())
        except (OSError, ValueError):
            return None

    @property
    def log_path(self) -> Path | None:
        """The broker's log file (warnings and errors)."""
        return self.work_dir / "logs" / "server.log" if self.work_dir else None

    @property
    def running(self) -> bool:
        """Whether the broker process is up (not necessarily ready yet)."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> str:
        """Fetch the jars if needed, start the broker, wait until it answers; return bootstrap."""
        if self.running:
            return self.bootstrap
        began = time.monotonic()
        java = find_java()
        _check_java(java)
        libs = resolve_jars(self.cache)
        if self.secure:
            self.tls = ensure_tls(self._tls_dir or tls_dir(self.cache), find_keytool(java))
        resolved = time.monotonic()
        auto_ports = not self._requested_port or not self._requested_controller_port
        # Free ports we pick can be taken by someone else before the JVM binds
        # them; that shows as a bind error, and we try once more with new ones.
        for attempt in (1, 2):
            try:
                self._start_once(java, libs)
                break
            except BrokerSetupError:
                retry = attempt == 1 and auto_ports and self._bind_failed()
                self._abandon(keep_logs=not retry)
                if not retry:
                    raise
            except BaseException:  # Ctrl-C while waiting, say: no broker is left behind
                self.stop()
                raise
        self.timings = {
            "resolve_s": resolved - began,
            "start_s": time.monotonic() - resolved,
            "total_s": time.monotonic() - began,
        }
        return self.bootstrap

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after ``timeout_s``) and delete its data."""
        process = self._process
        _LIVE.discard(self)
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout_s)
            # The whole group: the watchdog and the JVM, whatever is still there.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
            self._process = None
        if self._own_work_dir and self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None

    def restart(self, *, hard: bool = False, down_s: float = 0.0) -> float:
        """Stop the broker and start it again on the same ports and data; return seconds down.

        The topics, committed offsets, transactions and consumer groups survive,
        as on a production broker that restarts. ``hard`` kills the JVM with
        SIGKILL (a crash: Kafka recovers its logs on the next start) instead of
        a clean shutdown; ``down_s`` keeps it down that much longer. The
        returned figure runs from the stop until the broker answers again. A
        broker that died on its own is started again (its data is still there
        with ``keep_data``).
        """
        if self.work_dir is None or self._java_command is None:
            raise BrokerSetupError("the local Kafka broker was never started: nothing to restart")
        began = time.monotonic()
        keep = self.work_dir / _KEEP_DATA
        process = self._process
        if process is not None and process.poll() is None:
            keep.touch()  # the watchdog leaves the data directory alone when it exits
            try:
                java_pid = self.java_pid
                if hard and java_pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(java_pid, signal.SIGKILL)
                else:
                    process.send_signal(signal.SIGTERM)
                try:
                    process.wait(STOP_TIMEOUT_S + 10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(5)
                if java_pid is not None:
                    _wait_gone(java_pid, 10)
            finally:
                if not self.keep_data:
                    keep.unlink(missing_ok=True)
        elif not (self.work_dir / "data").is_dir():
            raise BrokerSetupError(
                "the local Kafka broker died and its data is gone (start it with keep_data)"
            )
        _LIVE.discard(self)
        self._process = None
        if down_s > 0:
            time.sleep(down_s)
        self._launch()
        return time.monotonic() - began

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.host}:{self.port}" if self.running else "stopped"
        return f"<LocalKafka {self.version} {state}>"

    # -- internals ---------------------------------------------------------------------

    def _start_once(self, java: str, libs: Path) -> None:
        if self._own_work_dir:
            self.work_dir = Path(tempfile.mkdtemp(prefix="botstream-kafka-"))
        assert self.work_dir is not None
        data, logs = self.work_dir / "data", self.work_dir / "logs"
        shutil.rmtree(data, ignore_errors=True)  # a retry in a given work_dir starts afresh
        data.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        self.port = self._requested_port or free_port(self.host)
        self.controller_port = self._requested_controller_port or free_port(self.host)
        while self.controller_port == self.port:
            self.controller_port = free_port(self.host)
        properties = self.work_dir / "server.properties"
        properties.touch(mode=0o600)  # it holds the stores' and the broker user's passwords
        properties.write_text(self._server_properties(data))
        jvm = [
            java,
            f"-Xmx{self.heap}",
            # The whole heap from the start, as Kafka's own start script sets it. A
            # heap that G1 shrinks when idle grows again at the next burst, paying for
            # fresh pages then: on a VM that hands freed pages back to its host, the
            # first seconds of new traffic were when the request handlers spent their
            # time in the kernel (README, Performance).
            f"-Xms{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={logs}",
            f"-Dlog4j2.configurationFile={LOG4J2_PROPERTIES}",
            *shlex.split(os.environ.get("BOTSTREAM_KAFKA_OPTS", "")),
            "-cp",
            f"{libs}/*",
        ]
        self._format(jvm, properties, logs)
        self._java_command = [*jvm, "kafka.Kafka", str(properties)]
        self._launch()

    def _launch(self) -> None:
        """Start the watchdog and its JVM with the prepared command; wait until it answers."""
        assert self.work_dir is not None and self._java_command is not None
        if self.keep_data:
            (self.work_dir / _KEEP_DATA).touch()
        stdout = open(self.work_dir / "logs" / "stdout.log", "ab")  # noqa: SIM115 - to the child
        try:
            self._process = subprocess.Popen(
                self._watchdog_command(self._java_command),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: no terminal signals, killpg
                env=self._watchdog_env(),
                close_fds=True,
            )
        finally:
            stdout.close()
        if not self.detached:
            _LIVE.add(self)
            _install_cleanup()
        self._wait_ready()

    def _server_properties(self, data: Path) -> str:
        base = SERVER_PROPERTIES.read_text()
        host, port, cport = self.host, self.port, self.controller_port
        listener = SECURITY_PROTOCOL if self.secure else "PLAINTEXT"
        text = (
            f"{base}\n# Added for this run by botstream.kafka.local_broker.\n"
            "node.id=1\n"
            f"listeners={listener}://{host}:{port},CONTROLLER://{host}:{cport}\n"
            f"advertised.listeners={listener}://{host}:{port}\n"
            f"controller.quorum.voters=1@{host}:{cport}\n"
            f"log.dirs={data}\n"
        )
        if self.secure:
            text += self._secure_properties()
        return text

    def _secure_properties(self) -> str:
        tls = self.tls
        assert tls is not None
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{BROKER_USER}" password="{self._passwords[BROKER_USER]}";'
        )
        return (
            f"\n{SECURE_PROPERTIES.read_text()}\n# Added for this run (secured).\n"
            f"ssl.keystore.location={tls.keystore}\n"
            f"ssl.keystore.password={tls.password}\n"
            f"ssl.key.password={tls.password}\n"
            f"ssl.truststore.location={tls.truststore}\n"
            f"ssl.truststore.password={tls.password}\n"
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}\n"
        )

    def _format(self, jvm: list[str], properties: Path, logs: Path) -> None:
        command = [
            jvm[0],
            # A short-lived tool: the quick JIT tier and the serial collector
            # start it in about half the time.
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            "-XX:-UsePerfData",
            *(arg for arg in jvm[1:] if arg.startswith(("-D", "-cp")) or arg.endswith("/*")),
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            _cluster_id(),
            "--config",
            str(properties),
            "--ignore-formatted",
        ]
        if self.secure:
            # SCRAM users must exist before the broker's first connection to itself.
            for user, password in self._passwords.items():
                command += ["--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={password}]"]
        try:
            result = subprocess.run(
                command, capture_output=True, timeout=120, check=False, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            raise BrokerSetupError("formatting the Kafka storage took over 120 s") from None
        (logs / "format.log").write_bytes(result.stdout + result.stderr)
        if result.returncode != 0:
            raise BrokerSetupError(
                f"formatting the Kafka storage failed (exit {result.returncode}); "
                f"see {logs / 'format.log'}"
            )

    def _watchdog_command(self, java_command: list[str]) -> list[str]:
        assert self.work_dir is not None
        parent = 0 if self.detached else os.getpid()
        return [
            sys.executable,
            "-m",
            "botstream.kafka.local_broker",
            "--parent",
            str(parent),
            "--work-dir",
            str(self.work_dir),
            *([] if self._own_work_dir or self.detached else ["--keep-work-dir"]),
            "--",
            *java_command,
        ]

    @staticmethod
    def _watchdog_env() -> dict[str, str]:
        env = dict(os.environ)
        # The watchdog imports this module; make sure it finds this very copy.
        package_root = str(HERE.parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        return env

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        bootstrap = f"{self.host}:{self.port}"
        credentials = self.client_credentials
        client_kwargs = credentials.client_kwargs() if credentials else {}
        client_kwargs["bootstrap_servers"] = bootstrap
        while True:
            code = self._process.poll()
            if code is not None:
                raise BrokerSetupError(
                    f"the Kafka broker exited with code {code} while starting{self._last_error()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerSetupError(
                    f"broker did not start within {self.startup_timeout_s:g} s{self._last_error()}"
                )
            probe_s = min(5.0, max(remaining, 0.5))
            if _accepts(self.host, self.port) and _run_blocking(
                lambda probe_s=probe_s: _answers_metadata(client_kwargs, probe_s)
            ):
                return
            time.sleep(0.1)

    def _last_error(self) -> str:
        """``" (<last error line>); see <log>"``: the log that says what went wrong."""
        if self.work_dir is None:
            return ""
        logs = self.work_dir / "logs"

        def lines(name: str) -> list[str]:
            try:
                text = (logs / name).read_text(errors="replace")
            except OSError:
                return []
            return [line.strip() for line in text.splitlines() if line.strip()]

        # Kafka's errors are in server.log; the JVM's own (a bad option, no
        # memory) in stdout.log, where normally nothing is written.
        candidates = [
            ("server.log", [ln for ln in lines("server.log") if "] ERROR " in ln]),
            ("stdout.log", lines("stdout.log")),
        ]
        for name, found in candidates:
            if found:
                return f" ({found[-1][:200]}); see {logs / name}"
        return f"; see {logs / 'server.log'}"

    def _bind_failed(self) -> bool:
        try:
            text = self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            return False
        return "Address already in use" in text

    def _abandon(self, *, keep_logs: bool) -> None:
        """Stop a broker that failed to start, keeping its logs for the error message."""
        if keep_logs and self.work_dir is not None:
            (self.work_dir / "keep-logs").touch()
            own, self._own_work_dir = self._own_work_dir, False
            self.stop()
            self._own_work_dir = own
            if own and self.work_dir is not None:
                shutil.rmtree(self.work_dir / "data", ignore_errors=True)
        else:
            self.stop()


# --------------------------------------------------------------------------- detached


@dataclass(frozen=True)
class BrokerState:
    """What ``botstream kafka start`` remembers of the broker it left running."""

    pid: int
    java_pid: int | None
    bootstrap: str
    work_dir: str
    log: str
    version: str
    started_at: float
    #: SASL_SSL with SCRAM users and TLS; clients' settings are in ``client_env``.
    secure: bool = False
    #: The file of ``export BOTSTREAM_...`` lines for clients (mode 0600).
    client_env: str | None = None

    def client_settings(self) -> dict[str, str]:
        """The ``BOTSTREAM_*`` settings a client needs (credentials of a secured broker too)."""
        settings = {"BOTSTREAM_BOOTSTRAP": self.bootstrap}
        if self.client_env:
            try:
                text = Path(self.client_env).read_text()
            except OSError as exc:
                raise BrokerSetupError(f"cannot read {self.client_env}: {exc}") from None
            for line in text.splitlines():
                name, _, value = line.removeprefix("export ").partition("=")
                if name.startswith("BOTSTREAM_"):
                    settings[name] = shlex.split(value)[0] if value else ""
        return settings


def client_env_path(cache: Path | None = None) -> Path:
    """The file of ``export`` lines for clients of the detached secured broker."""
    return (cache or cache_dir()) / _CLIENT_ENV_FILE


def state_path(cache: Path | None = None) -> Path:
    """The state file of the detached broker."""
    return (cache or cache_dir()) / _STATE_FILE


def read_state(cache: Path | None = None) -> BrokerState | None:
    """The detached broker, if one is running; a stale state file is removed."""
    path = state_path(cache)
    try:
        state = BrokerState(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        path.unlink(missing_ok=True)
        return None
    # The pid may have been reused since: it must still be our watchdog.
    if _pid_alive(state.pid) and "botstream.kafka.local_broker" in _cmdline(state.pid):
        return state
    path.unlink(missing_ok=True)
    shutil.rmtree(state.work_dir, ignore_errors=True)
    if state.client_env:
        Path(state.client_env).unlink(missing_ok=True)
    return None


def start_detached(
    port: int | None = None, cache: Path | None = None, *, secure: bool = False
) -> tuple[BrokerState, bool]:
    """Start a broker that outlives this process, or find the one running.

    Returns the state and whether it was started now. ``port=None`` means
    9092 when free, else any free port. ``secure`` starts it with SASL_SSL
    (see :class:`LocalKafka`) and writes what clients must set to
    :func:`client_env_path`; asking for a secured broker while a plaintext one
    runs is an error (and the other way round gives the running one).
    """
    cache = cache or cache_dir()
    existing = read_state(cache)
    if existing is not None:
        if secure and not existing.secure:
            raise BrokerSetupError(
                f"a plaintext broker already runs at {existing.bootstrap}; "
                "stop it first (botstream kafka stop) to start a secured one"
            )
        return existing, False
    if port is None:
        port = DEFAULT_PORT if port_is_free(DEFAULT_PORT) else 0
    elif port and not port_is_free(port):
        raise BrokerSetupError(f"port {port} is in use; choose another with --port")
    work_dir = cache / "broker"
    shutil.rmtree(work_dir, ignore_errors=True)
    broker = LocalKafka(port=port, work_dir=work_dir, detached=True, cache=cache, secure=secure)
    try:
        broker.start()
    except BaseException:
        broker.stop()
        raise
    assert broker.pid is not None and broker.log_path is not None
    env_file = None
    if secure:
        env_file = client_env_path(cache)
        env_file.unlink(missing_ok=True)
        env_file.touch(mode=0o600)  # the client's password
        env_file.write_text(export_lines(broker.client_env()))
    state = BrokerState(
        pid=broker.pid,
        java_pid=broker.java_pid,
        bootstrap=broker.bootstrap,
        work_dir=str(work_dir),
        log=str(broker.log_path),
        version=broker.version,
        started_at=time.time(),
        secure=secure,
        client_env=str(env_file) if env_file else None,
    )
    cache.mkdir(parents=True, exist_ok=True)
    tmp = state_path(cache).with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    tmp.replace(state_path(cache))
    return state, True


def stop_detached(
    cache: Path | None = None, timeout_s: float = STOP_TIMEOUT_S
) -> BrokerState | None:
    """Stop the detached broker; return what was stopped, or None if none ran."""
    state = read_state(cache)
    if state is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(state.pid, signal.SIGTERM)
    if not _wait_gone(state.pid, timeout_s):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(state.pid, signal.SIGKILL)
        _wait_gone(state.pid, 5)
    if state.java_pid and _pid_alive(state.java_pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.java_pid, signal.SIGKILL)
    shutil.rmtree(state.work_dir, ignore_errors=True)
    if state.client_env:
        Path(state.client_env).unlink(missing_ok=True)
    state_path(cache).unlink(missing_ok=True)
    return state


# --------------------------------------------------------------------------- watchdog


def _watchdog(parent: int, work_dir: Path, keep_work_dir: bool, command: Sequence[str]) -> int:
    """Run the JVM; stop it when ``parent`` is gone or we get SIGTERM; then clean up.

    The JVM gets SIGTERM first (a clean Kafka shutdown), SIGKILL after
    STOP_TIMEOUT_S. Afterwards the work directory is removed, except its logs
    when the broker failed (it exited on its own, or the starter asked to keep them),
    and nothing at all during a restart (a ``keep-data`` file in the work directory).
    """
    java = subprocess.Popen(command, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    (work_dir / "java.pid").write_text(f"{java.pid}\n")
    asked_to_stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        asked_to_stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)

    stopping_since: float | None = None
    while True:
        try:
            code = java.wait(_WATCHDOG_POLL_S)
            break
        except subprocess.TimeoutExpired:
            pass
        parent_gone = parent and os.getppid() != parent
        if (asked_to_stop.is_set() or parent_gone) and stopping_since is None:
            asked_to_stop.set()
            stopping_since = time.monotonic()
            java.send_signal(signal.SIGTERM)
        elif stopping_since is not None and time.monotonic() - stopping_since > STOP_TIMEOUT_S:
            java.kill()
    if (work_dir / _KEEP_DATA).exists():
        return code  # a restart (LocalKafka.restart): the same data starts again
    keep_logs = (work_dir / "keep-logs").exists() or not asked_to_stop.is_set()
    if keep_logs:
        shutil.rmtree(work_dir / "data", ignore_errors=True)
    elif not keep_work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    return code


def _watchdog_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="botstream.kafka.local_broker")
    parser.add_argument("--parent", type=int, required=True, help="pid to watch; 0: none")
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--keep-work-dir", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return _watchdog(args.parent, args.work_dir, args.keep_work_dir, command)


if __name__ == "__main__":
    sys.exit(_watchdog_main())
