"""OpenAPI 3 description of the Auth API, kept beside the routes it describes."""

from __future__ import annotations

from typing import Any

from loyalty_common.openapi import (
    BODY_ERRORS,
    COMMON_SCHEMAS,
    OPENAPI_PATH,
    body_content,
    error_response,
    health_path,
)

__all__ = ["BLANK", "openapi_document"]

# White space as ECMAScript's \s counts it: a username or password of these
# only is blank. Python's \s differs (U+001C..U+001F count, U+FEFF does not),
# so the document spells its pattern out from this set instead of writing
# \S: a generator or validator in either dialect then means what the API does.
BLANK = frozenset(
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
NOT_BLANK_PATTERN = "[^" + "".join(f"\\u{ord(ch):04x}" for ch in sorted(BLANK)) + "]"


def openapi_document(token_ttl: int) -> dict[str, Any]:
    """The document served at GET /openapi.json."""
    credentials = {
        "type": "object",
        "required": ["username", "password"],
        "properties": {
            # Not blank: at least one character other than white space.
            "username": {"type": "string", "pattern": NOT_BLANK_PATTERN, "example": "alice"},
            "password": {"type": "string", "pattern": NOT_BLANK_PATTERN, "format": "password"},
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Loyalty Auth API",
            "version": "1.0.0",
            "description": (
                "Issues access tokens: JWTs signed with Ed25519 (EdDSA). "
                "Bodies are limited to 16384 bytes; every error is JSON "
                '{"error": "<sentence>"}.'
            ),
        },
        "paths": {
            "/token": {
                "post": {
                    "summary": "Exchange a username and password for an access token",
                    "requestBody": {"required": True, "content": body_content(credentials)},
                    "responses": {
                        "200": {
                            "description": "A token; send it as Authorization: Bearer <token>",
                            "headers": {
                                "Cache-Control": {
                                    "schema": {"type": "string", "example": "no-store"}
                                }
                            },
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Token"}
                                }
                            },
                        },
                        **BODY_ERRORS,
                        "401": error_response(
                            "Unknown user or wrong password (the same answer for both)",
                            "Invalid username or password",
                        ),
                        "422": {
                            "description": (
                                "username or password missing, blank or not a string "
                                "(username is checked first)"
                            ),
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/FieldError"},
                                    "examples": {
                                        "username": {
                                            "value": {
                                                "error": "Username is blank",
                                                "field": "username",
                                            }
                                        },
                                        "password": {
                                            "value": {
                                                "error": "Password is blank",
                                                "field": "password",
                                            }
                                        },
                                    },
                                }
                            },
                        },
                        "429": error_response(
                            "Too many token requests from this client: the router's "
                            "rate limit on /authentication/token; try again after "
                            "Retry-After seconds",
                            "Too many requests",
                            headers={"Retry-After": {"schema": {"type": "integer", "example": 10}}},
                        ),
                    },
                }
            },
            "/health": health_path(),
            "/openapi.json": OPENAPI_PATH,
        },
        "components": {
            "schemas": {
                "Token": {
                    "type": "object",
                    "required": ["token", "token_type", "expires_in"],
                    "properties": {
                        "token": {
                            "type": "string",
                            "description": (
                                "JWT (EdDSA) with claims user_id, username, "
                                "can_transact, sub, iat, exp, jti, iss"
                            ),
                        },
                        "token_type": {"type": "string", "enum": ["Bearer"]},
                        "expires_in": {"type": "integer", "example": token_ttl},
                    },
                },
                **COMMON_SCHEMAS,
            }
        },
    }
