"""Pieces of OpenAPI 3 that both HTTP APIs describe the same way.

The body-related errors take their sentences from loyalty_common.web, the
code that produces them, so the documents cannot drift from the behaviour.
"""

from __future__ import annotations

from typing import Any

from .web import (
    FORM_TYPE,
    JSON_TYPE,
    MAX_BODY_BYTES,
    MULTIPART_TYPE,
    NOT_OBJECT_MESSAGE,
    TOO_LARGE_MESSAGE,
    UNSUPPORTED_TYPE_MESSAGE,
)

__all__ = [
    "BODY_ERRORS",
    "COMMON_SCHEMAS",
    "OPENAPI_PATH",
    "body_content",
    "error_response",
    "health_path",
    "json_response_ref",
]


def error_response(
    description: str, example: str, schema: str = "Error", **extra: Any
) -> dict[str, Any]:
    """A JSON error response with one example; extra keys (e.g. headers) are merged in."""
    return {
        "description": description,
        **extra,
        "content": {
            JSON_TYPE: {
                "schema": {"$ref": f"#/components/schemas/{schema}"},
                "example": {"error": example},
            }
        },
    }


def json_response_ref(schema: str, description: str) -> dict[str, Any]:
    """A JSON response whose body is a schema from components."""
    return {
        "description": description,
        "content": {JSON_TYPE: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def body_content(schema: dict[str, Any]) -> dict[str, Any]:
    """The request body types read_body accepts, all with the same schema."""
    return {media_type: {"schema": schema} for media_type in (FORM_TYPE, MULTIPART_TYPE, JSON_TYPE)}


BODY_ERRORS: dict[str, dict[str, Any]] = {
    "400": error_response("The body is not a form or a JSON object", NOT_OBJECT_MESSAGE),
    "413": error_response(f"The body is over {MAX_BODY_BYTES} bytes", TOO_LARGE_MESSAGE),
    "415": error_response("Unsupported content type", UNSUPPORTED_TYPE_MESSAGE),
}


def health_path(summary: str = "Liveness") -> dict[str, Any]:
    """GET /health, which both APIs answer with {"healthy": true}."""
    return {
        "get": {
            "summary": summary,
            "responses": {"200": json_response_ref("Health", "The process answers")},
        }
    }


OPENAPI_PATH: dict[str, Any] = {
    "get": {
        "summary": "This document",
        "responses": {
            "200": {
                "description": "OpenAPI 3 document",
                "content": {JSON_TYPE: {"schema": {"type": "object"}}},
            }
        },
    }
}

COMMON_SCHEMAS: dict[str, dict[str, Any]] = {
    "Health": {
        "type": "object",
        "required": ["healthy"],
        "properties": {"healthy": {"type": "boolean", "enum": [True]}},
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "FieldError": {
        "type": "object",
        "required": ["error", "field"],
        "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
    },
}
