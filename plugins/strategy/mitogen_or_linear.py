"""Ansible's linear strategy, run through Mitogen when Mitogen is installed.

Mitogen keeps one Python interpreter per host for the whole run instead of
starting one for every task, which is where most of a converge's time goes
when nothing needs to change (see bench/README.md).  It only
takes over the connection types it knows by their short names (``docker``,
``ssh``, ``local``); any other connection type runs as it would without it.
Without the ``mitogen`` package (an Ansible set up outside this repository's
.venv), this is plain ``linear``, so ansible.cfg works everywhere.
"""

from __future__ import annotations

DOCUMENTATION = """
name: mitogen_or_linear
short_description: linear, through Mitogen when it is installed
description:
  - Runs each task on every host before the next, as C(linear) does.
  - Uses Mitogen's connection multiplexing when the C(mitogen) package can be imported.
author: Loyalty platform maintainers
"""

try:
    import ansible_mitogen.affinity
    import ansible_mitogen.loaders
    import ansible_mitogen.planner
    import ansible_mitogen.strategy
except ImportError:
    from ansible.plugins.strategy.linear import StrategyModule
else:
    # Mitogen pins its multiplexer to one CPU and, on a machine of two or
    # three, the controller, every worker and every connection's helper
    # process (docker exec, ssh) to one other: the workers of a task then
    # queue on a single core. Left to the kernel, they spread over all of
    # them (bench/README.md, "Mitogen's CPU pinning").
    ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()
    from ansible.collections.list import list_collection_dirs

    def list_collections_once() -> None:
        """Before the first module runs, Mitogen's planner lists every
        installed collection (about 0.1 s) in the worker process of each
        task that uses a collection's module, and a worker forgets it when
        the task ends. Listed once in the controller, before any worker is
        forked, every worker inherits the list."""
        collection_dirs = [path.decode() for path in list_collection_dirs()]

        def load_collections(invocation: object) -> None:
            invocation._extra_sys_paths.update(collection_dirs)  # type: ignore[attr-defined]

        ansible_mitogen.planner._load_collections = load_collections

    _Linear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):  # type: ignore[misc, valid-type]
        """Linear with Mitogen's connection handling mixed in."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            list_collections_once()
