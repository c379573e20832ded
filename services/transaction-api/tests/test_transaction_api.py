"""The Transaction API over real HTTP, real gunicorn and a real redis-server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest

STREAM = "loyalty:transactions"
BEARER_ERROR = 'Bearer error="invalid_token"'


def claims_for(
    user_id: int = 1, username: str = "alice", can_transact: bool = True, **over: Any
) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "user_id": user_id,
        "username": username,
        "can_transact": can_transact,
        "sub": str(user_id),
        "iat": now,
        "exp": now + 30,
        "jti": uuid.uuid4().hex,
        "iss": "loyalty-auth",
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def craft(header: dict[str, Any], claims: dict[str, Any], sign: Any) -> str:
    """A JWT assembled by hand, so that any header and signature can be forged."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


@pytest.fixture
def port(transaction_api: Any) -> int:
    return int(transaction_api.port)


@pytest.fixture
def r(shared_redis: Any) -> Any:
    client = shared_redis.client()
    yield client
    client.close()


@pytest.fixture
def sign(jwt_keys: Any) -> Any:
    def make(**over: Any) -> str:
        return jwt.encode(claims_for(**over), jwt_keys.private_key, algorithm="EdDSA")

    return make


@pytest.fixture
def alice(sign: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {sign()}"}


def post(
    kit: Any, port: int, body: Any = None, headers: dict[str, str] | None = None, **kw: Any
) -> Any:
    return kit.call(port, "POST", "/transactions", body, headers, **kw)


def assert_invalid_token(reply: Any) -> None:
    assert reply.status == 401, reply.body
    assert reply.headers["WWW-Authenticate"] == BEARER_ERROR
    assert reply.content_type == "application/json"
    assert reply.json["error"]


# ---------------------------------------------------------------- accepted


def test_original_httpie_form_command_with_token_field(
    kit: Any, port: int, sign: Any, r: Any
) -> None:
    before = r.xlen(STREAM)
    result = kit.httpie(
        "--form", "POST", f":{port}/transactions", f"token={sign()}", "amount=2000", "currency=GBP"
    )
    assert result.returncode == 0, result.stderr
    assert "HTTP/1.1 202" in result.stdout
    body = json.loads(result.stdout[result.stdout.index("{") :])
    assert body["status"] == "queued"
    assert (body["user_id"], body["amount"], body["currency"]) == (1, 2000, "GBP")
    assert r.xlen(STREAM) == before + 1


def test_httpie_json_mode_sends_amount_as_a_string_and_it_is_accepted(
    kit: Any, port: int, sign: Any
) -> None:
    result = kit.httpie(
        "POST",
        f":{port}/transactions",
        f"Authorization:Bearer {sign()}",
        "amount=2000",
        "currency=GBP",
    )
    assert "HTTP/1.1 202" in result.stdout, result.stdout
    result = kit.httpie(
        "POST",
        f":{port}/transactions",
        f"Authorization:Bearer {sign()}",
        "amount:=2000",
        "currency=EUR",
    )
    assert "HTTP/1.1 202" in result.stdout, result.stdout


def test_accepted_transaction_is_on_the_stream_with_the_documented_fields(
    kit: Any, port: int, alice: dict[str, str], r: Any
) -> None:
    reply = post(kit, port, {"amount": 1234, "currency": "USD"}, alice)
    assert reply.status == 202
    body = reply.json
    assert set(body) == {"transaction_id", "status", "user_id", "amount", "currency"}
    uuid.UUID(body["transaction_id"])
    _entry_id, fields = r.xrevrange(STREAM, count=1)[0]
    assert list(fields) == [
        "transaction_id",
        "user_id",
        "username",
        "amount",
        "currency",
        "accepted_at",
    ]
    assert fields["transaction_id"] == body["transaction_id"]
    assert (fields["user_id"], fields["username"], fields["amount"], fields["currency"]) == (
        "1",
        "alice",
        "1234",
        "USD",
    )
    assert fields["accepted_at"].endswith("Z") and "T" in fields["accepted_at"]


def test_bearer_scheme_is_case_insensitive(kit: Any, port: int, sign: Any) -> None:
    reply = post(
        kit,
        port,
        form={"amount": "1", "currency": "GBP"},
        headers={"Authorization": f"bearer {sign()}"},
    )
    assert reply.status == 202


def test_header_wins_over_the_token_field(kit: Any, port: int, sign: Any) -> None:
    reply = post(
        kit,
        port,
        form={"amount": "5", "currency": "GBP", "token": "garbage"},
        headers={"Authorization": f"Bearer {sign(user_id=2, username='bob')}"},
    )
    assert reply.status == 202 and reply.json["user_id"] == 2


def test_amount_at_max_amount_is_accepted(kit: Any, port: int, alice: dict[str, str]) -> None:
    assert post(kit, port, {"amount": 100000, "currency": "GBP"}, alice).status == 202


def test_body_of_exactly_16_kib_is_accepted(kit: Any, port: int, alice: dict[str, str]) -> None:
    prefix = '{"amount": 7, "currency": "GBP"'
    body = prefix + " " * (16384 - len(prefix) - 1) + "}"
    reply = post(kit, port, body, {**alice, "Content-Type": "application/json"})
    assert reply.status == 202


def test_multipart_form_is_accepted(kit: Any, port: int, alice: dict[str, str]) -> None:
    body = (
        '--b\r\nContent-Disposition: form-data; name="amount"\r\n\r\n300\r\n'
        '--b\r\nContent-Disposition: form-data; name="currency"\r\n\r\nGBP\r\n--b--\r\n'
    )
    reply = post(kit, port, body, {**alice, "Content-Type": "multipart/form-data; boundary=b"})
    assert reply.status == 202, reply.body


# ------------------------------------------------------------------- tokens


def test_missing_token_is_401(kit: Any, port: int, r: Any) -> None:
    before = r.xlen(STREAM)
    assert_invalid_token(post(kit, port, form={"amount": "1", "currency": "GBP"}))
    assert r.xlen(STREAM) == before


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer ", "Basic YWxpY2U6eA==", "Token abc", "Bearer abc.def"]
)
def test_malformed_authorization_is_401(kit: Any, port: int, header: str) -> None:
    assert_invalid_token(
        post(kit, port, form={"amount": "1", "currency": "GBP"}, headers={"Authorization": header})
    )


