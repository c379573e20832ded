"""JSON Web Tokens for the scenarios' tests.

Either fetched from the Auth API through a scenario's router (`Tokens`), as
a client gets them, or made here, the one place tests make tokens: `mint`
signs claims with the Auth API's key, `encode` makes any other token (the
forgeries a service must refuse). Signed by this module rather than by
PyJWT, which the services verify tokens with, so that the tests do not
share a library's mistakes with the code they check.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from http_requests import Answer

# The header the Auth API writes: Ed25519 signatures.
EDDSA_HEADER: Mapping[str, str] = {"alg": "EdDSA", "typ": "JWT"}


def b64url(data: bytes) -> str:
    """Base64url without padding, as in every part of a token."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj: Mapping[str, Any]) -> str:
    """A header or a payload as a token part (compact JSON, as PyJWT writes it)."""
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def encode(
    claims: Mapping[str, Any],
    sign: Callable[[bytes], bytes],
    header: Mapping[str, Any] = EDDSA_HEADER,
) -> str:
    """`header.claims.signature`, the signature `sign` makes of the first
    two parts. Any header and signature: forgeries are made this way too."""
    signing_input = f"{segment(header)}.{segment(claims)}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def mint(claims: Mapping[str, Any], private_key: Path) -> str:
    """A token the services accept when `claims` are valid: signed with the
    Ed25519 key in the PEM file `private_key` (the Auth API's)."""
    key = load_pem_private_key(private_key.read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey), f"{private_key} is not an Ed25519 key"
    return encode(claims, key.sign)


def _part(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def header_of(token: str) -> dict[str, Any]:
    """The header of a token, signature unchecked."""
    return _part(token, 0)


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a token, signature unchecked."""
    return _part(token, 1)


class Tokens:
    """Tokens per user from the Auth API, reused while young.

    The router limits /authentication/token to 10 requests per 10 s per
    client address, and every test runs from the same address: a token is
    reused until it is `max_age` seconds old, and a 429 waits Retry-After.
    `request` sends one request through the scenario's router; `password`
    reads the users' password.
    """

    def __init__(self, request: Callable[..., Answer], password: Callable[[], str]) -> None:
        self._request = request
        self._password = password
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._backoff: dict[str, float] = {}
        self._refreshing: dict[str, threading.Lock] = {}
        self.refresh_failures = 0

    def fresh(self, username: str, deadline: float = 60) -> tuple[str, float]:
        """A new token and the time it was issued (bounded retries)."""
        end = time.monotonic() + deadline
        while True:
            issued = time.time()
            try:
                status, headers, data = self._request(
                    "POST",
                    "/authentication/token",
                    {"username": username, "password": self._password()},
                )
            except (OSError, http.client.HTTPException) as error:
                status, headers, data = 0, {}, str(error)
            if status == 200:
                with self._lock:
                    self._tokens[username] = (data["token"], issued)
                return data["token"], issued
            with self._lock:
                self.refresh_failures += 1
            if time.monotonic() > end:
                raise AssertionError(f"no token for {username}: {status} {data}")
            time.sleep(float(headers.get("Retry-After", 1)) if status == 429 else 1)

    def get(self, username: str, max_age: float = 15) -> str:
        """A token at most `max_age` seconds old, fetched when there is none."""
        with self._lock:
            cached = self._tokens.get(username)
        if cached and time.time() - cached[1] < max_age:
            return cached[0]
        return self.fresh(username)[0]

    def get_lenient(
        self, username: str, max_age: float = 10, must_live: float = 26, wait: float = 180
    ) -> str:
        """For clients under load while hosts fail. Refresh when older than
        max_age; while the Auth API cannot give one, keep the old token until
        it is must_live seconds old, then wait (at most `wait` seconds)
        rather than send a request bound to fail. A failed refresh is retried
        5 s later, below the router's rate limit."""
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                cached = self._tokens.get(username)
                retry_at = self._backoff.get(username, 0.0)
            age = time.time() - cached[1] if cached else float("inf")
            if cached and age < max_age:
                return cached[0]
            # One thread per user refreshes; the others keep the old token.
            refresher = self._refreshing.setdefault(username, threading.Lock())
            if time.monotonic() >= retry_at and refresher.acquire(blocking=False):
                try:
                    return self.fresh(username, deadline=0)[0]
                except AssertionError:
                    with self._lock:
                        self._backoff[username] = time.monotonic() + 5
                finally:
                    refresher.release()
            if cached and age < must_live:
                return cached[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no token for {username} within {wait} s")
            time.sleep(0.5)
