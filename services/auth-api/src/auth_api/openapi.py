"""OpenAPI 3 description of the Auth API, kept beside the routes it describes."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]


def _error(description: str, example: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/Error"},
                "example": {"error": example},
            }
        },
    }


def openapi_document(token_ttl: int) -> dict[str, Any]:
    """The document served at GET /openapi.json."""
    credentials = {
        "type": "object",
        "required": ["username", "password"],
        "properties": {
            "username": {"type": "string", "minLength": 1, "example": "alice"},
            "password": {"type": "string", "minLength": 1, "format": "password"},
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
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-www-form-urlencoded": {"schema": credentials},
                            "multipart/form-data": {"schema": credentials},
                            "application/json": {"schema": credentials},
                        },
                    },
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
                        "400": _error(
                            "The body is not a form or a JSON object",
                            "Request body must be a form or a JSON object",
                        ),
                        "401": _error(
                            "Unknown user or wrong password (the same answer for both)",
                            "Invalid username or password",
                        ),
                        "413": _error(
                            "The body is over 16384 bytes",
                            "Request body is larger than 16384 bytes",
                        ),
                        "415": _error(
                            "Unsupported content type",
                            "Content type must be application/x-www-form-urlencoded, "
                            "multipart/form-data or application/json",
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
                    },
                }
            },
            "/health": {
                "get": {
                    "summary": "Liveness",
                    "responses": {
                        "200": {
                            "description": "The process answers",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Health"}
                                }
                            },
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3 document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
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
                    "properties": {
                        "error": {"type": "string"},
                        "field": {"type": "string"},
                    },
                },
            }
        },
    }
