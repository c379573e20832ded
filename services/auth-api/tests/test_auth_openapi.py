"""The served OpenAPI document says what the Auth API (behind the router) does."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

HAPROXY_TEMPLATE = (
    Path(__file__).resolve().parents[3] / "roles" / "router" / "templates" / "haproxy.cfg.j2"
)


def test_served_document_lists_the_routers_429_on_token(kit: Any, auth_api: Any) -> None:
    doc = kit.call(auth_api.port, "GET", "/openapi.json").json
    too_many = doc["paths"]["/token"]["post"]["responses"]["429"]
    assert too_many["headers"]["Retry-After"]["schema"]["type"] == "integer"
    content = too_many["content"]["application/json"]
    assert content["schema"] == {"$ref": "#/components/schemas/Error"}
    # The router answers it, not the Auth API: the body is the router's.
    (rule,) = [line for line in HAPROXY_TEMPLATE.read_text().splitlines() if "status 429" in line]
    assert "hdr Retry-After" in rule
    assert json.dumps(content["example"]).replace('"', '\\"') in rule


# Every character either dialect of regular expressions counts as white space,
# and a few that only one of them does (U+001C..U+001F and U+0085 for Python,
# U+FEFF for ECMAScript), or that neither does (U+180E, U+200B).
SPACE_LIKE = sorted(
    {chr(code) for code in range(0x110000) if chr(code).isspace()} | set("\ufeff\u180e\u200b")
)


def test_document_pattern_and_api_agree_on_blank_credentials(kit: Any, auth_api: Any) -> None:
    doc = kit.call(auth_api.port, "GET", "/openapi.json").json
    credentials = doc["paths"]["/token"]["post"]["requestBody"]["content"]["application/json"]
    properties = credentials["schema"]["properties"]
    pattern = properties["username"]["pattern"]
    assert properties["password"]["pattern"] == pattern
    # Only \uXXXX escapes in a class: ECMAScript and Python read it alike.
    assert re.fullmatch(r"\[\^(\\u[0-9a-f]{4})+\]", pattern), pattern
    disagreements = []
    for ch in SPACE_LIKE:
        valid = re.search(pattern, f"{ch}{ch}") is not None
        reply = kit.call(
            auth_api.port, "POST", "/token", {"username": f"{ch}{ch}", "password": "x"}
        )
        if valid == (reply.status == 422):
            disagreements.append((f"U+{ord(ch):04X}", valid, reply.status))
    assert not disagreements, f"(character, valid per the document, API's status): {disagreements}"