def _forgeries(jwt_keys: Any, other_keys: Any) -> dict[str, str]:
    good = claims_for()
    genuine = jwt.encode(good, jwt_keys.private_key, algorithm="EdDSA")
    head, payload, signature = genuine.split(".")
    none_header = b64(json.dumps({"alg": "none"}).encode())
    altered = b64(json.dumps({**good, "user_id": 2, "sub": "2", "username": "bob"}).encode())
    return {
        "alg none": craft({"alg": "none", "typ": "JWT"}, good, lambda _m: b""),
        "alg none, signature kept": f"{none_header}.{payload}.{signature}",
        "HS256 keyed with the public key": craft(
            {"alg": "HS256", "typ": "JWT"},
            good,
            lambda m: hmac.new(jwt_keys.public_pem, m, hashlib.sha256).digest(),
        ),
        "altered payload": f"{head}.{altered}.{signature}",
        "signed by another key": jwt.encode(good, other_keys.private_key, algorithm="EdDSA"),
        "wrong issuer": jwt.encode(
            claims_for(iss="someone-else"), jwt_keys.private_key, algorithm="EdDSA"
        ),
        "no issuer": jwt.encode(claims_for(iss=None), jwt_keys.private_key, algorithm="EdDSA"),
        "expired": jwt.encode(
            claims_for(iat=int(time.time()) - 60, exp=int(time.time()) - 1),
            jwt_keys.private_key,
            algorithm="EdDSA",
        ),
        "not yet valid (nbf)": jwt.encode(
            claims_for(nbf=int(time.time()) + 60), jwt_keys.private_key, algorithm="EdDSA"
        ),
        "issued in the future": jwt.encode(
            claims_for(iat=int(time.time()) + 60, exp=int(time.time()) + 90),
            jwt_keys.private_key,
            algorithm="EdDSA",
        ),
        "missing jti": jwt.encode(claims_for(jti=None), jwt_keys.private_key, algorithm="EdDSA"),
        "missing exp": jwt.encode(claims_for(exp=None), jwt_keys.private_key, algorithm="EdDSA"),
        "user_id a string": jwt.encode(
            claims_for(user_id="1"), jwt_keys.private_key, algorithm="EdDSA"
        ),
        "can_transact a string": jwt.encode(
            claims_for(can_transact="true"), jwt_keys.private_key, algorithm="EdDSA"
        ),
        "sub not matching user_id": jwt.encode(
            claims_for(sub="2"), jwt_keys.private_key, algorithm="EdDSA"
        ),
        "truncated": genuine[:-5],
        "garbage": "not-a-token",
    }


