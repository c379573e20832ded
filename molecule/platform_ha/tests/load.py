"""A bounded client through the floating address: threads with http.client,
each transaction with its own Idempotency-Key, re-sent with the same key
after a 503 or a dropped connection, every attempt recorded with its times."""

from __future__ import annotations

import http.client
import random
import time
import uuid
from dataclasses import dataclass, field

from helpers import ROUTER_PORT, TOKENS, VIP, request, tls
from http_requests import connection
from load_schedule import ScheduledLoad

CLIENT_TIMEOUT = 10  # seconds for one attempt
RESEND_DELAY = 0.5  # seconds between two attempts of one transaction
GIVE_UP_AFTER = 45  # seconds after the first attempt
# Seconds an attempt waits at most for a token while the Auth API cannot
# give one: less than the join's grace, so that a thread waiting for a
# token still ends in time.
TOKEN_WAIT = 60


@dataclass
class Attempt:
    started: float
    finished: float
    status: int  # 0: no HTTP answer
    error: str = ""


@dataclass
class Transaction:
    index: int
    user: str
    key: str
    amount: int
    attempts: list[Attempt] = field(default_factory=list)
    transaction_id: str = ""

    @property
    def status(self) -> int:
        return self.attempts[-1].status if self.attempts else 0


class Client(ScheduledLoad):
    """`threads` threads share a schedule of at most `total` transactions at
    `rate` per second, started within `max_seconds`, alternating `users`;
    each transaction is re-sent until it is accepted or refused for good."""

    join_grace = GIVE_UP_AFTER + 2 * CLIENT_TIMEOUT

    def __init__(self, users, total: int, rate: float, threads: int, max_seconds: float) -> None:
        super().__init__(users, total, rate, threads, max_seconds)
        self.transactions: list[Transaction] = []

    def _get_tokens(self) -> None:
        for user in self.users:
            TOKENS.get(user)

    def _run(self) -> None:
        rng = random.Random()
        conn = None
        while True:
            index = self._slot()
            if index is None:
                break
            due = self._due(index)
            if due - self.t0 > self.max_seconds:
                break
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            tx = Transaction(
                index, self.users[index % len(self.users)], str(uuid.uuid4()), rng.randint(1, 5000)
            )
            with self._lock:
                self.transactions.append(tx)
            conn = self._send(tx, conn)
        if conn is not None:
            conn.close()

    def _send(self, tx: Transaction, conn):
        first = time.monotonic()
        while True:
            started = time.monotonic()
            try:
                token = TOKENS.get_lenient(tx.user, wait=TOKEN_WAIT)
                if conn is None:
                    conn = connection(VIP, ROUTER_PORT, timeout=CLIENT_TIMEOUT, context=tls())
                status, headers, body = request(
                    "POST",
                    "/transactions/transactions",
                    {"amount": str(tx.amount), "currency": "GBP"},
                    headers={"Authorization": f"Bearer {token}", "Idempotency-Key": tx.key},
                    conn=conn,
                )
                attempt = Attempt(started, time.monotonic(), status)
                if status == 202:
                    tx.transaction_id = body["transaction_id"]
                else:
                    attempt.error = str(body)[:200]
                if headers.get("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException, AssertionError) as error:
                attempt = Attempt(started, time.monotonic(), 0, f"{type(error).__name__}: {error}")
                if conn is not None:
                    conn.close()
                conn = None
            tx.attempts.append(attempt)
            # 202 ends it; so does a refusal that a new attempt cannot change.
            if attempt.status == 202 or (400 <= attempt.status < 500 and attempt.status != 401):
                return conn
            if time.monotonic() - first > GIVE_UP_AFTER:
                return conn
            time.sleep(RESEND_DELAY)
