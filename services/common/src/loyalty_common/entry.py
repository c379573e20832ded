"""Console-script wrapper: configuration errors become one line and exit 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import NoReturn

from .config import ConfigError

__all__ = ["EXIT_CONFIG", "entry_point", "run_main"]

# 2 is the conventional "usage / configuration" exit status; systemd's
# RestartPreventExitStatus=2 can then stop restart loops on a bad env file.
EXIT_CONFIG = 2


def run_main(main: Callable[[], int | None], prog: str) -> NoReturn:
    """Call ``main`` and exit with its return value.

    A ConfigError prints ``"<prog>: <VARIABLE>: <problem>"`` on standard error
    (one line, no traceback) and exits 2.  Ctrl-C exits 130 without a traceback.
    """
    try:
        code = main()
    except ConfigError as error:
        message = " ".join(str(error).split())  # guarantee a single line
        print(f"{prog}: {message}", file=sys.stderr, flush=True)
        sys.exit(EXIT_CONFIG)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code or 0)


def entry_point(
    prog: str,
) -> Callable[[Callable[[], int | None]], Callable[[], NoReturn]]:
    """Decorator form of :func:`run_main` for ``[project.scripts]`` targets."""

    def decorate(main: Callable[[], int | None]) -> Callable[[], NoReturn]:
        @functools.wraps(main)
        def wrapper() -> NoReturn:
            run_main(main, prog)

        return wrapper

    return decorate