FORGERIES = [
    "alg none", "alg none, signature kept", "HS256 keyed with the public key", "altered payload",
    "signed by another key", "wrong issuer", "no issuer", "expired", "not yet valid (nbf)",
    "issued in the future", "missing jti", "missing exp", "user_id a string",
    "can_transact a string", "sub not matching user_id", "truncated", "garbage",
]  # fmt: skip


@pytest.mark.parametrize("case", FORGERIES)
def test_forged_or_invalid_token_is_401_and_queues_nothing(
    kit: Any, port: int, jwt_keys: Any, other_keys: Any, r: Any, case: str
) -> None:
    token = _forgeries(jwt_keys, other_keys)[case]
    before = r.xlen(STREAM)
    assert_invalid_token(
        post(kit, port, {"amount": 100, "currency": "GBP"}, {"Authorization": f"Bearer {token}"})
    )
    # The originals' form field is checked exactly the same way.
    assert_invalid_token(post(kit, port, form={"amount": "100", "currency": "GBP", "token": token}))
    assert_invalid_token(
        kit.call(port, "GET", "/loyalty", headers={"Authorization": f"Bearer {token}"})
    )
    assert r.xlen(STREAM) == before


def test_token_from_auth_api_expires_after_its_configured_lifetime(
    kit: Any, spawn: Any, port: int, jwt_keys: Any, users_file: Any
) -> None:
    auth = spawn("auth-api", kit.auth_env(jwt_keys, users_file, TOKEN_TTL_SECONDS=2))
    reply = kit.call(
        auth.port, "POST", "/token", form={"username": "alice", "password": kit.DEMO_PASSWORD}
    )
    assert reply.json["expires_in"] == 2
    headers = {"Authorization": f"Bearer {reply.json['token']}"}
    assert post(kit, port, {"amount": 1, "currency": "GBP"}, headers).status == 202
    exp = jwt.decode(reply.json["token"], options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, exp - time.time()) + 0.05)
    assert_invalid_token(post(kit, port, {"amount": 1, "currency": "GBP"}, headers))


# ---------------------------------------------------------------- 403, order


def test_charlie_is_refused_with_403_and_nothing_is_queued(
    kit: Any, port: int, sign: Any, r: Any
) -> None:
    before = r.xlen(STREAM)
    token = sign(user_id=3, username="charlie", can_transact=False)
    reply = post(kit, port, form={"amount": "2000", "currency": "GBP", "token": token})
    assert (reply.status, reply.json) == (403, {"error": "User cannot transact"})
    # 403 comes before field validation: charlie learns nothing about it.
    reply = post(kit, port, {"amount": "bad", "bogus": 1}, {"Authorization": f"Bearer {token}"})
    assert reply.status == 403
    assert r.xlen(STREAM) == before


def test_anonymous_caller_gets_401_before_any_field_error(kit: Any, port: int) -> None:
    assert_invalid_token(post(kit, port, {"amount": "nonsense", "unknown": True}))


def test_body_checks_come_before_the_token(kit: Any, port: int) -> None:
    assert post(kit, port, b"x" * 20000, {"Content-Type": "application/json"}).status == 413
    assert post(kit, port, b"amount=1", {"Content-Type": "text/plain"}).status == 415
    assert post(kit, port, b"[1]", {"Content-Type": "application/json"}).status == 400


