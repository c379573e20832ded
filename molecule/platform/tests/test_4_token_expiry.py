"""A token is refused once its 30 s (the real default) have passed, on both API hosts.

The token was issued and used by test_2 (so the wait overlaps the tests in
between); run alone, this file fetches one and waits the whole 30 s.
"""

from __future__ import annotations

import time

from helpers import ADDRESSES, API_HOSTS, STATE, TOKENS, curl_from_edge, log, request

LIFETIME = 30


def test_token_refused_after_its_lifetime():
    token, issued = STATE.get("lifetime_token") or TOKENS.fresh("alice")
    wait = issued + LIFETIME + 1 - time.time()
    if wait > 0:
        log(f"waiting {wait:.1f} s for the token to expire")
        time.sleep(wait)
    status, headers, body = request(
        "POST", "/transactions/transactions", {"token": token, "amount": "100", "currency": "GBP"}
    )
    assert status == 401, body
    assert "invalid_token" in headers.get("WWW-Authenticate", "")
    for host in API_HOSTS:
        code, body = curl_from_edge(ADDRESSES[host], "/transactions", token)
        assert code == 401, f"{host}: {code} {body}"
    # A fresh token works again.
    status, _, body = request(
        "POST",
        "/transactions/transactions",
        {"token": TOKENS.fresh("alice")[0], "amount": "100", "currency": "GBP"},
    )
    assert status == 202, body
