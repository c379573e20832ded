"""/metrics of the Auth API: tokens issued and refused by reason, two gunicorn workers."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def tokens(kit: Any, port: int) -> dict[tuple[str, str], float]:
    reply = kit.call(port, "GET", "/metrics")
    assert reply.status == 200, reply.body
    found = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            if sample.name == "loyalty_tokens_total":
                found[(sample.labels["outcome"], sample.labels["reason"])] = sample.value
    return found


def test_tokens_issued_and_refused_by_reason(
    kit: Any, spawn: Any, jwt_keys: Any, users_file: Any
) -> None:
    api = spawn("auth-api", kit.auth_env(jwt_keys, users_file, WEB_CONCURRENCY=2))
    good = {"username": "alice", "password": kit.DEMO_PASSWORD}
    bad = {"username": "alice", "password": "wrong"}
    answers = [kit.call(api.port, "POST", "/token", form=good).status for _ in range(3)]
    answers += [kit.call(api.port, "POST", "/token", form=bad).status for _ in range(2)]
    answers.append(kit.call(api.port, "POST", "/token", form={"username": " "}).status)
    answers.append(
        kit.call(api.port, "POST", "/token", b"<xml/>", {"Content-Type": "text/xml"}).status
    )
    assert answers == [200, 200, 200, 401, 401, 422, 415]
    for _ in range(3):  # any worker answers with the sum of both
        assert tokens(kit, api.port) == {
            ("issued", ""): 3,
            ("refused", "bad_credentials"): 2,
            ("refused", "blank_field"): 1,
            ("refused", "malformed_request"): 1,
        }
