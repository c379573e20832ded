"""One HTTP request to a scenario's router, with the standard library only,
so that the load clients control their connections (keep-alive, timeouts).
With an SSL context the request goes over HTTPS, verified by that context."""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from collections.abc import Mapping
from email.message import Message
from typing import Any

Answer = tuple[int, Message, Any]


def connection(
    host: str, port: int, *, timeout: float = 10, context: ssl.SSLContext | None = None
) -> http.client.HTTPConnection:
    """A new connection: HTTPS when a context is given, else plain HTTP."""
    if context is not None:
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    return http.client.HTTPConnection(host, port, timeout=timeout)


def tls_context(ca_file: str) -> ssl.SSLContext:
    """A client context trusting only the platform's certificate authority."""
    return ssl.create_default_context(cafile=ca_file)


def request(
    method: str,
    path: str,
    fields: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    host: str,
    port: int,
    timeout: float = 10,
    conn: http.client.HTTPConnection | None = None,
    context: ssl.SSLContext | None = None,
) -> Answer:
    """One request, form-encoded `fields` as its body; on `conn` when given
    (kept open), else on a connection of its own. Returns (status, headers,
    parsed JSON or text)."""
    body = urllib.parse.urlencode(fields) if fields is not None else None
    all_headers = dict(headers or {})
    if body is not None:
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    own = conn is None
    if own:
        conn = connection(host, port, timeout=timeout, context=context)
    try:
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        raw = response.read()
        try:
            data = json.loads(raw)
        except ValueError:
            data = raw.decode(errors="replace")
        # Header names are case-insensitive (HAProxy sends them in lower case).
        return response.status, response.headers, data
    finally:
        if own:
            conn.close()