# ------------------------------------------------------------------- fields


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"currency": "GBP"}, "amount", "Amount is blank"),
        ({"amount": "", "currency": "GBP"}, "amount", "Amount is blank"),
        ({"amount": None, "currency": "GBP"}, "amount", "Amount is blank"),
        ({"amount": "20.00", "currency": "GBP"}, "amount", "whole number"),
        ({"amount": 20.0, "currency": "GBP"}, "amount", "whole number"),
        ({"amount": 20.5, "currency": "GBP"}, "amount", "whole number"),
        ({"amount": "2e3", "currency": "GBP"}, "amount", "whole number"),
        ({"amount": 2e3, "currency": "GBP"}, "amount", "whole number"),
        ({"amount": "NaN", "currency": "GBP"}, "amount", "whole number"),
        ({"amount": True, "currency": "GBP"}, "amount", "whole number"),
        ({"amount": "-5", "currency": "GBP"}, "amount", "whole number"),
        ({"amount": " 5", "currency": "GBP"}, "amount", "whole number"),
        ({"amount": "\u0661\u0662", "currency": "GBP"}, "amount", "whole number"),
        ({"amount": [1], "currency": "GBP"}, "amount", "whole number"),
        ({"amount": -5, "currency": "GBP"}, "amount", "at least 1"),
        ({"amount": 0, "currency": "GBP"}, "amount", "at least 1"),
        ({"amount": "0", "currency": "GBP"}, "amount", "at least 1"),
        ({"amount": 100001, "currency": "GBP"}, "amount", "at most 100000"),
        ({"amount": "9" * 40, "currency": "GBP"}, "amount", "at most 100000"),
        ({"amount": 1}, "currency", "Currency is blank"),
        ({"amount": 1, "currency": " "}, "currency", "Currency is blank"),
        ({"amount": 1, "currency": "gbp"}, "currency", "three upper-case letters"),
        ({"amount": 1, "currency": "GBPX"}, "currency", "three upper-case letters"),
        ({"amount": 1, "currency": "GB"}, "currency", "three upper-case letters"),
        ({"amount": 1, "currency": "GB\n"}, "currency", "three upper-case letters"),
        ({"amount": 1, "currency": "ÄBC"}, "currency", "three upper-case letters"),
        ({"amount": 1, "currency": 826}, "currency", "three upper-case letters"),
        ({"amount": 1, "currency": "GBP", "note": "hi"}, "note", "Unknown field: note"),
        ({"amount": 1, "currency": "GBP", "user_id": 2}, "user_id", "Unknown field: user_id"),
    ],
)
def test_bad_field_is_422_naming_it(
    kit: Any,
    port: int,
    alice: dict[str, str],
    r: Any,
    body: dict[str, Any],
    field: str,
    message: str,
) -> None:
    before = r.xlen(STREAM)
    reply = post(kit, port, body, alice)
    assert reply.status == 422, reply.body
    assert reply.json["field"] == field
    assert message in reply.json["error"]
    assert r.xlen(STREAM) == before


@pytest.mark.parametrize("token", [123, None, True, ["x"], {"token": "x"}])
def test_token_field_that_is_not_a_string_is_422_beside_the_header(
    kit: Any, port: int, alice: dict[str, str], r: Any, token: Any
) -> None:
    before = r.xlen(STREAM)
    reply = post(kit, port, {"amount": 1, "currency": "GBP", "token": token}, alice)
    assert (reply.status, reply.json) == (
        422,
        {"error": "Token must be a string", "field": "token"},
    )
    # Without the header it authenticates nothing: the usual 401.
    assert_invalid_token(post(kit, port, {"amount": 1, "currency": "GBP", "token": token}))
    assert r.xlen(STREAM) == before


def test_nan_literal_in_json_is_refused(kit: Any, port: int, alice: dict[str, str]) -> None:
    reply = post(
        kit,
        port,
        '{"amount": NaN, "currency": "GBP"}',
        {**alice, "Content-Type": "application/json"},
    )
    assert reply.status in (400, 422)
    assert reply.status != 202


def test_missing_amount_in_a_form_is_422_not_500(kit: Any, port: int, sign: Any) -> None:
    reply = post(kit, port, form={"token": sign(), "currency": "GBP"})
    assert (reply.status, reply.json["field"]) == (422, "amount")


def test_repeated_form_field_is_422(kit: Any, port: int, alice: dict[str, str]) -> None:
    body = "amount=1&amount=2&currency=GBP"
    reply = post(kit, port, body, {**alice, "Content-Type": "application/x-www-form-urlencoded"})
    assert (reply.status, reply.json["field"]) == (422, "amount")


