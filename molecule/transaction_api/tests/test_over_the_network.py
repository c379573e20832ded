"""Calls from the Redis host to the Transaction API, and what lands in Redis."""

import json

from conftest import http, make_token

testinfra_hosts = ["transaction-api-redis"]

URL = "https://172.30.6.10:5000"


def test_health_and_ready(host):
    assert http(host, "GET", URL + "/health")["status"] == 200
    ready = http(host, "GET", URL + "/ready")
    assert ready["status"] == 200, ready


def test_transaction_queued_on_the_stream(host, admin_password):
    token = make_token(41, "molecule-alice", True)
    answer = http(host, "POST", URL + "/transactions", token, {"amount": 2000, "currency": "GBP"})
    assert answer["status"] == 202, answer
    transaction_id = answer["body"]["transaction_id"]
    entries = host.run(
        "REDISCLI_AUTH=%s redis-cli-tls --no-auth-warning --json XRANGE loyalty:transactions - +",
        admin_password,
    )
    assert entries.rc == 0, entries.stderr
    assert transaction_id in entries.stdout
    assert json.dumps("molecule-alice") in entries.stdout


def test_user_who_may_not_transact_refused(host):
    token = make_token(43, "molecule-charlie", False)
    answer = http(host, "POST", URL + "/transactions", token, {"amount": 100, "currency": "GBP"})
    assert answer["status"] == 403, answer


def test_amount_above_max_amount_refused(host):
    token = make_token(41, "molecule-alice", True)
    answer = http(host, "POST", URL + "/transactions", token, {"amount": 500001, "currency": "GBP"})
    assert answer["status"] == 422, answer


def test_token_from_another_issuer_refused(host):
    token = make_token(41, "molecule-alice", True, issuer="someone-else")
    assert http(host, "GET", URL + "/loyalty", token)["status"] == 401


def test_missing_token_refused(host):
    assert http(host, "GET", URL + "/loyalty")["status"] == 401
