"""Ansible's free strategy, run through Mitogen when Mitogen is installed.

For a play whose hosts run different roles that do not wait for each other
(playbooks/services.yml: the Auth API, the Transaction API and the workers):
each host goes through its own tasks at its own pace, so that one tier's
virtualenv installs while another's does. Mitogen's settings are those of
mitogen_or_linear (loaded first, which applies them). It follows the
default strategy: plain ``free`` when that is not mitogen_or_linear
(``ANSIBLE_STRATEGY=linear`` takes Mitogen out of every play, Molecule's
converges run without it) or when the ``mitogen`` package is missing.
"""

from __future__ import annotations

import sys

from ansible import constants as C
from ansible.plugins.loader import strategy_loader

DOCUMENTATION = """
name: mitogen_or_free
short_description: free, through Mitogen when it is installed
description:
  - Runs each host's tasks as fast as it can, as C(free) does.
  - Uses Mitogen's connection multiplexing, with mitogen_or_linear's settings,
    when that is the default strategy and the C(mitogen) package can be imported.
author: Loyalty platform maintainers
"""

_linear_module = sys.modules[strategy_loader.get("mitogen_or_linear", class_only=True).__module__]

_use_mitogen = C.DEFAULT_STRATEGY == "mitogen_or_linear" and hasattr(
    _linear_module, "list_collections_once"
)

if not _use_mitogen:
    from ansible.plugins.strategy.free import StrategyModule
else:
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy

    _Free = ansible_mitogen.loaders.strategy_loader.get("free", class_only=True)

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Free):  # type: ignore[misc, valid-type, no-redef]
        """Free with Mitogen's connection handling mixed in."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            _linear_module.list_collections_once()
