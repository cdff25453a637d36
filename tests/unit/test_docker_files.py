"""docker/: no Docker engine runs here, so check the files against the code they run.

Every ``botstream`` command in the compose file must parse with the real
command line (a renamed flag would otherwise only show on a user's machine),
the services must start in the order the demo needs, and the image must run
the ``botstream`` entry point with the read API reachable from other containers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from botstream.cli import build_parser

DOCKER = Path(__file__).resolve().parents[2] / "docker"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_the_demo_services_are_all_there(compose) -> None:
    services = compose["services"]
    assert {"kafka", "topics", "worker", "simulator"} <= set(services)
    assert services["cli"]["profiles"] == ["tools"], "the cli service must not start with `up`"


def test_services_start_in_the_order_the_demo_needs(compose) -> None:
    services = compose["services"]
    assert services["topics"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert services["worker"]["depends_on"] == {
        "topics": {"condition": "service_completed_successfully"}
    }
    # Traffic starts once the worker answers, so its plan records are read
    # before the first charge.
    assert services["simulator"]["depends_on"] == {"worker": {"condition": "service_healthy"}}
    assert "healthcheck" in services["worker"]


@pytest.mark.parametrize("service", ["topics", "worker", "simulator"])
def test_each_command_parses_with_the_real_command_line(compose, service) -> None:
    command = compose["services"][service]["command"]
    args = build_parser().parse_args([str(part) for part in command])
    assert callable(args.func)
    assert getattr(args, "env:BOTSTREAM_BOOTSTRAP") == "kafka:9092"


def test_simulator_runs_paced_traffic_for_a_bounded_time(compose) -> None:
    args = build_parser().parse_args(compose["services"]["simulator"]["command"])
    assert float(args.speed) > 1 and float(args.duration) > 0
    assert args.out is None, "the simulator must produce to Kafka"


def test_kafka_listens_for_containers_and_for_the_host(compose) -> None:
    kafka = compose["services"]["kafka"]["environment"]
    assert "PLAINTEXT://kafka:9092" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    assert "HOST://localhost:29092" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    # Exactly-once needs the transaction log, which needs this on one broker.
    assert int(kafka["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == 1
    assert str(kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]) == "false"


def test_image_runs_botstream_with_the_api_on_every_interface() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["botstream"]' in dockerfile
    assert "BOTSTREAM_WEB_HOST=0.0.0.0" in dockerfile
    assert "pip install ." in dockerfile