# ------------------------------------------------------------- idempotency


def test_same_idempotency_key_returns_the_same_id_and_queues_once(
    kit: Any, port: int, alice: dict[str, str], sign: Any, r: Any
) -> None:
    key = f"order-{uuid.uuid4()}"
    before = r.xlen(STREAM)
    first = post(kit, port, {"amount": 10, "currency": "GBP"}, {**alice, "Idempotency-Key": key})
    second = post(kit, port, {"amount": 10, "currency": "GBP"}, {**alice, "Idempotency-Key": key})
    assert first.status == second.status == 202
    assert first.json["transaction_id"] == second.json["transaction_id"]
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert r.xlen(STREAM) == before + 1
    ttl = r.ttl(f"loyalty:idempotency:1:{key}")
    assert 86000 < ttl <= 86400
    assert r.get(f"loyalty:idempotency:1:{key}") == first.json["transaction_id"]
    # Another user's identical key is a different transaction.
    bob = {"Authorization": f"Bearer {sign(user_id=2, username='bob')}", "Idempotency-Key": key}
    third = post(kit, port, {"amount": 10, "currency": "GBP"}, bob)
    assert third.json["transaction_id"] != first.json["transaction_id"]
    # A different key queues again.
    fourth = post(
        kit, port, {"amount": 10, "currency": "GBP"}, {**alice, "Idempotency-Key": key + "x"}
    )
    assert fourth.json["transaction_id"] != first.json["transaction_id"]
    assert r.xlen(STREAM) == before + 3


@pytest.mark.parametrize("key", ["", "a" * 201, "has space", "caf\u00e9"])
def test_bad_idempotency_key_is_422(kit: Any, port: int, alice: dict[str, str], key: str) -> None:
    reply = post(kit, port, {"amount": 1, "currency": "GBP"}, {**alice, "Idempotency-Key": key})
    assert (reply.status, reply.json["field"]) == (422, "Idempotency-Key")


# -------------------------------------------------------- loyalty, health


def test_loyalty_is_zero_before_any_award_then_shows_the_workers_hash(
    kit: Any, port: int, sign: Any, r: Any
) -> None:
    headers = {"Authorization": f"Bearer {sign(user_id=42, username='zed')}"}
    reply = kit.call(port, "GET", "/loyalty", headers=headers)
    assert (reply.status, reply.json) == (
        200,
        {"user_id": 42, "username": "zed", "stamps": 0, "vouchers": 0, "transactions": 0},
    )
    r.hset(
        "loyalty:user:42",
        mapping={"stamps": 3, "vouchers": 2, "transactions": 23, "username": "zed"},
    )
    reply = kit.call(port, "GET", "/loyalty", headers=headers)
    assert reply.json == {
        "user_id": 42,
        "username": "zed",
        "stamps": 3,
        "vouchers": 2,
        "transactions": 23,
    }


def test_loyalty_without_token_is_401(kit: Any, port: int) -> None:
    assert_invalid_token(kit.call(port, "GET", "/loyalty"))


def test_health_and_ready(kit: Any, port: int) -> None:
    assert kit.call(port, "GET", "/health").json == {"healthy": True}
    ready = kit.call(port, "GET", "/ready")
    assert (ready.status, ready.json) == (200, {"ready": True})


def test_openapi_matches_the_routes_and_statuses(kit: Any, port: int) -> None:
    doc = kit.call(port, "GET", "/openapi.json").json
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/transactions", "/loyalty", "/health", "/ready", "/openapi.json"}
    post_op = doc["paths"]["/transactions"]["post"]
    assert set(post_op["responses"]) == {"202", "400", "401", "403", "413", "415", "422", "503"}
    assert post_op["parameters"][0]["name"] == "Idempotency-Key"
    assert set(doc["paths"]["/loyalty"]["get"]["responses"]) == {"200", "401", "503"}
    assert set(doc["paths"]["/ready"]["get"]["responses"]) == {"200", "503"}
    amount = doc["components"]["schemas"]["Accepted"]["properties"]["amount"]
    assert amount["maximum"] == 100000  # MAX_AMOUNT of this instance


