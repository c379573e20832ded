"""``python -m loyalty_worker`` runs the console script."""

from .cli import main

main()
