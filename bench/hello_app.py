"""A bare Bottle app under the Transaction API's own gunicorn settings.

bench/run copies this file onto the Transaction API host and runs it with
that host's virtualenv (/opt/transaction-api/venv/bin/python), so that the
only difference from the real service is the application code: same host,
same Python, same gunicorn options (loyalty_common.serve), same worker count
(WEB_CONCURRENCY, read from the service's environment file by bench/run).

Environment: HTTP_HOST, HTTP_PORT, WEB_CONCURRENCY (as the services).
"""

import sys

import bottle
from loyalty_common.serve import http_settings_from_env, serve


def factory() -> bottle.Bottle:
    app = bottle.Bottle()

    @app.post("/transactions")
    def hello() -> str:
        return "hello"

    @app.get("/health")
    def health() -> str:
        return "ok"

    return app


if __name__ == "__main__":
    sys.exit(serve(factory, http_settings_from_env(), "bench-hello"))
