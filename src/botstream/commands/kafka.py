"""``botstream kafka start|status|stop``: a local Kafka broker that outlives the command."""

from __future__ import annotations

import argparse
import sys

EXAMPLES = """\
examples:
  botstream kafka start                 # 127.0.0.1:9092, or a free port if 9092 is taken
  botstream kafka start --port 19092
  export BOTSTREAM_BOOTSTRAP="$(botstream kafka start)"
  botstream kafka status                # prints the bootstrap address; exit 1 if none runs
  botstream kafka stop                  # stops it and deletes its data

  botstream kafka start --secure        # SASL_SSL: SCRAM-SHA-512 user, TLS with a local CA
  eval "$(botstream kafka env)"         # export what clients need (bootstrap, credentials, CA)

A single-node Apache Kafka (KRaft) on 127.0.0.1, for development. Needs Java 17+,
and Maven on the first run, which fetches the Kafka jars into the cache directory
($BOTSTREAM_CACHE_DIR, else $XDG_CACHE_HOME/botstream, else ~/.cache/botstream).
The broker's state file is broker.json there; its data and logs are in broker/.
Only start and status print the bootstrap address on stdout; messages go to stderr.

--secure: one SASL_SSL listener (no plaintext one), user "botstream" with a random
SCRAM-SHA-512 password made at each start, and a broker certificate signed by a
local CA made with the JDK's keytool (tls/ in the cache directory; clients trust
tls/ca.pem). What clients must export is in broker-client.env (mode 600) there,
and `botstream kafka env` prints it.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``kafka`` sub-command with ``start``, ``status`` and ``stop``."""
    parser = subparsers.add_parser(
        "kafka",
        help="start, check or stop a local Kafka broker for development",
        description="Run a local single-node Kafka broker in the background.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = actions.add_parser(
        "start",
        help="start the broker (or report the running one) and print its bootstrap address",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    start.add_argument(
        "--port",
        type=int,
        metavar="PORT",
        help="port of the broker; 0 for any free port (default: 9092 if free, else a free one)",
    )
    start.add_argument(
        "--secure",
        action="store_true",
        help="SASL_SSL only: a SCRAM-SHA-512 user and TLS with a local CA (see below)",
    )
    start.set_defaults(func=run_start)
    status = actions.add_parser("status", help="print the bootstrap address; exit 1 if none runs")
    status.set_defaults(func=run_status)
    env = actions.add_parser(
        "env",
        help="print `export BOTSTREAM_...` lines for the running broker (for eval)",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    env.set_defaults(func=run_env)
    stop = actions.add_parser("stop", help="stop the broker and delete its data")
    stop.set_defaults(func=run_stop)


def run_start(args: argparse.Namespace) -> int:
    """Start the detached broker, print its bootstrap address."""
    from botstream.errors import ConfigError
    from botstream.kafka.local_broker import start_detached

    if args.port is not None and not 0 <= args.port < 65536:
        raise ConfigError(f"--port: {args.port} is not a TCP port (0-65535)")
    state, started = start_detached(port=args.port, secure=args.secure)
    how = " with SASL_SSL" if state.secure else ""
    if started:
        print(
            f"Kafka {state.version} running at {state.bootstrap}{how} (pid {state.pid}); "
            "stop it with: botstream kafka stop",
            file=sys.stderr,
        )
    else:
        print(f"Kafka {state.version} already running at {state.bootstrap}{how}", file=sys.stderr)
    if state.secure:
        names = ", ".join(state.client_settings())
        print(
            f"clients need {names}; export them with:\n"
            f'  eval "$(botstream kafka env)"    (or: . {state.client_env})',
            file=sys.stderr,
        )
    print(state.bootstrap)
    return 0


def run_env(args: argparse.Namespace) -> int:
    """Print ``export`` lines for the running broker's clients; exit 1 if none runs."""
    from botstream.kafka.local_broker import export_lines, read_state

    state = read_state()
    if state is None:
        print("no local Kafka broker runs (start one with: botstream kafka start)", file=sys.stderr)
        return 1
    print(export_lines(state.client_settings()), end="")
    return 0


def run_status(args: argparse.Namespace) -> int:
    """Print the running broker's bootstrap address, or say that none runs (exit 1)."""
    from botstream.kafka.local_broker import read_state

    state = read_state()
    if state is None:
        print("no local Kafka broker runs (start one with: botstream kafka start)", file=sys.stderr)
        return 1
    how = ', SASL_SSL: eval "$(botstream kafka env)"' if state.secure else ""
    print(
        f"Kafka {state.version} running at {state.bootstrap} "
        f"(pid {state.pid}, log {state.log}{how})",
        file=sys.stderr,
    )
    print(state.bootstrap)
    return 0


def run_stop(args: argparse.Namespace) -> int:
    """Stop the running broker, if any."""
    from botstream.kafka.local_broker import stop_detached

    state = stop_detached()
    if state is None:
        print("no local Kafka broker was running", file=sys.stderr)
    else:
        print(f"stopped Kafka at {state.bootstrap}", file=sys.stderr)
    return 0
