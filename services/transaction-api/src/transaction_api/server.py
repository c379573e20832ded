"""``transaction-api``: validate the configuration, then serve under gunicorn."""

from __future__ import annotations

import bottle
from loyalty_common import configure_logging, entry_point
from loyalty_common.redis_access import make_redis
from loyalty_common.serve import serve

from .app import create_app
from .config import load_settings
from .store import TransactionQueue

__all__ = ["main", "wsgi_app"]


def wsgi_app() -> bottle.Bottle:
    """Build the app from the environment (run once in each gunicorn worker).

    The public key is parsed once here and one Redis connection pool serves
    every request of this process.  No Redis I/O happens at start-up, so the
    API starts (and answers 503) while Redis is still down.
    """
    settings = load_settings()
    configure_logging(settings.http.log_level)
    # A WAIT blocks up to REDIS_WAIT_TIMEOUT_MS before it answers; only the
    # time beyond that counts as Redis being slow.
    socket_timeout = settings.redis.socket_timeout
    if settings.wait_replicas:
        socket_timeout += settings.wait_timeout_ms / 1000
    store = TransactionQueue(
        make_redis(settings.redis, socket_timeout=socket_timeout),
        settings.idempotency_ttl,
        wait_replicas=settings.wait_replicas,
        wait_timeout_ms=settings.wait_timeout_ms,
    )
    return create_app(settings, store)


@entry_point("transaction-api")
def main() -> int:
    """Console script: exit 2 with one line on a bad variable, else serve."""
    settings = load_settings()  # fails here, before gunicorn forks anything
    return serve(wsgi_app, settings.http, "transaction-api")
