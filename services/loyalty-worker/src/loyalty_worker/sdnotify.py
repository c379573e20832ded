"""systemd's notification protocol (``sd_notify``) with the standard library.

systemd (``Type=notify``, ``WatchdogSec=``) hands the service a datagram
socket in ``NOTIFY_SOCKET`` and a watchdog period in ``WATCHDOG_USEC``.
Outside systemd both are unset and every call here does nothing, so the
worker runs the same under a shell, in a container or in the tests.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


def _address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        # Abstract namespace: systemd writes '@', the kernel wants a NUL.
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Seconds between heartbeats: half the period, as sd_watchdog_enabled(3) advises."""
    usec = environ.get("WATCHDOG_USEC", "").strip()
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = environ.get("WATCHDOG_PID", "").strip()
    # WATCHDOG_PID names the process systemd watches; a child that inherited
    # the environment must not keep its parent alive.
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2_000_000


class Notifier:
    """Send READY, WATCHDOG, STATUS and STOPPING notifications to systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _address(env.get("NOTIFY_SOCKET", ""))
        self._socket: socket.socket | None = None
        if self._address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.watchdog_interval = _watchdog_interval(env) if self._socket else None
        self._last_heartbeat = float("-inf")

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def notify(self, *assignments: str) -> None:
        """Send ``KEY=value`` lines in one datagram; never raises.

        A notification that cannot be sent (systemd restarting, socket gone)
        must not stop the worker: the watchdog, if any, will act on it.
        """
        if self._socket is None or self._address is None:
            return
        try:
            self._socket.sendto("\n".join(assignments).encode(), self._address)
        except OSError as error:
            log.debug("sd_notify failed: %s", error)

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping")

    def heartbeat(self) -> None:
        """Send WATCHDOG=1 if half the watchdog period has passed since the last one.

        Called from the consumer loop itself (never from a timer thread), so
        that a hung loop stops the heartbeats and systemd restarts it.
        """
        if self.watchdog_interval is None:
            return
        now = time.monotonic()
        if now - self._last_heartbeat >= self.watchdog_interval:
            self._last_heartbeat = now
            self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
