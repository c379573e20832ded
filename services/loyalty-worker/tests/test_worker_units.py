"""In-process checks of the parts that need no Redis: entry parsing, configuration, sd_notify."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator

import pytest
from loyalty_common import ConfigError
from loyalty_worker import Transaction, Unparseable, load_config, parse_entry
from loyalty_worker.sdnotify import Notifier

GOOD = {
    b"transaction_id": b"7b0c",
    b"user_id": b"1",
    b"username": b"alice",
    b"amount": b"2000",
    b"currency": b"GBP",
    b"accepted_at": b"2024-01-01T00:00:00Z",
}


def test_parse_a_well_formed_entry() -> None:
    assert parse_entry(GOOD) == Transaction("7b0c", 1, "alice", 2000)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({b"transaction_id": None}, "missing field transaction_id"),
        ({b"transaction_id": b""}, "field transaction_id is not 1 to 200"),
        ({b"transaction_id": b"a b"}, "field transaction_id is not 1 to 200"),
        ({b"transaction_id": b"x" * 201}, "field transaction_id is not 1 to 200"),
        ({b"user_id": None}, "missing field user_id"),
        ({b"user_id": b"-1"}, "field user_id is not a non-negative integer"),
        ({b"user_id": b"1.0"}, "field user_id is not a non-negative integer"),
        ({b"user_id": "\u0661".encode()}, "field user_id is not a non-negative integer"),
        ({b"username": None}, "missing field username"),
        ({b"username": b""}, "field username is empty"),
        ({b"username": b"\xc3"}, "field username is not UTF-8"),
        ({b"amount": None}, "missing field amount"),
        ({b"amount": b"20.00"}, "field amount is not a non-negative integer"),
        ({b"amount": b"1e3"}, "field amount is not a non-negative integer"),
        ({b"amount": b" 5"}, "field amount is not a non-negative integer"),
    ],
)
def test_parse_refuses(change: dict[bytes, bytes | None], reason: str) -> None:
    fields = {**GOOD, **change}
    fields = {k: v for k, v in fields.items() if v is not None}
    with pytest.raises(Unparseable, match=reason):
        parse_entry(fields)


def test_parse_refuses_a_deleted_entry() -> None:
    with pytest.raises(Unparseable, match="deleted"):
        parse_entry({})


def test_defaults() -> None:
    config = load_config({})
    assert (config.stamps_per_voucher, config.min_stamp_amount) == (10, 1)
    assert (config.claim_idle_ms, config.max_deliveries) == (30_000, 5)
    assert (config.batch_size, config.block_ms) == (50, 1_000)
    assert config.consumer_name == f"{socket.gethostname()}-{os.getpid()}"
    assert config.redis.url == "redis://127.0.0.1:6379/0"


def test_blank_means_default() -> None:
    assert load_config({"STAMPS_PER_VOUCHER": " "}).stamps_per_voucher == 10


def test_config_error_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"WORKER_MAX_DELIVERIES": "0"})
    assert caught.value.variable == "WORKER_MAX_DELIVERIES"


@pytest.fixture
def datagrams() -> Iterator[tuple[socket.socket, str]]:
    directory = tempfile.mkdtemp(prefix="lw-")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.5)
    yield sock, path
    sock.close()
    os.unlink(path)
    os.rmdir(directory)


def test_notifier_without_systemd_does_nothing() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    notifier.ready("x")
    notifier.heartbeat()
    notifier.stopping()


def test_notifier_heartbeats_at_most_every_half_period(
    datagrams: tuple[socket.socket, str],
) -> None:
    sock, path = datagrams
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"})
    assert notifier.watchdog_interval == 5.0
    notifier.heartbeat()
    notifier.heartbeat()  # too soon: not sent
    notifier.ready("consuming")
    assert sock.recv(100) == b"WATCHDOG=1"
    assert sock.recv(100) == b"READY=1\nSTATUS=consuming"
    notifier.close()


@pytest.mark.parametrize("usec", ["", "0", "abc", "-5"])
def test_notifier_ignores_a_missing_or_bad_watchdog_period(
    datagrams: tuple[socket.socket, str], usec: str
) -> None:
    _sock, path = datagrams
    assert Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": usec}).watchdog_interval is None


def test_notifier_survives_a_vanished_socket() -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "/nonexistent/notify", "WATCHDOG_USEC": "1000000"})
    notifier.ready("consuming")
    notifier.heartbeat()
