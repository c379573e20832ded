"""Checks of the firewall role: who reaches which port, and after a restart."""

import os

import pytest
import testinfra.utils.ansible_runner

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
testinfra_hosts = ["firewall-redis"]
REDIS = "172.30.3.10"
CLIENT = "172.30.3.11"


@pytest.fixture(scope="module")
def client():
    return RUNNER.get_host("firewall-client")


@pytest.fixture(scope="module")
def outsider():
    return RUNNER.get_host("firewall-outsider")


def reaches(source, address, port):
    """True when a TCP connection from `source` succeeds within 2 s."""
    return source.run(f"timeout 2 bash -c '</dev/tcp/{address}/{port}'").rc == 0


def test_nftables_enabled_and_rules_loaded(host):
    service = host.service("nftables")
    assert service.is_enabled
    assert host.file("/etc/nftables.conf").mode == 0o750
    rules = host.run("nft list table inet loyalty").stdout
    assert "policy drop" in rules
    assert "6379" in rules


def test_rules_check_prints_nothing(host):
    check = host.run("nft -c -f /etc/nftables.conf")
    assert check.rc == 0
    assert (check.stdout + check.stderr).strip() == ""


def test_client_reaches_redis(client):
    assert reaches(client, REDIS, 6379)


def test_outsider_refused_from_redis(outsider):
    assert not reaches(outsider, REDIS, 6379)


def test_ssh_reachable_from_anywhere(outsider, client):
    assert reaches(outsider, REDIS, 22)
    assert reaches(outsider, CLIENT, 22)


def test_extra_rule(outsider, client):
    assert reaches(outsider, REDIS, 9100)
    assert not reaches(client, REDIS, 9100)


def test_api_port_only_from_routers(outsider, host):
    # firewall-redis is also the router: it reaches the API, nobody else does.
    assert reaches(host, CLIENT, 5000)
    assert not reaches(outsider, CLIENT, 5000)


def test_router_http_open_admin_closed(outsider, client):
    assert reaches(outsider, REDIS, 80)
    assert reaches(client, REDIS, 80)
    assert not reaches(outsider, REDIS, 8404)


def test_loopback_allowed(host):
    assert reaches(host, "127.0.0.1", 6379)


def test_rules_survive_restart(host, client, outsider):
    assert host.run("systemctl restart nftables.service").rc == 0
    assert host.run("systemctl is-active nftables.service").stdout.strip() == "active"
    assert reaches(client, REDIS, 6379)
    assert not reaches(outsider, REDIS, 6379)
    # Other tables (here the container engine's name resolution) are kept.
    assert host.run("getent hosts firewall-client").rc == 0
