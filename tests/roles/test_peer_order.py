"""The routers' peer lists come out in the inventory's order in every run.

keepalived.conf (router_vip) and nftables.conf (firewall) list the other
router hosts. A list built in a hash-seeded order would differ from one
ansible-playbook process to the next, so the file would be rewritten and the
daemon reloaded on every run with three or more routers. Each run below is a
real ansible-playbook process with its own PYTHONHASHSEED, reading the
role's own vars/main.yml.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
ROUTERS = {f"edge-{n}": f"10.0.0.{n}" for n in range(1, 6)}

INVENTORY = {
    "router": {
        "hosts": {
            name: {"private_address": address, "ansible_connection": "local"}
            for name, address in ROUTERS.items()
        }
    }
}

PEER_LISTS = {
    "router_vip": "__router_vip_peers",
    "firewall": "__firewall_vrrp_peer_hosts",
}


def peers_seen(tmp_path: Path, role: str, variable: str, hash_seed: int) -> list[str]:
    playbook = [
        {
            "hosts": "edge-1",
            "gather_facts": False,
            "vars": {"router_vip_group": "router", "router_vip_address": "10.0.0.100"},
            "tasks": [
                {"ansible.builtin.include_vars": str(REPO / "roles" / role / "vars" / "main.yml")},
                {
                    "ansible.builtin.copy": {
                        "content": "{{ " + variable + " | list | to_json }}",
                        "dest": str(tmp_path / f"{role}-{hash_seed}.json"),
                    }
                },
            ],
        }
    ]
    (tmp_path / "inventory.json").write_text(json.dumps(INVENTORY))
    (tmp_path / "playbook.json").write_text(json.dumps(playbook))
    env = dict(os.environ, PYTHONHASHSEED=str(hash_seed), ANSIBLE_STRATEGY="linear")
    command = [
        str(ANSIBLE_PLAYBOOK),
        "-i",
        str(tmp_path / "inventory.json"),
        str(tmp_path / "playbook.json"),
    ]
    subprocess.run(
        command,
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )
    return json.loads((tmp_path / f"{role}-{hash_seed}.json").read_text())


@pytest.mark.parametrize("role", sorted(PEER_LISTS))
def test_peers_in_inventory_order_whatever_the_hash_seed(tmp_path: Path, role: str) -> None:
    runs = [peers_seen(tmp_path, role, PEER_LISTS[role], seed) for seed in range(1, 6)]
    expected = [name for name in ROUTERS if name != "edge-1"]
    if role == "router_vip":
        expected = [ROUTERS[name] for name in expected]
    assert runs == [expected] * len(runs)
