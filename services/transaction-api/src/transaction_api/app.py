"""The Transaction API's Bottle application.

Order of checks on POST /transactions (see the originals' notes): body size
and type (413, 415, 400), then the token (401), then ``can_transact`` (403),
then the fields (422), so an anonymous caller learns nothing about
validation; Redis last (503).
"""

from __future__ import annotations

import json
import logging
import time
import uuid

import bottle
import redis
from loyalty_common.metrics import UNAVAILABLE_CAUSE
from loyalty_common.tokens import Claims, InvalidToken, TokenVerifier
from loyalty_common.web import (
    JSON_TYPE,
    Body,
    install_json_errors,
    json_error,
    read_body,
)

from .config import Settings
from .fields import FieldError, parse_amount, parse_currency, parse_idempotency_key
from .openapi import openapi_document
from .store import ReplicaShortfall, TransactionQueue

__all__ = ["create_app"]

log = logging.getLogger("transaction_api")

FIELDS = ("amount", "currency", "token")
CANNOT_TRANSACT = "User cannot transact"
UNAVAILABLE = "The queue is unavailable; try again shortly"
NOT_REPLICATED = (
    "The transaction could not be confirmed on enough Redis replicas; send it "
    "again with the same Idempotency-Key"
)
RETRY_AFTER = "1"
# RFC 6750 section 3: tells the client to fetch a new token.
INVALID_TOKEN_HEADERS = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
MISSING_TOKEN = "A bearer token is required"
BAD_TOKEN = "The token is invalid or expired"
TOKEN_NOT_TEXT = "Token must be a string"


def _bearer(header: str) -> str | None:
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


def _authenticate(
    verifier: TokenVerifier, request: bottle.BaseRequest, body: Body | None
) -> Claims:
    header = request.environ.get("HTTP_AUTHORIZATION")
    if header is not None:
        token = _bearer(header)
    elif body is not None and isinstance(body.fields.get("token"), str):
        token = body.fields["token"].strip() or None  # the originals' form field
    else:
        token = None
    if token is None:
        raise json_error(401, MISSING_TOKEN, INVALID_TOKEN_HEADERS)
    try:
        return verifier.verify(token)
    except InvalidToken as error:
        log.info("token refused: %s", error)
        raise json_error(401, BAD_TOKEN, INVALID_TOKEN_HEADERS) from None


def _check_fields(body: Body, max_amount: int) -> tuple[int, str]:
    for name in body.fields:
        if name not in FIELDS:
            raise FieldError(name, f"Unknown field: {name}")
    if body.repeated:
        name = body.repeated[0]
        raise FieldError(name, f"Field {name} is given more than once")
    amount = parse_amount(body.fields.get("amount"), max_amount)
    currency = parse_currency(body.fields.get("currency"))
    # Only reached when the Authorization header carried the token (a field
    # that is not a string never authenticates): the field is unused then,
    # but a request the document calls malformed is not accepted.
    if "token" in body.fields and not isinstance(body.fields["token"], str):
        raise FieldError("token", TOKEN_NOT_TEXT)
    return amount, currency


def _accepted_at() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + (f".{int(now % 1 * 1000):03d}Z")


def _unavailable(error: Exception) -> bottle.HTTPResponse:
    log.warning("Redis unavailable: %s", error)
    return json_error(503, UNAVAILABLE, {"Retry-After": RETRY_AFTER})


def _as_count(value: str | None) -> int:
    try:
        return int(value) if value else 0
    except ValueError:
        return 0


def create_app(settings: Settings, store: TransactionQueue) -> bottle.Bottle:
    """Build the WSGI app around one store (one Redis connection pool)."""
    app = bottle.Bottle(catchall=True)
    install_json_errors(app)
    verifier = settings.verifier
    max_amount = settings.max_amount
    openapi = json.dumps(openapi_document(max_amount)).encode()
    health = b'{"healthy":true}'

    @app.post("/transactions")
    def post_transaction() -> bytes:
        request = bottle.request
        body = read_body(request)
        claims = _authenticate(verifier, request, body)
        if not claims.can_transact:
            log.info("user %s cannot transact", claims.user_id)
            raise json_error(403, CANNOT_TRANSACT)
        try:
            amount, currency = _check_fields(body, max_amount)
            key = parse_idempotency_key(request.environ.get("HTTP_IDEMPOTENCY_KEY"))
        except FieldError as error:
            raise json_error(422, error.message, field=error.field) from None
        transaction_id = str(uuid.uuid4())
        fields = {
            "transaction_id": transaction_id,
            "user_id": str(claims.user_id),
            "username": claims.username,
            "amount": str(amount),
            "currency": currency,
            "accepted_at": _accepted_at(),
        }
        replayed = False
        try:
            if key is None:
                store.enqueue(fields)
            else:
                transaction_id, replayed = store.enqueue_once(claims.user_id, key, fields)
        except redis.RedisError as error:
            # XADD either happened or not; the client may retry (with an
            # Idempotency-Key to be sure), and the worker dedupes by id.
            raise _unavailable(error) from None
        except ReplicaShortfall as error:
            # The entry is on the primary (a worker will most likely award
            # it) but could be lost with the primary.  The same key sent
            # again replays it and waits again, so a 202 always means
            # "on the primary and on the required replicas".
            log.warning(
                "not confirmed: transaction_id=%s user_id=%s replayed=%s "
                "idempotency_key=%s: %d of %d replicas acknowledged within %d ms; "
                "answered 503",
                error.transaction_id,
                claims.user_id,
                "true" if error.replayed else "false",
                "yes" if key is not None else "no",
                error.acknowledged,
                error.required,
                error.timeout_ms,
            )
            request.environ[UNAVAILABLE_CAUSE] = "replicas"
            raise json_error(
                503,
                NOT_REPLICATED,
                {"Retry-After": RETRY_AFTER},
                replicas_acknowledged=error.acknowledged,
                replicas_required=error.required,
            ) from None
        response = bottle.response
        response.status = 202
        response.content_type = JSON_TYPE
        if replayed:
            response.set_header("Idempotent-Replayed", "true")
        return json.dumps(
            {
                "transaction_id": transaction_id,
                "status": "queued",
                "user_id": claims.user_id,
                "amount": amount,
                "currency": currency,
            }
        ).encode()

    @app.get("/loyalty")
    def get_loyalty() -> bytes:
        claims = _authenticate(verifier, bottle.request, None)
        try:
            state = store.loyalty(claims.user_id)
        except redis.RedisError as error:
            raise _unavailable(error) from None
        bottle.response.content_type = JSON_TYPE
        return json.dumps(
            {
                "user_id": claims.user_id,
                "username": state.get("username") or claims.username,
                "stamps": _as_count(state.get("stamps")),
                "vouchers": _as_count(state.get("vouchers")),
                "transactions": _as_count(state.get("transactions")),
            }
        ).encode()

    @app.get("/health")
    def get_health() -> bytes:
        bottle.response.content_type = JSON_TYPE
        return health

    @app.get("/ready")
    def get_ready() -> bytes:
        try:
            store.ping()
        except redis.RedisError as error:
            log.warning("not ready: %s", error)
            raise json_error(
                503, "Redis is unreachable", {"Retry-After": RETRY_AFTER}, ready=False
            ) from None
        bottle.response.content_type = JSON_TYPE
        return b'{"ready":true}'

    @app.get("/openapi.json")
    def get_openapi() -> bytes:
        bottle.response.content_type = JSON_TYPE
        return openapi

    return app
