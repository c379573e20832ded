"""The Auth API over real HTTP, under real gunicorn."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

pytestmark = pytest.mark.usefixtures("auth_api")


@pytest.fixture
def port(auth_api: Any) -> int:
    return int(auth_api.port)


def _token(reply: Any, kit: Any, keys: Any) -> dict[str, Any]:
    assert reply.status == 200, reply.body
    body = reply.json
    claims: dict[str, Any] = jwt.decode(
        body["token"],
        key=keys.public_key,
        algorithms=["EdDSA"],
        issuer="loyalty-auth",
    )
    return claims


# ------------------------------------------------------------------ success


def test_original_httpie_form_command(kit: Any, port: int, jwt_keys: Any) -> None:
    result = kit.httpie(
        "--form", "POST", f":{port}/token", "username=alice", f"password={kit.DEMO_PASSWORD}"
    )
    assert result.returncode == 0, result.stderr
    assert "HTTP/1.1 200" in result.stdout
    body = json.loads(result.stdout[result.stdout.index("{") :])
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 30
    jwt.decode(body["token"], key=jwt_keys.public_key, algorithms=["EdDSA"], issuer="loyalty-auth")


def test_httpie_json_command(kit: Any, port: int) -> None:
    result = kit.httpie("POST", f":{port}/token", "username=bob", f"password={kit.DEMO_PASSWORD}")
    assert result.returncode == 0, result.stderr
    assert "HTTP/1.1 200" in result.stdout
    assert '"token_type": "Bearer"' in result.stdout


def test_token_claims_and_default_lifetime_of_30_seconds(
    kit: Any, port: int, jwt_keys: Any
) -> None:
    before = int(time.time())
    reply = kit.call(
        port, "POST", "/token", form={"username": "alice", "password": kit.DEMO_PASSWORD}
    )
    claims = _token(reply, kit, jwt_keys)
    assert jwt.get_unverified_header(reply.json["token"])["alg"] == "EdDSA"
    assert set(claims) == {"user_id", "username", "can_transact", "sub", "iat", "exp", "jti", "iss"}
    assert claims["user_id"] == 1 and claims["sub"] == "1"
    assert claims["username"] == "alice" and claims["can_transact"] is True
    assert claims["exp"] - claims["iat"] == 30
    assert before <= claims["iat"] <= int(time.time())
    assert claims["iss"] == "loyalty-auth"
    assert reply.json["expires_in"] == 30
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.content_type == "application/json"


def test_charlie_gets_a_token_saying_he_cannot_transact(kit: Any, port: int, jwt_keys: Any) -> None:
    reply = kit.call(port, "POST", "/token", {"username": "charlie", "password": kit.DEMO_PASSWORD})
    claims = _token(reply, kit, jwt_keys)
    assert claims["can_transact"] is False and claims["user_id"] == 3


def test_each_token_has_its_own_jti(kit: Any, port: int, jwt_keys: Any) -> None:
    creds = {"username": "alice", "password": kit.DEMO_PASSWORD}
    first = _token(kit.call(port, "POST", "/token", creds), kit, jwt_keys)
    second = _token(kit.call(port, "POST", "/token", creds), kit, jwt_keys)
    assert first["jti"] != second["jti"]


def test_multipart_form(kit: Any, port: int) -> None:
    boundary = "xYzBoundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="username"\r\n\r\nalice\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="password"\r\n\r\n'
        f"{kit.DEMO_PASSWORD}\r\n--{boundary}--\r\n"
    )
    reply = kit.call(
        port, "POST", "/token", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert reply.status == 200, reply.body


@pytest.mark.parametrize(
    ("password", "status", "error"),
    [
        ("p\u00e4ss w\u00f6rd \U000891f2".encode(), 401, "Invalid username or password"),
        (b"\xff\xfe", 400, "Multipart body is not valid UTF-8"),
    ],
    ids=["utf-8", "not utf-8"],
)
def test_multipart_text_is_utf_8(
    kit: Any, port: int, password: bytes, status: int, error: str
) -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="username"\r\n\r\nalice\r\n'
        b'--b\r\nContent-Disposition: form-data; name="password"\r\n\r\n'
        + password
        + b"\r\n--b--\r\n"
    )
    reply = kit.call(
        port, "POST", "/token", body, {"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert (reply.status, reply.json) == (status, {"error": error})


def test_multipart_extra_field_with_odd_name_is_ignored(kit: Any, port: int) -> None:
    # An extra field named with a NUL and other control characters (found by
    # the API fuzz) leaves the real fields readable.
    body = (
        b'--b\r\nContent-Disposition: form-data; name="\x1e\x02P\x00"\r\n\r\nnull\r\n'
        b'--b\r\nContent-Disposition: form-data; name="username"\r\n\r\nalice\r\n'
        b'--b\r\nContent-Disposition: form-data; name="password"\r\n\r\n'
        + kit.DEMO_PASSWORD.encode()
        + b"\r\n--b--\r\n"
    )
    reply = kit.call(
        port, "POST", "/token", body, {"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert reply.status == 200, reply.body


def test_multipart_part_with_unknown_charset_is_400(kit: Any, port: int) -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="username"\r\n'
        b"Content-Type: text/plain; charset=no-such-charset\r\n\r\nalice\r\n--b--\r\n"
    )
    reply = kit.call(
        port, "POST", "/token", body, {"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert (reply.status, reply.json) == (400, {"error": "Multipart body names an unknown charset"})


def test_json_with_charset_and_extra_fields(kit: Any, port: int) -> None:
    reply = kit.call(
        port,
        "POST",
        "/token",
        json.dumps({"username": "alice", "password": kit.DEMO_PASSWORD, "grant_type": "password"}),
        {"Content-Type": "application/json; charset=utf-8"},
    )
    assert reply.status == 200


def test_health(kit: Any, port: int) -> None:
    reply = kit.call(port, "GET", "/health")
    assert (reply.status, reply.json) == (200, {"healthy": True})
    assert reply.content_type == "application/json"


def test_openapi_describes_every_route(kit: Any, port: int) -> None:
    reply = kit.call(port, "GET", "/openapi.json")
    assert reply.status == 200
    doc = reply.json
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/token", "/health", "/openapi.json"}
    responses = doc["paths"]["/token"]["post"]["responses"]
    assert set(responses) == {"200", "400", "401", "413", "415", "422", "429"}
    content = doc["paths"]["/token"]["post"]["requestBody"]["content"]
    assert set(content) == {
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/json",
    }
    assert doc["components"]["schemas"]["Token"]["properties"]["expires_in"]["example"] == 30


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "Username is blank"),
        ({"password": "x"}, "Username is blank"),
        ({"username": "", "password": "x"}, "Username is blank"),
        ({"username": "   ", "password": "x"}, "Username is blank"),
        ({"username": "alice"}, "Password is blank"),
        ({"username": "alice", "password": ""}, "Password is blank"),
    ],
)
def test_blank_form_fields_are_422_with_the_originals_sentences(
    kit: Any, port: int, fields: dict[str, str], message: str
) -> None:
    reply = kit.call(port, "POST", "/token", form=fields)
    assert reply.status == 422
    assert reply.json["error"] == message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"username": 1, "password": "x"}, "Username is blank"),
        ({"username": None, "password": "x"}, "Username is blank"),
        ({"username": ["alice"], "password": "x"}, "Username is blank"),
        ({"username": "alice", "password": 123}, "Password is blank"),
        ({"username": "alice", "password": True}, "Password is blank"),
        ({"username": "alice", "password": {"a": 1}}, "Password is blank"),
    ],
)
def test_non_string_json_fields_are_422(
    kit: Any, port: int, body: dict[str, Any], message: str
) -> None:
    reply = kit.call(port, "POST", "/token", body)
    assert (reply.status, reply.json["error"]) == (422, message)


def test_empty_body_without_content_type_is_422(kit: Any, port: int) -> None:
    reply = kit.call(port, "POST", "/token")
    assert (reply.status, reply.json["error"]) == (422, "Username is blank")


def test_wrong_password_and_unknown_user_get_the_same_401(kit: Any, port: int) -> None:
    wrong = kit.call(port, "POST", "/token", form={"username": "alice", "password": "nope"})
    unknown = kit.call(port, "POST", "/token", form={"username": "mallory", "password": "nope"})
    assert wrong.status == unknown.status == 401
    assert wrong.body == unknown.body == b'{"error":"Invalid username or password"}'


def test_unknown_user_costs_as_much_as_a_wrong_password(kit: Any, port: int) -> None:
    def timed(username: str) -> float:
        start = time.perf_counter()
        kit.call(port, "POST", "/token", form={"username": username, "password": "nope"})
        return time.perf_counter() - start

    wrong = statistics.median(timed("alice") for _ in range(5))
    unknown = statistics.median(timed("nobody-here") for _ in range(5))
    # scrypt (n=16384) dominates both; without the dummy hash the unknown
    # user would answer an order of magnitude faster.
    assert unknown > wrong * 0.5, (wrong, unknown)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'"alice"', "application/json"),
        (b"null", "application/json"),
        (b"username=\xff\xfe", "application/x-www-form-urlencoded"),
        (b"--x\r\nbroken", "multipart/form-data; boundary=x"),
    ],
)
def test_body_that_is_not_a_form_or_object_is_400(
    kit: Any, port: int, body: bytes, content_type: str
) -> None:
    reply = kit.call(port, "POST", "/token", body, {"Content-Type": content_type})
    assert reply.status == 400, reply.body
    assert reply.json["error"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "image/png"])
def test_unsupported_content_type_is_415(kit: Any, port: int, content_type: str) -> None:
    reply = kit.call(port, "POST", "/token", b"username=alice", {"Content-Type": content_type})
    assert reply.status == 415
    assert "application/json" in reply.json["error"]


def test_body_without_content_type_is_415(kit: Any, port: int) -> None:
    reply = kit.call(port, "POST", "/token", b"username=alice&password=x")
    assert reply.status == 415


def test_body_over_16_kib_is_413(kit: Any, port: int) -> None:
    body = json.dumps({"username": "alice", "password": "x" * 16384})
    reply = kit.call(port, "POST", "/token", body, {"Content-Type": "application/json"})
    assert reply.status == 413
    assert reply.json == {"error": "Request body is larger than 16384 bytes"}


def test_chunked_body_over_16_kib_is_413(kit: Any, port: int) -> None:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    chunks = [b"username=alice&password=" + b"x" * 8000, b"x" * 8000, b"x" * 8000]
    connection.request(
        "POST",
        "/token",
        body=iter(chunks),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    assert response.status == 413
    connection.close()


def test_body_of_exactly_16_kib_is_read(kit: Any, port: int) -> None:
    prefix = f'{{"username": "alice", "password": "{kit.DEMO_PASSWORD}"'
    body = prefix + " " * (16384 - len(prefix) - 1) + "}"
    assert len(body) == 16384
    reply = kit.call(port, "POST", "/token", body, {"Content-Type": "application/json"})
    assert reply.status == 200


def test_wrong_method_is_405_json(kit: Any, port: int) -> None:
    reply = kit.call(port, "GET", "/token")
    assert reply.status == 405
    assert reply.json == {"error": "Method not allowed"}
    assert "POST" in reply.headers["Allow"]


def test_unknown_path_is_404_json(kit: Any, port: int) -> None:
    reply = kit.call(port, "GET", "/nope")
    assert (reply.status, reply.json) == (404, {"error": "Not found"})
    assert reply.content_type == "application/json"


# --------------------------------------------------------- lifetime, issuer


def test_lifetime_and_issuer_come_from_the_environment(
    kit: Any, spawn: Any, jwt_keys: Any, users_file: Path
) -> None:
    service = spawn(
        "auth-api", kit.auth_env(jwt_keys, users_file, TOKEN_TTL_SECONDS=2, JWT_ISSUER="test-iss")
    )
    reply = kit.call(
        service.port, "POST", "/token", form={"username": "alice", "password": kit.DEMO_PASSWORD}
    )
    assert reply.json["expires_in"] == 2
    claims = jwt.decode(
        reply.json["token"], key=jwt_keys.public_key, algorithms=["EdDSA"], issuer="test-iss"
    )
    assert claims["exp"] - claims["iat"] == 2


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    ],
)
def test_requests_gunicorn_refuses_get_json_errors_too(port: int, raw: bytes, status: int) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), head
    assert b"Content-Type: application/json" in head
    assert "error" in json.loads(body)
