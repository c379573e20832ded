"""Small clients that both benchmarks use: tokens, HTTP probes, the stream
backlog and the 202 -> award latency.

Every function that talks to a service takes its address as an argument:
bench/services.py passes loopback, bench/run the addresses of the test hosts
it started. Nothing here picks a target by itself.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

FORM_BODY = "amount=2000&currency=GBP"


def make_token(key: Any, user_id: int) -> str:
    """A token as the Auth API makes them, valid for an hour."""
    import jwt

    now = int(time.time())
    claims = {
        "user_id": user_id, "username": f"user{user_id}", "can_transact": True,
        "sub": str(user_id), "iat": now, "exp": now + 3600, "jti": uuid.uuid4().hex,
        "iss": "loyalty-auth",
    }  # fmt: skip
    return jwt.encode(claims, key, algorithm="EdDSA")


def new_tokens(key: Any, count: int) -> list[str]:
    """`count` distinct tokens for users 1..1000: a new token for every request."""
    return [make_token(key, 1 + i % 1000) for i in range(count)]


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(0.05)


def http_status(host: str, port: int, path: str, ca_file: Path | None = None) -> int:
    """The status of GET path, or 0 when nothing answers; HTTPS verified by ca_file if given."""
    try:
        if ca_file is None:
            connection = http.client.HTTPConnection(host, port, timeout=2)
        else:
            context = ssl.create_default_context(cafile=str(ca_file))
            connection = http.client.HTTPSConnection(host, port, timeout=2, context=context)
        connection.request("GET", path)
        status = connection.getresponse().status
        connection.close()
        return status
    except OSError:
        return 0


def queue_backlog(redis_client: Any, count: int, batch: int = 1000) -> None:
    """Put ``count`` synthetic transactions of 100 users on the stream, in pipelined batches."""
    from loyalty_common import TRANSACTIONS_STREAM

    pipe = redis_client.pipeline(transaction=False)
    for i in range(count):
        user = 1000 + i % 100
        pipe.xadd(
            TRANSACTIONS_STREAM,
            {
                "transaction_id": str(uuid.uuid4()),
                "user_id": str(user),
                "username": f"user{user}",
                "amount": "2000",
                "currency": "GBP",
                "accepted_at": "2026-01-01T00:00:00.000Z",
            },
        )
        if i % batch == batch - 1:
            pipe.execute()
    pipe.execute()


def stamp_latency(
    host: str, api_port: int, token: str, samples: int, tls: ssl.SSLContext | None = None
) -> list[float]:
    """Seconds from each 202 to GET /loyalty showing the transaction (HTTPS with tls).

    One request at a time from one client: this measures the path through
    the stream and a worker, not the API under load.
    """

    def connect() -> http.client.HTTPConnection:
        if tls is None:
            return http.client.HTTPConnection(host, api_port, timeout=10)
        return http.client.HTTPSConnection(host, api_port, timeout=10, context=tls)

    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    latencies = []
    seen = None
    for _ in range(samples):
        connection = connect()
        connection.request("POST", "/transactions", body=FORM_BODY, headers=headers)
        response = connection.getresponse()
        response.read()
        accepted = time.perf_counter()
        connection.close()
        if response.status != 202:
            raise SystemExit(f"bench: POST /transactions answered {response.status}")
        deadline = accepted + 10
        while True:
            connection = connect()
            connection.request("GET", "/loyalty", headers={"Authorization": f"Bearer {token}"})
            body = json.loads(connection.getresponse().read())
            connection.close()
            if seen is None:
                seen = body["transactions"] - 1  # first sample: count before it
            if body["transactions"] > seen:
                latencies.append(time.perf_counter() - accepted)
                seen = body["transactions"]
                break
            if time.perf_counter() > deadline:
                raise SystemExit("bench: a transaction was not awarded within 10 s")
            time.sleep(0.0005)
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]
