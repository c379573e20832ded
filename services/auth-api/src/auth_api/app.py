"""The Auth API's Bottle application: POST /token, GET /health, GET /openapi.json."""

from __future__ import annotations

import collections
import json
import logging
import secrets
import time
import uuid
from typing import Any

import bottle
import jwt
from loyalty_common.tokens import ALGORITHM
from loyalty_common.web import (
    JSON_TYPE,
    install_json_errors,
    json_error,
    read_body,
)

from .config import Settings, User
from .openapi import BLANK, openapi_document
from .passwords import hash_password, parse_hash, verify_password

__all__ = ["create_app"]

log = logging.getLogger("auth_api")

USERNAME_BLANK = "Username is blank"
PASSWORD_BLANK = "Password is blank"
BAD_CREDENTIALS = "Invalid username or password"


def _dummy_hash(users: dict[str, User]) -> str:
    """A hash with the cost most users have, checked for unknown usernames.

    Verifying it takes as long as a real user's wrong password, so response
    times do not reveal which usernames exist.
    """
    costs = collections.Counter(parse_hash(u.password_hash)[:3] for u in users.values())
    n, r, p = costs.most_common(1)[0][0]
    return hash_password(secrets.token_urlsafe(16), n=n, r=r, p=p)


def _text_field(fields: dict[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if not isinstance(value, str) or all(ch in BLANK for ch in value):
        return None
    return value


def create_app(settings: Settings) -> bottle.Bottle:
    """Build the WSGI app from fully loaded settings."""
    app = bottle.Bottle(catchall=True)
    install_json_errors(app)
    users = settings.users
    dummy = _dummy_hash(users)
    openapi = json.dumps(openapi_document(settings.token_ttl)).encode()
    health = b'{"healthy":true}'

    @app.post("/token")
    def token() -> bytes:
        body = read_body(bottle.request)
        username = _text_field(body.fields, "username")
        if username is None:
            raise json_error(422, USERNAME_BLANK, field="username")
        password = _text_field(body.fields, "password")
        if password is None:
            raise json_error(422, PASSWORD_BLANK, field="password")
        user = users.get(username)
        # Always run scrypt, against a dummy hash for an unknown user, so the
        # answer and its timing are the same for both failures.
        ok = verify_password(password, user.password_hash if user else dummy)
        if user is None or not ok:
            log.info("token refused for username %r", username[:64])
            raise json_error(401, BAD_CREDENTIALS)
        now = int(time.time())
        claims = {
            "user_id": user.id,
            "username": user.username,
            "can_transact": user.can_transact,
            "sub": str(user.id),
            "iat": now,
            "exp": now + settings.token_ttl,
            "jti": uuid.uuid4().hex,
            "iss": settings.issuer,
        }
        signed = jwt.encode(claims, settings.private_key, algorithm=ALGORITHM)
        log.info("token issued to user %s", user.id)
        bottle.response.content_type = JSON_TYPE
        # RFC 6749 5.1: responses carrying tokens must not be cached.
        bottle.response.set_header("Cache-Control", "no-store")
        return json.dumps(
            {"token": signed, "token_type": "Bearer", "expires_in": settings.token_ttl}
        ).encode()

    @app.get("/health")
    def get_health() -> bytes:
        bottle.response.content_type = JSON_TYPE
        return health

    @app.get("/openapi.json")
    def get_openapi() -> bytes:
        bottle.response.content_type = JSON_TYPE
        return openapi

    return app
