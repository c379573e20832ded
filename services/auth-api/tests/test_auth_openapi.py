"""The served OpenAPI document says what the Auth API (behind the router) does."""

from __future__ import annotations

import json
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
