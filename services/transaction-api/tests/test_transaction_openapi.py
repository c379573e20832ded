"""The served OpenAPI document says what the Transaction API does."""

from __future__ import annotations

import re
from typing import Any

import pytest
from transaction_api.fields import AMOUNT_MAX_LENGTH, FieldError, amount_pattern, parse_amount


@pytest.fixture
def port(transaction_api: Any) -> int:
    return int(transaction_api.port)


@pytest.fixture
def alice(kit: Any, jwt_keys: Any) -> dict[str, str]:
    return dict(kit.bearer(jwt_keys))


def _accepted(value: str, maximum: int) -> bool:
    try:
        parse_amount(value, maximum)
    except FieldError:
        return False
    return True


def _candidates(maximum: int) -> set[str]:
    numbers = set(range(0, 1200))
    for power in range(20):
        numbers |= {10**power - 1, 10**power, 10**power + 1}
    numbers |= {maximum + delta for delta in range(-12, 12)}
    numbers |= {int(str(maximum)[:k] + "9" * (len(str(maximum)) - k)) for k in range(1, 6)}
    strings = set()
    for number in numbers:
        if number < 0:
            continue
        text = str(number)
        for width in (0, 1, 2, AMOUNT_MAX_LENGTH - 1, AMOUNT_MAX_LENGTH, AMOUNT_MAX_LENGTH + 1):
            strings.add(text.rjust(width, "0"))
    return strings


@pytest.mark.parametrize(
    "maximum",
    [1, 2, 9, 10, 11, 19, 20, 99, 100, 250, 909, 1000, 100000, 100000000, 123456789, 10**15],
)
def test_amount_string_schema_matches_exactly_what_parse_amount_accepts(maximum: int) -> None:
    pattern = re.compile(amount_pattern(maximum))
    for value in _candidates(maximum):
        described = len(value) <= AMOUNT_MAX_LENGTH and pattern.search(value) is not None
        assert described == _accepted(value, maximum), (maximum, value)


def test_served_document_bounds_the_string_amount(
    kit: Any, port: int, alice: dict[str, str]
) -> None:
    doc = kit.call(port, "GET", "/openapi.json").json
    content = doc["paths"]["/transactions"]["post"]["requestBody"]["content"]
    for media_type in content.values():
        (string,) = [
            s
            for s in media_type["schema"]["properties"]["amount"]["oneOf"]
            if s["type"] == "string"
        ]

        def described(value: str, string: dict[str, Any] = string) -> bool:
            return (
                len(value) <= string["maxLength"]
                and re.search(string["pattern"], value) is not None
            )

        # This instance runs with MAX_AMOUNT=100000.
        for value in ["03756154040", "100001", "0", "000", "9" * 19, "0" * 18 + "1"]:
            assert not described(value), value
        for value in ["1", "100000", "0100000", "0" * 17 + "1"]:
            assert described(value), value
    for value in ["03756154040", "100001", "0" * 18 + "1"]:
        reply = kit.call(port, "POST", "/transactions", {"currency": "GBP", "amount": value}, alice)
        assert (reply.status, reply.json["field"]) == (422, "amount"), value
    for value in ["100000", "0" * 17 + "1"]:
        reply = kit.call(port, "POST", "/transactions", {"currency": "GBP", "amount": value}, alice)
        assert reply.status == 202, (value, reply.body)


def test_served_document_and_answer_agree_on_a_token_field_that_is_not_a_string(
    kit: Any, port: int, alice: dict[str, str]
) -> None:
    doc = kit.call(port, "GET", "/openapi.json").json
    operation = doc["paths"]["/transactions"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["token"]["type"] == "string"
    field_error = operation["responses"]["422"]
    assert "token" in field_error["description"]
    assert field_error["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FieldError"
    }
    reply = kit.call(
        port, "POST", "/transactions", {"amount": 1, "currency": "GBP", "token": 7}, alice
    )
    assert reply.status == 422 and reply.json["field"] == "token"
    assert set(reply.json) == set(doc["components"]["schemas"]["FieldError"]["required"])
