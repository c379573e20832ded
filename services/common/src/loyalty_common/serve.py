"""Run a WSGI app under gunicorn in-process, configured from the environment.

Imported only by the APIs (it needs gunicorn).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import metrics
from .config import ConfigError, env_file, env_int, env_log_level, env_str

__all__ = [
    "HttpSettings",
    "TlsSettings",
    "WorkerSslContext",
    "http_settings_from_env",
    "serve",
]

# Mozilla "intermediate" TLS 1.2 ciphers (forward secret, AEAD only); TLS 1.3
# suites are OpenSSL's defaults, all of them strong.
TLS_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:"
    "DHE-RSA-CHACHA20-POLY1305"
)

# Gunicorn halts the whole server (instead of respawning forever) when a
# worker exits with this status while booting.
_WORKER_BOOT_ERROR = 3


@dataclass(frozen=True)
class TlsSettings:
    """TLS_CERT_FILE, TLS_KEY_FILE and (optional) TLS_CLIENT_CA_FILE."""

    certificate: str
    private_key: str
    client_ca: str | None = None


@dataclass(frozen=True)
class HttpSettings:
    """HTTP_HOST, HTTP_PORT, WEB_CONCURRENCY, GUNICORN_*, LOG_LEVEL, TLS_*."""

    host: str = "0.0.0.0"
    port: int = 5000
    workers: int = 2
    threads: int = 4
    keepalive: int = 75
    timeout: int = 30
    log_level: int = 20
    tls: TlsSettings | None = None


def tls_settings_from_env(environ: Mapping[str, str] | None = None) -> TlsSettings | None:
    """TLS_CERT_FILE and TLS_KEY_FILE both or neither; TLS_CLIENT_CA_FILE needs them."""
    env = os.environ if environ is None else environ
    cert_set = bool(env.get("TLS_CERT_FILE"))
    key_set = bool(env.get("TLS_KEY_FILE"))
    if cert_set != key_set:
        missing, given = (
            ("TLS_KEY_FILE", "TLS_CERT_FILE") if cert_set else ("TLS_CERT_FILE", "TLS_KEY_FILE")
        )
        raise ConfigError(missing, f"is required when {given} is set (both or neither)")
    if not cert_set:
        if env.get("TLS_CLIENT_CA_FILE"):
            raise ConfigError(
                "TLS_CLIENT_CA_FILE", "needs TLS_CERT_FILE and TLS_KEY_FILE (HTTPS) set too"
            )
        return None
    certificate = env_file("TLS_CERT_FILE", environ=environ)
    private_key = env_file("TLS_KEY_FILE", environ=environ)
    client_ca = env_file("TLS_CLIENT_CA_FILE", required=False, environ=environ)
    assert certificate is not None and private_key is not None
    # Load them once here so that a bad PEM or a key that does not match is
    # one line naming the variable, not a traceback in every worker.
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(certificate), str(private_key))
    except (ssl.SSLError, ValueError) as error:
        raise ConfigError(
            "TLS_KEY_FILE", f"{private_key} and {certificate} do not load as a pair: {error}"
        ) from None
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(client_ca))
        except (ssl.SSLError, ValueError) as error:
            raise ConfigError(
                "TLS_CLIENT_CA_FILE", f"{client_ca} holds no usable CA certificate: {error}"
            ) from None
    return TlsSettings(
        certificate=str(certificate),
        private_key=str(private_key),
        client_ca=None if client_ca is None else str(client_ca),
    )


def http_settings_from_env(environ: Mapping[str, str] | None = None) -> HttpSettings:
    """Read and validate the variables every HTTP service shares."""
    host = env_str("HTTP_HOST", "0.0.0.0", environ=environ)
    if any(ch.isspace() or ch in "/@" for ch in host):
        raise ConfigError("HTTP_HOST", f"is not a host name or address: {host!r}")
    return HttpSettings(
        host=host,
        port=env_int("HTTP_PORT", 5000, minimum=1, maximum=65535, environ=environ),
        workers=env_int("WEB_CONCURRENCY", 2, minimum=1, maximum=256, environ=environ),
        threads=env_int("GUNICORN_THREADS", 4, minimum=1, maximum=64, environ=environ),
        keepalive=env_int("GUNICORN_KEEPALIVE", 75, minimum=1, maximum=3600, environ=environ),
        timeout=env_int("GUNICORN_TIMEOUT", 30, minimum=1, maximum=3600, environ=environ),
        log_level=env_log_level(environ=environ),
        tls=tls_settings_from_env(environ),
    )


def ssl_context(tls: TlsSettings) -> Any:
    """The server-side SSLContext: TLS 1.2+, intermediate ciphers, client certs if asked."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.load_cert_chain(tls.certificate, tls.private_key)
    if tls.client_ca is not None:
        context.load_verify_locations(cafile=tls.client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class WorkerSslContext:
    """gunicorn's ``ssl_context`` hook: one SSLContext per worker process.

    gunicorn asks for a context on every connection it accepts;
    building one each time would re-read the files per connection and lose
    TLS session resumption (the session cache lives in the context). The
    context is built once in each process and kept. Workers are new
    processes after a SIGHUP, so a reload still reads renewed files.
    """

    def __init__(self, tls: TlsSettings) -> None:
        self.tls = tls
        self._pid: int | None = None
        self._context: Any = None

    def __call__(self, _config: Any, _default_factory: Any) -> Any:
        return self.get()

    def get(self) -> Any:
        pid = os.getpid()
        if self._context is None or self._pid != pid:
            self._context = ssl_context(self.tls)
            self._pid = pid
        return self._context


def gunicorn_options(settings: HttpSettings, name: str) -> dict[str, Any]:
    """The gunicorn settings both APIs use (the benchmark reuses them)."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    options: dict[str, Any] = {
        "bind": [f"{host}:{settings.port}"],
        "workers": settings.workers,
        # Threads keep connections alive: the router then reuses its TLS
        # connections to the API instead of a full handshake per request
        # (bench/README.md, "What TLS costs"). The idle time outlasts the
        # router's own idle pool, so it is HAProxy that closes an idle
        # connection, never the API under a request just being sent.
        "worker_class": "gthread",
        "threads": settings.threads,
        "keepalive": settings.keepalive,
        "timeout": settings.timeout,
        "graceful_timeout": min(settings.timeout, 30),
        "loglevel": {10: "debug", 20: "info", 30: "warning", 40: "error"}.get(
            settings.log_level, "critical"
        ),
        "errorlog": "-",
        "accesslog": None,  # the router logs requests; one line each here is noise
        "proc_name": name,
        # Not preloaded: each worker builds its app (keys, users) itself, so
        # SIGHUP picks up rotated key or users files without a restart.
        "preload_app": False,
        # gunicorn 25+ opens a control socket under $HOME by default: the
        # services' system users have no home, and two instances on one
        # host would fight over the path.
        "control_socket_disable": True,
    }
    if settings.tls is not None:
        tls = settings.tls
        options["certfile"] = tls.certificate
        options["keyfile"] = tls.private_key
        if tls.client_ca is not None:
            import ssl

            options["ca_certs"] = tls.client_ca
            options["cert_reqs"] = ssl.CERT_REQUIRED
        # Each worker builds its SSLContext once (see WorkerSslContext): TLS
        # 1.2 minimum, Mozilla intermediate ciphers, client certificates
        # required and verified when TLS_CLIENT_CA_FILE is set.
        options["ssl_context"] = WorkerSslContext(tls)
    if os.path.isdir("/dev/shm"):
        # Heartbeat files on tmpfs: a slow disk must not get workers killed.
        options["worker_tmp_dir"] = "/dev/shm"
    return options


def _write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    import gunicorn.util

    # ``mesg`` may quote the offending request bytes: keep it out of the body.
    body = json.dumps({"error": reason}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    gunicorn.util.write_nonblock(sock, head.encode("latin-1") + body)


def serve(factory: Callable[[], Any], settings: HttpSettings, name: str) -> int:
    """Run gunicorn with ``factory()`` as the app of every worker; return on exit.

    Call it only after the configuration was validated, so that a bad
    variable never reaches a forked worker.
    """
    # Imported here, not at the top: gunicorn.config evaluates
    # int(os.environ["WEB_CONCURRENCY"]) at import time and would crash with
    # a traceback before our validation could name the variable.
    import gunicorn.util
    from gunicorn.app.base import BaseApplication

    # Requests gunicorn itself refuses (malformed request line or headers,
    # URI or headers too long) get JSON like every other error, not HTML.
    gunicorn.util.write_error = _write_json_error

    options = gunicorn_options(settings, name)
    app_factory = factory
    made_dir = None
    if metrics.metrics_enabled():
        # Before any worker exists (and before prometheus_client is imported
        # anywhere): every worker then writes its samples to this directory.
        made_dir = metrics.prepare_multiprocess_dir()
        options["child_exit"] = _child_exit

        def app_factory() -> Any:
            return metrics.MetricsMiddleware(factory(), name)

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            try:
                tls_context = options.get("ssl_context")
                if isinstance(tls_context, WorkerSslContext):
                    # Built at the worker's boot, not at its first
                    # connection: files broken since the master's check
                    # (a SIGHUP after a bad renewal) halt with one line.
                    try:
                        tls_context.get()
                    except (OSError, ValueError) as error:
                        raise ConfigError(
                            "TLS_CERT_FILE",
                            f"{tls_context.tls.certificate}, {tls_context.tls.private_key}"
                            f" or the client CA do not load: {error}",
                        ) from None
                return app_factory()
            except ConfigError as error:
                # A file changed between the master's check and this
                # worker's start (or a SIGHUP reload): one line, and
                # gunicorn halts instead of respawning forever.
                print(f"{name}: {error}", file=sys.stderr, flush=True)
                sys.exit(_WORKER_BOOT_ERROR)

    master = os.getpid()
    try:
        Application().run()
    finally:
        # Workers are forked inside run() and unwind through here when they
        # exit: only the master removes the directory.
        if os.getpid() == master:
            metrics.remove_dir(made_dir)
    return 0


def _child_exit(_server: Any, worker: Any) -> None:
    metrics.mark_process_dead(worker.pid)
