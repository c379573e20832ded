"""Loyalty Worker: turns queued transactions into stamps and vouchers, exactly once.

Entries of the ``loyalty:transactions`` stream are read through the
``loyalty-workers`` consumer group; each one is awarded, marked processed and
acknowledged by one Lua script (``award.lua``), or moved to ``loyalty:dead``
(``dead_letter.lua``).
"""

from .config import WorkerConfig, load_config
from .worker import Transaction, Unparseable, Worker, parse_entry

__all__ = ["Transaction", "Unparseable", "Worker", "WorkerConfig", "load_config", "parse_entry"]
__version__ = "1.0.0"
