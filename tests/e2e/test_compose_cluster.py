"""docker-compose.cluster.yml (3 RabbitMQ nodes, 2 gateways, HAProxy) is valid, and its
configuration files agree with each other: the node names rabbitmq.conf lists are the
compose hostnames, HAProxy's servers are the compose services, every gateway knows
every node, the "/" vhost makes durable queues quorum queues."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from gateway.broker.connector import parse_urls
from tests.e2e.helpers import ROOT
from tests.e2e.test_compose import compose

CLUSTER = ROOT / "config" / "cluster"
NODES = ["rabbit1", "rabbit2", "rabbit3"]
GATEWAYS = ["gateway1", "gateway2"]


def cluster_compose(*args: str) -> str:
    return compose(*args, file="docker-compose.cluster.yml")


def test_cluster_compose_file_is_valid() -> None:
    assert cluster_compose("config", "-q") == ""
    assert set(cluster_compose("config", "--services").split()) == {*NODES, *GATEWAYS, "haproxy"}
    normalised = cluster_compose("config")
    # Every node: same image, same Erlang cookie, the cluster config and definitions.
    assert normalised.count("RABBITMQ_ERLANG_COOKIE: stomp-gateway-cluster-cookie") == 3
    assert normalised.count(f"{CLUSTER}/rabbitmq.conf:/etc/rabbitmq/conf.d/90-cluster.conf:ro") == 3
    assert normalised.count(f"{CLUSTER}/definitions.json:/etc/rabbitmq/definitions.json:ro") == 3
    for node in NODES:
        assert f"hostname: {node}\n" in normalised
    # Every gateway knows the three nodes, and waits for them.
    urls = "amqp://rabbit1:5672/,amqp://rabbit2:5672/,amqp://rabbit3:5672/"
    assert normalised.count(f"GATEWAY_AMQP_URL: {urls}") == 2
    assert [u.host for u in parse_urls(urls)] == NODES
    assert normalised.count("condition: service_healthy") == 6
    # HAProxy publishes the WebSocket port.
    assert re.search(r"published: \"?15674\"?", normalised), normalised


def test_cluster_configuration_files_agree() -> None:
    conf = (CLUSTER / "rabbitmq.conf").read_text()
    assert "cluster_formation.peer_discovery_backend = classic_config" in conf
    listed = re.findall(
        r"^cluster_formation\.classic_config\.nodes\.\d+ = rabbit@(\S+)$", conf, re.M
    )
    assert listed == NODES
    assert "load_definitions = /etc/rabbitmq/definitions.json" in conf

    definitions = json.loads((CLUSTER / "definitions.json").read_text())
    (vhost,) = definitions["vhosts"]
    assert vhost["name"] == "/" and vhost["metadata"]["default_queue_type"] == "quorum"
    assert {u["name"] for u in definitions["users"]} == {"guest"}

    haproxy = (CLUSTER / "haproxy.cfg").read_text()
    servers = re.findall(r"^\s+server (\S+) (\S+):(\d+) check", haproxy, re.M)
    assert [(n, h, p) for n, h, p in servers if p == "15674"] == [(g, g, "15674") for g in GATEWAYS]
    assert [(n, h, p) for n, h, p in servers if p == "5672"] == [(n, n, "5672") for n in NODES]
    assert re.search(r"^\s+timeout tunnel 1h$", haproxy, re.M)  # WebSockets stay open
    assert "option httpchk GET /readyz" in haproxy  # a gateway without broker: out
    assert "balance leastconn" in haproxy


def test_haproxy_accepts_the_configuration() -> None:
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if haproxy is None:
        pytest.skip("haproxy is not installed: its own check of haproxy.cfg is skipped")
    result = subprocess.run(
        [haproxy, "-c", "-f", str(CLUSTER / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    # Without Docker's DNS the names do not resolve; init-addr none lets it start anyway.
    assert result.returncode == 0, result.stdout + result.stderr
