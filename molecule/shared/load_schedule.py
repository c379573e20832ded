"""The schedule both load clients follow: `threads` threads share `total`
requests at `rate` per second (request n is due n / rate seconds after the
start), so that faults can be injected at known moments of the load while
the test thread waits with `at()`."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable


class ScheduledLoad:
    """Threads and timing; a subclass says what one thread does (`_run`) and
    how the users' tokens are fetched before the clock starts."""

    # Seconds `join` waits beyond `max_seconds` for a thread to finish.
    join_grace: float = 0.0

    def __init__(
        self, users: Iterable[str], total: int, rate: float, threads: int, max_seconds: float
    ) -> None:
        self.users = list(users)
        self.total = total
        self.rate = rate
        self.threads = threads
        self.max_seconds = max_seconds
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self.t0 = 0.0

    def _get_tokens(self) -> None:
        """Fetch every user's token before the clock starts."""
        raise NotImplementedError

    def _run(self) -> None:
        """One client thread: take slots until there are none left."""
        raise NotImplementedError

    def start(self) -> None:
        self._get_tokens()
        self.t0 = time.monotonic()
        for n in range(self.threads):
            thread = threading.Thread(target=self._run, name=f"client-{n}", daemon=True)
            thread.start()
            self._workers.append(thread)

    def stop(self) -> None:
        """No new request after the ones under way."""
        self._stop.set()

    def join(self) -> None:
        for thread in self._workers:
            thread.join(timeout=self.max_seconds + self.join_grace)
        assert not any(t.is_alive() for t in self._workers), "client threads did not stop"

    def done(self) -> bool:
        return not any(t.is_alive() for t in self._workers)

    def at(self, seconds: float) -> None:
        """Sleep until `seconds` after the start (or until the client ended)."""
        while time.monotonic() - self.t0 < seconds and not self.done():
            time.sleep(0.05)

    def since_start(self) -> float:
        return time.monotonic() - self.t0

    def _slot(self) -> int | None:
        """The index of the next request to send, None when all are taken."""
        with self._lock:
            if self._next >= self.total or self._stop.is_set():
                return None
            index = self._next
            self._next += 1
            return index

    def _due(self, index: int) -> float:
        """When request `index` is due (time.monotonic())."""
        return self.t0 + index / self.rate
