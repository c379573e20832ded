"""End to end from the control machine through the router: HTTPie, tokens, forgeries."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    ADDRESSES,
    API_HOSTS,
    CA_FILE,
    FIGURES,
    ROUTER,
    ROUTER_PLAIN_PORT,
    SECRETS,
    STATE,
    TOKENS,
    curl_from_edge,
    demo_password,
    request,
)
from tokens import claims_of, encode, header_of, mint, segment

BASE = f"https://{ROUTER}"
# The Auth API's signing key, for the tokens this file signs itself.
PRIVATE_KEY = SECRETS / "jwt" / "ed25519.key"


def httpie(*args: str) -> tuple[int, dict | str]:
    """Run HTTPie's `https` as a user would (the README's commands, the
    platform's CA given with --verify), return (status, body)."""
    https = shutil.which("https") or str(Path(sys.executable).with_name("https"))
    result = subprocess.run(
        [https, "--ignore-stdin", "--print=hb", "--timeout=10", f"--verify={CA_FILE}", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    head, _, body = result.stdout.partition("\n\n")
    status = int(head.split()[1]) if head.startswith("HTTP/") else 0
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def test_whole_flow_with_httpie():
    password = demo_password()
    status, body = httpie(
        "--form", "POST", f"{BASE}/authentication/token", "username=alice", f"password={password}"
    )
    assert status == 200, body
    token = body["token"]
    status, body = httpie(
        "--form",
        "POST",
        f"{BASE}/transactions/transactions",
        f"token={token}",
        "amount=2000",
        "currency=GBP",
    )
    assert status == 202, body
    assert body["user_id"] == 1 and body["amount"] == 2000 and body["currency"] == "GBP"
    assert body["transaction_id"]
    # The worker awards it shortly; the loyalty read shows it.
    deadline = time.monotonic() + 30
    while True:
        status, state = httpie(
            "GET", f"{BASE}/transactions/loyalty", f"Authorization:Bearer {token}"
        )
        assert status == 200, state
        if state["transactions"] >= 1:
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    assert state["user_id"] == 1 and state["username"] == "alice"
    assert state["stamps"] + 10 * state["vouchers"] >= 1
    # The originals' documented errors keep their meaning.
    status, body = httpie(
        "--form", "POST", f"{BASE}/authentication/token", "username=alice", "password="
    )
    assert status == 422 and body["error"] == "Password is blank", body
    status, body = httpie(
        "--form", "POST", f"{BASE}/authentication/token", "username=alice", "password=wrong"
    )
    assert status == 401, body


def test_plain_http_is_redirected_to_the_same_path_over_https():
    path = "/transactions/loyalty?x=1"
    status, headers, _ = request("GET", path, port=ROUTER_PLAIN_PORT, context=None)
    assert status == 308, headers
    assert headers["Location"] == f"https://{ROUTER}{path}"
    status, headers, _ = request("GET", "/authentication/health")
    assert status == 200
    assert "max-age=" in headers.get("Strict-Transport-Security", ""), dict(headers)


def test_health_through_the_router():
    for path in ("/authentication/health", "/transactions/health"):
        status, _, body = request("GET", path)
        assert (status, body) == (200, {"healthy": True})
    status, _, body = request("GET", "/nowhere")
    assert status == 404 and body == {"error": "Not found"}


def test_token_works_at_once_on_both_api_hosts():
    token, issued = TOKENS.fresh("alice")
    # test_4 checks that this very token is refused once 30 s have passed.
    STATE["lifetime_token"] = (token, issued)
    status, _, body = request(
        "POST", "/transactions/transactions", {"token": token, "amount": "150", "currency": "GBP"}
    )
    assert status == 202, body
    for host in API_HOSTS:
        code, body = curl_from_edge(ADDRESSES[host], "/transactions", token)
        assert code == 202, f"{host}: {code} {body}"
    assert time.time() - issued < 30, "too slow to test the lifetime"


def test_charlie_cannot_transact():
    token = TOKENS.get("charlie")
    status, _, body = request(
        "POST", "/transactions/transactions", {"token": token, "amount": "100", "currency": "GBP"}
    )
    assert status == 403 and body == {"error": "User cannot transact"}


# --- Forgeries ----------------------------------------------------------------


def forgeries() -> dict[str, str]:
    valid = TOKENS.get("alice")
    header = header_of(valid)
    claims = claims_of(valid)
    public_key = (SECRETS / "jwt" / "ed25519.pub").read_bytes()
    now = int(time.time())
    forged = {}
    forged["alg none"] = encode(claims, lambda _: b"", header={"alg": "none", "typ": "JWT"})
    forged["HS256 keyed with the public key"] = encode(
        claims,
        lambda signing_input: hmac.new(public_key, signing_input, hashlib.sha256).digest(),
        header={"alg": "HS256", "typ": "JWT"},
    )
    header_b64, _, signature_b64 = valid.split(".")
    altered = dict(claims, user_id=2, username="bob")
    forged["altered payload"] = f"{header_b64}.{segment(altered)}.{signature_b64}"
    assert header["alg"] == "EdDSA"
    forged["wrong issuer"] = mint(dict(claims, iss="someone-else"), PRIVATE_KEY)
    forged["expired"] = mint(dict(claims, iat=now - 120, exp=now - 60), PRIVATE_KEY)
    return forged


def test_the_real_key_signs_a_token_that_is_accepted():
    """The forgeries below fail for their flaw, not for how they were made."""
    valid = TOKENS.get("alice")
    claims = claims_of(valid)
    now = int(time.time())
    token = mint(dict(claims, iat=now, exp=now + 30), PRIVATE_KEY)
    status, _, body = request(
        "GET", "/transactions/loyalty", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 200, body


@pytest.mark.parametrize(
    "kind",
    ["alg none", "HS256 keyed with the public key", "altered payload", "wrong issuer", "expired"],
)
def test_forged_token_refused(kind):
    token = forgeries()[kind]
    # Several times, so that both Transaction API hosts see it.
    for _ in range(4):
        status, headers, body = request(
            "POST",
            "/transactions/transactions",
            {"token": token, "amount": "100", "currency": "GBP"},
        )
        assert status == 401, f"{kind}: {status} {body}"
        assert headers.get("WWW-Authenticate", "").startswith("Bearer")
    for host in API_HOSTS:
        code, body = curl_from_edge(ADDRESSES[host], "/loyalty", token, method="GET")
        assert code == 401, f"{kind} on {host}: {code} {body}"
    FIGURES.setdefault("forgeries_refused", [])
    if kind not in FIGURES["forgeries_refused"]:
        FIGURES["forgeries_refused"].append(kind)