def test_wrong_method_and_unknown_path_are_json(kit: Any, port: int) -> None:
    reply = kit.call(port, "GET", "/transactions")
    assert (reply.status, reply.json) == (405, {"error": "Method not allowed"})
    reply = kit.call(port, "DELETE", "/loyalty")
    assert reply.status == 405 and reply.content_type == "application/json"
    reply = kit.call(port, "POST", "/transactions/")
    assert (reply.status, reply.json) == (404, {"error": "Not found"})


# ------------------------------------------------------------ Redis outage


def test_redis_stopped_then_restarted_under_the_api(
    kit: Any, spawn: Any, redis_server: Any, jwt_keys: Any, sign: Any
) -> None:
    api = spawn(
        "transaction-api", kit.transaction_env(jwt_keys, redis_server.url, REDIS_SOCKET_TIMEOUT=1)
    )
    headers = {"Authorization": f"Bearer {sign()}"}
    body = {"amount": 10, "currency": "GBP"}
    assert post(kit, api.port, body, headers).status == 202

    redis_server.stop()
    started = time.monotonic()
    reply = post(kit, api.port, body, headers)
    assert reply.status == 503 and reply.headers["Retry-After"] == "1"
    assert reply.json["error"]
    assert time.monotonic() - started < 3
    reply = post(kit, api.port, body, {**headers, "Idempotency-Key": "during-outage"})
    assert reply.status == 503
    ready = kit.call(api.port, "GET", "/ready")
    assert ready.status == 503 and ready.headers["Retry-After"] and ready.json["ready"] is False
    assert kit.call(api.port, "GET", "/loyalty", headers=headers).status == 503
    assert kit.call(api.port, "GET", "/health").status == 200  # liveness is not readiness

    redis_server.start()  # same port, empty data: the API must reconnect alone
    kit.wait_until(lambda: kit.call(api.port, "GET", "/ready").status == 200, timeout=10)
    assert post(kit, api.port, body, headers).status == 202
    # The idempotent path (a Lua script the new server has never seen) too.
    reply = post(kit, api.port, body, {**headers, "Idempotency-Key": "during-outage"})
    assert reply.status == 202
    client = redis_server.client()
    assert client.xlen(STREAM) == 2
    client.close()
    assert api.process.poll() is None


def test_api_starts_while_redis_is_down(kit: Any, spawn: Any, jwt_keys: Any, sign: Any) -> None:
    url = f"redis://127.0.0.1:{kit.free_port()}/0"
    api = spawn("transaction-api", kit.transaction_env(jwt_keys, url))
    assert kit.call(api.port, "GET", "/ready").status == 503
    reply = post(
        kit, api.port, {"amount": 1, "currency": "GBP"}, {"Authorization": f"Bearer {sign()}"}
    )
    assert reply.status == 503


def test_redis_password_file_is_used(
    kit: Any, spawn: Any, redis_server: Any, jwt_keys: Any, sign: Any, tmp_path: Any
) -> None:
    client = redis_server.client()
    client.config_set("requirepass", "s3cret-pw")
    client.close()
    password_file = tmp_path / "redis.password"
    password_file.write_text("s3cret-pw\nignored second line\n")
    api = spawn(
        "transaction-api",
        kit.transaction_env(
            jwt_keys,
            f"redis://:wrong@127.0.0.1:{redis_server.port}/0",  # the file wins
            REDIS_PASSWORD_FILE=password_file,
        ),
    )
    assert kit.call(api.port, "GET", "/ready").status == 200
    reply = post(
        kit, api.port, {"amount": 1, "currency": "GBP"}, {"Authorization": f"Bearer {sign()}"}
    )
    assert reply.status == 202


def test_httpie_get_loyalty(kit: Any, port: int, sign: Any) -> None:
    result = kit.httpie("GET", f":{port}/loyalty", f"Authorization:Bearer {sign()}")
    assert "HTTP/1.1 200" in result.stdout, result.stdout
    assert '"user_id": 1' in result.stdout


def test_sigterm_stops_gracefully_with_status_0(
    kit: Any, spawn: Any, shared_redis: Any, jwt_keys: Any
) -> None:
    import signal

    api = spawn("transaction-api", kit.transaction_env(jwt_keys, shared_redis.url))
    api.process.send_signal(signal.SIGTERM)
    assert api.process.wait(timeout=15) == 0
    assert "Traceback" not in api.log()
