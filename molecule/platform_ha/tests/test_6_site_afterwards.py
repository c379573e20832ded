"""Last: the whole fleet runs Debian 13 (test_4_migration), a backup was
restored (test_5_backup_restore), and site.yml over the whole fleet changes
nothing."""

from __future__ import annotations

import json
import time

from helpers import ADDRESSES, FIGURES, REPO, changed_tasks, os_release, run_playbooks

SITE = REPO / "site.yml"


def test_the_whole_fleet_runs_debian_13_and_site_yml_changes_nothing():
    releases = {host: os_release(host) for host in ADDRESSES}
    FIGURES["releases_after_migration"] = releases
    assert set(releases.values()) == {"trixie"}, releases
    started = time.monotonic()
    result = run_playbooks(SITE, timeout=900)
    changed = changed_tasks(result)
    FIGURES["site_after_migration_s"] = round(time.monotonic() - started, 1)
    assert changed == [], json.dumps(changed)
