"""OpenAPI 3 description of the Transaction API, kept beside its routes."""

from __future__ import annotations

from typing import Any

from loyalty_common.openapi import (
    BODY_ERRORS,
    COMMON_SCHEMAS,
    OPENAPI_PATH,
    body_content,
    error_response,
    health_path,
    json_response_ref,
)

from .fields import AMOUNT_MAX_LENGTH, amount_pattern

__all__ = ["openapi_document"]

_UNAUTHORIZED = error_response(
    "Missing, malformed, forged, expired or not-yet-valid token, an "
    "algorithm other than EdDSA, or a wrong issuer",
    "The token is invalid or expired",
    headers={
        "WWW-Authenticate": {
            "schema": {"type": "string", "example": 'Bearer error="invalid_token"'}
        }
    },
)

_UNAVAILABLE = error_response(
    "Redis is unreachable; nothing was queued",
    "The queue is unavailable; try again shortly",
    headers={"Retry-After": {"schema": {"type": "integer", "example": 1}}},
)
_QUEUE_UNAVAILABLE = error_response(
    "Redis is unreachable (the primary is down or being replaced), or the "
    "entry is on the primary but fewer replicas than required acknowledged it "
    "in time (then replicas_acknowledged and replicas_required say how many); "
    "send the same request again with the same Idempotency-Key",
    "The queue is unavailable; try again shortly",
    headers={"Retry-After": {"schema": {"type": "integer", "example": 1}}},
)


def openapi_document(max_amount: int) -> dict[str, Any]:
    """The document served at GET /openapi.json."""
    amount = {
        "description": (
            "Positive integer in minor units (2000 is 20.00); a JSON number or "
            "a string of ASCII digits (leading zeros allowed, at most "
            f"{AMOUNT_MAX_LENGTH} characters). Decimals, exponents, NaN and "
            "booleans are refused."
        ),
        "oneOf": [
            {"type": "integer", "minimum": 1, "maximum": max_amount},
            {
                "type": "string",
                "maxLength": AMOUNT_MAX_LENGTH,
                "pattern": amount_pattern(max_amount),
            },
        ],
        "example": 2000,
    }
    transaction = {
        "type": "object",
        "additionalProperties": False,
        "required": ["amount", "currency"],
        "properties": {
            "amount": amount,
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "example": "GBP"},
            "token": {
                "type": "string",
                "description": (
                    "The access token, as the originals took it; the "
                    "Authorization header wins when both are given, and the "
                    "field must still be a string then (422 otherwise)"
                ),
            },
        },
    }
    bearer = [{"bearer": []}]
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Loyalty Transaction API",
            "version": "1.0.0",
            "description": (
                "Queues transactions for the loyalty workers and reports each "
                "user's stamps and vouchers. Bodies are limited to 16384 bytes; "
                'every error is JSON {"error": "<sentence>"}. Checks run in '
                "this order: body (413, 415, 400), token (401), permission "
                "(403), fields (422), queue (503)."
            ),
        },
        "paths": {
            "/transactions": {
                "post": {
                    "summary": "Queue one transaction",
                    "security": bearer,
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "description": (
                                "The same key from the same user within 24 hours "
                                "returns the first transaction_id and queues nothing "
                                "(after the same wait for replicas as the first time)"
                            ),
                            "schema": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": 200,
                                "pattern": "^[!-~]+$",
                            },
                        }
                    ],
                    "requestBody": {"required": True, "content": body_content(transaction)},
                    "responses": {
                        "202": {
                            "description": (
                                "Queued on the Redis stream, and acknowledged by the "
                                "configured number of replicas when there are any"
                            ),
                            "headers": {
                                "Idempotent-Replayed": {
                                    "description": "true when an earlier answer is repeated",
                                    "schema": {"type": "string", "enum": ["true"]},
                                }
                            },
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Accepted"}
                                }
                            },
                        },
                        **BODY_ERRORS,
                        "401": _UNAUTHORIZED,
                        "403": error_response("The user may not transact", "User cannot transact"),
                        "422": {
                            "description": (
                                "A field is missing, blank, of the wrong type (token "
                                "too, when the Authorization header carries the token), "
                                "out of range, repeated or unknown; 'field' names it"
                            ),
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/FieldError"},
                                    "example": {
                                        "error": "Amount is blank",
                                        "field": "amount",
                                    },
                                }
                            },
                        },
                        "503": _QUEUE_UNAVAILABLE,
                    },
                }
            },
            "/loyalty": {
                "get": {
                    "summary": "The caller's stamps and vouchers as the workers recorded them",
                    "security": bearer,
                    "responses": {
                        "200": json_response_ref("Loyalty", "The caller's loyalty state"),
                        "401": _UNAUTHORIZED,
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/health": health_path("Liveness (does not touch Redis)"),
            "/ready": {
                "get": {
                    "summary": "Readiness: Redis answers PING",
                    "responses": {
                        "200": json_response_ref("Ready", "Redis answers"),
                        "503": {
                            "description": "Redis is unreachable",
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/NotReady"}
                                }
                            },
                        },
                    },
                }
            },
            "/openapi.json": OPENAPI_PATH,
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT (EdDSA), from the Auth API's POST /token",
                }
            },
            "schemas": {
                "Accepted": {
                    "type": "object",
                    "required": [
                        "transaction_id",
                        "status",
                        "user_id",
                        "amount",
                        "currency",
                    ],
                    "properties": {
                        "transaction_id": {"type": "string", "format": "uuid"},
                        "status": {"type": "string", "enum": ["queued"]},
                        "user_id": {"type": "integer"},
                        "amount": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": max_amount,
                        },
                        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                    },
                },
                "Loyalty": {
                    "type": "object",
                    "required": [
                        "user_id",
                        "username",
                        "stamps",
                        "vouchers",
                        "transactions",
                    ],
                    "properties": {
                        "user_id": {"type": "integer"},
                        "username": {"type": "string"},
                        "stamps": {"type": "integer", "minimum": 0},
                        "vouchers": {"type": "integer", "minimum": 0},
                        "transactions": {"type": "integer", "minimum": 0},
                    },
                },
                "Ready": {
                    "type": "object",
                    "required": ["ready"],
                    "properties": {"ready": {"type": "boolean", "enum": [True]}},
                },
                "NotReady": {
                    "type": "object",
                    "required": ["ready", "error"],
                    "properties": {
                        "ready": {"type": "boolean", "enum": [False]},
                        "error": {"type": "string"},
                    },
                },
                **COMMON_SCHEMAS,
            },
        },
    }
