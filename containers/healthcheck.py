"""Container health checks for the services (standard library only).

    healthcheck.py http PATH   an API answers 200 on PATH at its HTTP_PORT
    healthcheck.py worker      the worker's consumer loop is turning

Exit status 0 means healthy, 1 unhealthy (what Docker's HEALTHCHECK expects);
one line on standard output says why.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import urllib.error
import urllib.request


def check_http(path: str) -> str:
    host = os.environ.get("HTTP_HOST", "").strip() or "0.0.0.0"
    if host in ("0.0.0.0", "::", "*"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    port = os.environ.get("HTTP_PORT", "").strip() or "5000"
    url = f"http://{host}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return f"{url}: {response.status}"
    except urllib.error.HTTPError as error:
        raise SystemExit(f"{url}: {error.code}") from None
    except OSError as error:
        raise SystemExit(f"{url}: {error}") from None


def check_worker() -> str:
    """Wait for one heartbeat of the worker's consumer loop.

    The worker speaks systemd's notification protocol: with NOTIFY_SOCKET and
    WATCHDOG_USEC set (the image sets both) its loop sends WATCHDOG=1 every
    half period, from the loop itself, so a hung loop sends nothing. This
    check listens on that socket for up to one and a half periods.
    """
    path = os.environ.get("NOTIFY_SOCKET", "").strip()
    usec = os.environ.get("WATCHDOG_USEC", "").strip()
    if not path.startswith("/") or not usec.isdigit() or int(usec) == 0:
        raise SystemExit("NOTIFY_SOCKET (a path) and WATCHDOG_USEC must be set")
    wait = int(usec) * 1.5 / 1_000_000
    deadline = time.monotonic() + wait
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        listener.bind(path)
        try:
            while True:
                listener.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    lines = listener.recv(4096).decode(errors="replace").splitlines()
                except TimeoutError:
                    raise SystemExit(f"no heartbeat from the worker in {wait:.1f} s") from None
                if "STOPPING=1" in lines:
                    raise SystemExit("the worker is stopping")
                if "WATCHDOG=1" in lines or "READY=1" in lines:
                    return "worker heartbeat received"
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "http":
        print(check_http(argv[2]))
    elif len(argv) == 2 and argv[1] == "worker":
        print(check_worker())
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
