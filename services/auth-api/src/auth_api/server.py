"""``auth-api``: validate the configuration, then serve under gunicorn."""

from __future__ import annotations

import bottle
from loyalty_common import configure_logging, entry_point
from loyalty_common.serve import serve

from .app import create_app
from .config import load_settings

__all__ = ["main", "wsgi_app"]


def wsgi_app() -> bottle.Bottle:
    """Build the app from the environment (run in each gunicorn worker)."""
    settings = load_settings()
    configure_logging(settings.http.log_level)
    return create_app(settings)


@entry_point("auth-api")
def main() -> int:
    """Console script: exit 2 with one line on a bad variable, else serve."""
    settings = load_settings()  # fails here, before gunicorn forks anything
    return serve(wsgi_app, settings.http, "auth-api")
