"""Bottle helpers shared by the two HTTP APIs: JSON errors and bounded bodies.

Imported only by the APIs (it needs Bottle), never by the worker, so the
package's top level does not import it.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import bottle
import multipart

__all__ = [
    "FORM_TYPE",
    "JSON_TYPE",
    "MAX_BODY_BYTES",
    "MULTIPART_TYPE",
    "NOT_OBJECT_MESSAGE",
    "TOO_LARGE_MESSAGE",
    "UNSUPPORTED_TYPE_MESSAGE",
    "Body",
    "install_json_errors",
    "json_error",
    "json_response",
    "read_body",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
# Fields a form (urlencoded or multipart) may hold before it is refused.
MAX_FORM_FIELDS = 256
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"
MULTIPART_TYPE = "multipart/form-data"

_REASONS = {
    400: "Bad request",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    411: "Length required",
    413: f"Request body is larger than {MAX_BODY_BYTES} bytes",
    414: "Request URI too long",
    500: "Internal error",
}


def _dump(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def json_response(
    status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> bottle.HTTPResponse:
    """An HTTPResponse with a compact JSON body; raise or return it."""
    response = bottle.HTTPResponse(body=_dump(payload), status=status)
    response.content_type = JSON_TYPE
    if headers:
        for name, value in headers.items():
            response.set_header(name, value)
    return response


def json_error(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> bottle.HTTPResponse:
    """``{"error": message, **extra}`` with the given status; raise it from a route."""
    return json_response(status, {"error": message, **extra}, headers)


def install_json_errors(app: bottle.Bottle) -> None:
    """Make every error Bottle produces itself (404, 405, crashes) a JSON body.

    An unexpected exception is logged with its traceback and answered with a
    JSON 500 that carries no detail; routes are written so that it should not
    happen.
    """

    def handler(error: bottle.HTTPError) -> bytes:
        status = error.status_code
        if status >= 500 and error.exception is not None:
            log.error("unhandled error: %s\n%s", error.exception, error.traceback)
        bottle.response.content_type = JSON_TYPE
        # Bottle renders its own error pages with Cache-Control; JSON needs none.
        return _dump({"error": _REASONS.get(status, error.status_line[4:] or "Error")})

    # Bottle looks the handler up as an attribute, so an instance attribute
    # replaces the HTML page for every status without one handler per code.
    app.default_error_handler = handler  # type: ignore[method-assign]


@dataclass
class Body:
    """A parsed request body.

    ``fields`` maps each name to its value (str from a form, any JSON type from
    JSON); ``repeated`` names the form fields given more than once (the first
    value is kept) so the route can refuse them at the right point of its
    order of checks.
    """

    fields: dict[str, Any] = field(default_factory=dict)
    repeated: list[str] = field(default_factory=list)
    kind: str = "empty"


UNSUPPORTED_TYPE_MESSAGE = (
    "Content type must be application/x-www-form-urlencoded, "
    "multipart/form-data or application/json"
)
NOT_OBJECT_MESSAGE = "Request body must be a form or a JSON object"
TOO_LARGE_MESSAGE = _REASONS[413]


def _read_raw(environ: dict[str, Any]) -> bytes:
    stream = environ.get("wsgi.input")
    length_header = environ.get("CONTENT_LENGTH") or ""
    if length_header:
        try:
            length = int(length_header)
        except ValueError:
            raise json_error(400, "Content-Length is not a number") from None
        if length > MAX_BODY_BYTES:
            # Refuse before reading: the client may be sending gigabytes.
            raise json_error(413, TOO_LARGE_MESSAGE)
        if length <= 0 or stream is None:
            return b""
        data: bytes = stream.read(length)
    else:
        # Chunked upload (gunicorn decodes it) or no body: read one byte more
        # than allowed to tell "exactly at the limit" from "over".
        if stream is None:
            return b""
        data = stream.read(MAX_BODY_BYTES + 1)
    if len(data) > MAX_BODY_BYTES:
        raise json_error(413, TOO_LARGE_MESSAGE)
    return data


def _form_body(pairs: Iterable[tuple[str, str | None]]) -> Body:
    """A form's fields, the first value of each; the names given again are
    listed in ``repeated``."""
    body = Body(kind="form")
    for name, value in pairs:
        if name in body.fields:
            if name not in body.repeated:
                body.repeated.append(name)
            continue
        body.fields[name] = value
    return body


def _parse_form(data: bytes) -> Body:
    try:
        text = data.decode("utf-8")
        pairs = parse_qsl(
            text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FORM_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        raise json_error(400, "Form body is not valid UTF-8 form encoding") from None
    return _form_body(pairs)


def _parse_multipart(data: bytes, content_type: str) -> Body:
    # The multipart library (Bottle's parser, grown up) reads the body from
    # memory (it is <= 16 KiB). Unlike Bottle 0.13 it keeps a part whose
    # header holds a NUL, so an odd extra field does not hide the real ones.
    boundary = multipart.parse_options_header(content_type)[1].get("boundary", "")
    try:
        parser = multipart.MultipartParser(
            io.BytesIO(data),
            boundary,
            len(data),
            charset="utf-8",
            part_limit=MAX_FORM_FIELDS,
            spool_limit=MAX_BODY_BYTES + 1,
        )
        parts = [(part.name, None if part.filename is not None else part.value) for part in parser]
    except UnicodeDecodeError:
        # Text parts are UTF-8 unless their own content type names a charset.
        raise json_error(400, "Multipart body is not valid UTF-8") from None
    except LookupError:
        raise json_error(400, "Multipart body names an unknown charset") from None
    except multipart.MultipartError:
        raise json_error(400, "Multipart body is malformed") from None
    # A file (value None) is never a valid field value; the route says which.
    return _form_body(parts)


def _parse_json(data: bytes) -> Body:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError, bad UTF-8 and oversized integers.
        raise json_error(400, "Request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise json_error(400, NOT_OBJECT_MESSAGE)
    return Body(fields=value, kind="json")


def read_body(request: bottle.BaseRequest) -> Body:
    """Read and parse the request body, at most MAX_BODY_BYTES.

    Raises a JSON HTTPResponse: 413 when too large, 415 for another content
    type, 400 when the body is not a form or a JSON object.  An empty body
    without a content type is an empty form, so missing fields get their
    422 from the route.
    """
    environ = request.environ
    content_type = environ.get("CONTENT_TYPE") or ""
    media_type = content_type.split(";", 1)[0].strip().lower()
    data = _read_raw(environ)
    if not media_type:
        if data.strip():
            raise json_error(415, UNSUPPORTED_TYPE_MESSAGE)
        return Body()
    if media_type == FORM_TYPE:
        return _parse_form(data)
    if media_type == JSON_TYPE or (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return _parse_json(data)
    if media_type == MULTIPART_TYPE:
        return _parse_multipart(data, content_type)
    raise json_error(415, UNSUPPORTED_TYPE_MESSAGE)
