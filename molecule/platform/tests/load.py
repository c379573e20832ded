"""A bounded client for the load tests: threads with http.client, each request
carrying its own Idempotency-Key, every outcome recorded with its times."""

from __future__ import annotations

import http.client
import random
import ssl
import time
import uuid
from dataclasses import dataclass

from helpers import ROUTER, ROUTER_PORT, TOKENS, log, request, tls
from http_requests import connection
from load_schedule import ScheduledLoad

# What a kept-alive connection that the router had already closed raises:
# over TLS, the close may arrive as an EOF in the middle of the TLS stream.
STALE_CONNECTION = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)

CLIENT_TIMEOUT = 15  # seconds; a request not answered by then counts as a hang


@dataclass
class Outcome:
    index: int
    user: str
    key: str
    amount: int
    started: float
    finished: float
    status: int  # 0: no HTTP answer (see error)
    error: str = ""
    transaction_id: str = ""
    replayed: bool = False


def send(conn, user: str, key: str, amount: int, token: str):
    """POST one transaction; returns (status, headers, body)."""
    return request(
        "POST",
        "/transactions/transactions",
        {"amount": str(amount), "currency": "GBP"},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
        conn=conn,
    )


class Client(ScheduledLoad):
    """`threads` threads share a schedule of `total` requests at `rate` per
    second (bounded by `max_seconds`), alternating between `users`; each
    request is sent once (a stale kept-alive connection aside)."""

    join_grace = 2 * CLIENT_TIMEOUT

    def __init__(self, users, total: int, rate: float, threads: int, max_seconds: float) -> None:
        super().__init__(users, total, rate, threads, max_seconds)
        self.outcomes: list[Outcome] = []
        self.stale_retries = 0

    def _get_tokens(self) -> None:
        for user in self.users:
            TOKENS.get(user)

    def _run(self) -> None:
        conn = None
        reused = False
        rng = random.Random()
        while True:
            index = self._slot()
            if index is None:
                break
            due = self._due(index)
            now = time.monotonic()
            if now - self.t0 > self.max_seconds:
                break
            if due > now:
                time.sleep(due - now)
            user = self.users[index % len(self.users)]
            key = str(uuid.uuid4())
            amount = rng.randint(1, 5000)
            try:
                token = TOKENS.get_lenient(user)
            except AssertionError as error:
                self._record(
                    Outcome(
                        index,
                        user,
                        key,
                        amount,
                        time.monotonic(),
                        time.monotonic(),
                        0,
                        f"token: {error}",
                    )
                )
                continue
            if conn is None:
                conn = connection(ROUTER, ROUTER_PORT, timeout=CLIENT_TIMEOUT, context=tls())
                reused = False
            started = time.monotonic()
            try:
                try:
                    status, headers, body = send(conn, user, key, amount, token)
                except STALE_CONNECTION:
                    # A kept-alive connection the router had already closed:
                    # like common HTTP clients, send again once on a new
                    # connection (same Idempotency-Key, so never twice), and
                    # count it. A new connection that fails is a failure.
                    if not reused:
                        raise
                    conn.close()
                    conn = connection(ROUTER, ROUTER_PORT, timeout=CLIENT_TIMEOUT, context=tls())
                    with self._lock:
                        self.stale_retries += 1
                    status, headers, body = send(conn, user, key, amount, token)
                reused = True
                outcome = Outcome(index, user, key, amount, started, time.monotonic(), status)
                if status == 202:
                    outcome.transaction_id = body["transaction_id"]
                    outcome.replayed = headers.get("Idempotent-Replayed") == "true"
                else:
                    outcome.error = str(body)[:200]
                    if headers.get("Connection", "").lower() == "close":
                        conn.close()
                        conn = None
            except (OSError, http.client.HTTPException) as error:
                outcome = Outcome(
                    index,
                    user,
                    key,
                    amount,
                    started,
                    time.monotonic(),
                    0,
                    f"{type(error).__name__}: {error}",
                )
                conn.close()
                conn = None
            self._record(outcome)
        if conn is not None:
            conn.close()

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)


def settle(outcomes: list[Outcome], attempts: int = 5) -> dict[str, int]:
    """Ask again, with the same key, for every request whose fate the client
    did not learn (no answer, a 5xx): the Transaction API answers a known key
    with the first answer, so each one ends as queued (202) or refused."""
    counts = {"replayed": 0, "queued_now": 0, "unsettled": 0}
    for outcome in outcomes:
        if outcome.status == 202 or 400 <= outcome.status < 500:
            continue
        for attempt in range(attempts):
            try:
                status, headers, body = send(
                    None, outcome.user, outcome.key, outcome.amount, TOKENS.get(outcome.user)
                )
            except (OSError, http.client.HTTPException):
                status, headers, body = 0, {}, None
            if status == 202:
                outcome.transaction_id = body["transaction_id"]
                if headers.get("Idempotent-Replayed") == "true":
                    outcome.replayed = True
                    counts["replayed"] += 1
                else:
                    counts["queued_now"] += 1
                break
            time.sleep(1 + attempt)
        else:
            counts["unsettled"] += 1
            log(f"unsettled: {outcome}")
    return counts
