"""Who reaches which port: the firewall as the inventory describes it, Redis's password."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor

from helpers import ADDRESSES, ALL_HOSTS, admin_password, host_python, log
from host_commands import dexec

CONTROL = "control"
API = ["platform-api-1", "platform-api-2"]
REDIS_CLIENTS = {"platform-api-1", "platform-api-2", "platform-worker-1", "platform-worker-2"}
EVERYONE = set(ALL_HOSTS) | {CONTROL}

# (host, port): sources that must get through; every other source must not.
# A host reaching its own address goes over loopback, so it is left out.
# platform-redis is also the monitoring host: it scrapes every metrics port
# (and the APIs' /metrics on their own port).
MONITORING = {"platform-redis"}
ALLOWED = {
    ("platform-edge", 80): EVERYONE,
    ("platform-edge", 443): EVERYONE,
    ("platform-edge", 5000): {"platform-edge"} | MONITORING,
    ("platform-edge", 8404): set(),
    ("platform-edge", 8405): MONITORING,
    ("platform-redis", 6379): REDIS_CLIENTS,
    # firewall_monitoring_sources: the control machine only.
    ("platform-redis", 9090): {CONTROL},
    ("platform-redis", 9093): {CONTROL},
    ("platform-api-1", 5000): {"platform-edge"} | MONITORING,
    ("platform-api-2", 5000): {"platform-edge"} | MONITORING,
    ("platform-worker-1", 9481): MONITORING,
    ("platform-worker-1", 9482): MONITORING,
    ("platform-worker-2", 9481): MONITORING,
    ("platform-worker-2", 9482): MONITORING,
    **{(host, 9100): MONITORING for host in ALL_HOSTS if host != "platform-outsider"},
}

# Tries every (address, port) at once, 2 s each; prints {"addr:port": state}.
PROBE = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
def probe(target):
    address, port = target
    try:
        socket.create_connection((address, port), timeout=2).close()
        return "open"
    except socket.timeout:
        return "timeout"
    except OSError as error:
        return type(error).__name__
targets = json.loads(sys.argv[1])
with ThreadPoolExecutor(len(targets)) as pool:
    states = list(pool.map(probe, targets))
print(json.dumps({f"{a}:{p}": s for (a, p), s in zip(targets, states)}))
"""


def probe_locally(targets):
    def probe(target):
        try:
            socket.create_connection(tuple(target), timeout=2).close()
            return "open"
        except TimeoutError:
            return "timeout"
        except OSError as error:
            return type(error).__name__

    with ThreadPoolExecutor(len(targets)) as pool:
        states = list(pool.map(probe, targets))
    return {f"{a}:{p}": s for (a, p), s in zip(targets, states, strict=True)}


def test_each_port_reachable_only_from_where_the_inventory_says():
    def targets_for(source):
        return [[ADDRESSES[h], p] for (h, p) in ALLOWED if h != source]

    def run(source):
        if source == CONTROL:
            return source, probe_locally(targets_for(source))
        return source, json.loads(host_python(source, PROBE, json.dumps(targets_for(source))))

    with ThreadPoolExecutor(len(EVERYONE)) as pool:
        results = dict(pool.map(run, sorted(EVERYONE)))
    wrong = []
    for (host, port), allowed in ALLOWED.items():
        for source, states in results.items():
            if source == host:
                continue
            state = states[f"{ADDRESSES[host]}:{port}"]
            expected = "open" if source in allowed else "closed"
            if (state == "open") != (source in allowed):
                wrong.append(f"{source} -> {host}:{port} is {state}, expected {expected}")
    for source, states in sorted(results.items()):
        log(f"reach from {source}: {states}")
    assert not wrong, "\n".join(wrong)


def redis_exchange(source: str, payload: str) -> str:
    """Send `payload` in plain text to Redis's port from `source`; what came
    back, or "closed" when the server hung up."""
    code = (
        "import socket, sys\n"
        "s = socket.create_connection((sys.argv[1], 6379), timeout=3)\n"
        "s.sendall(sys.argv[2].encode())\n"
        "try:\n"
        "    print(s.recv(200).decode(errors='replace').strip() or 'closed')\n"
        "except OSError:\n"
        "    print('closed')\n"
    )
    return host_python(source, code, ADDRESSES["platform-redis"], payload).strip()


def test_redis_speaks_tls_only_and_refuses_a_client_without_the_password():
    # Plain text from hosts the firewall lets in gets no Redis answer.
    for source in ("platform-api-1", "platform-worker-1"):
        reply = redis_exchange(source, "PING\r\n")
        assert "PONG" not in reply and "NOAUTH" not in reply, f"{source}: {reply}"
    # Over TLS (redis-cli-tls, the redis role's wrapper), no password: refused.
    out = dexec("platform-redis", "redis-cli-tls", "PING", check=False)
    assert "NOAUTH" in out.stdout + out.stderr
    # With a wrong password as well.
    out = dexec(
        "platform-redis",
        "redis-cli-tls",
        "PING",
        env={"REDISCLI_AUTH": "not-the-password"},
        check=False,
    )
    assert "WRONGPASS" in out.stdout + out.stderr, out.stdout + out.stderr
    # The right admin password works (the tests read Redis this way).
    out = dexec(
        "platform-redis",
        "redis-cli-tls",
        "--no-auth-warning",
        "PING",
        env={"REDISCLI_AUTH": admin_password()},
    )
    assert out.stdout.strip() == "PONG"


def test_redis_unreachable_from_the_outsider_and_the_control_machine():
    code = (
        "import socket, sys\n"
        "try:\n"
        "    socket.create_connection((sys.argv[1], 6379), timeout=2)\n"
        "    print('open')\n"
        "except OSError as e:\n"
        "    print(type(e).__name__)\n"
    )
    assert host_python("platform-outsider", code, ADDRESSES["platform-redis"]).strip() != "open"
    assert (
        probe_locally([[ADDRESSES["platform-redis"], 6379]])[f"{ADDRESSES['platform-redis']}:6379"]
        != "open"
    )
