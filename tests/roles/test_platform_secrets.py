"""platform_secrets makes each secret once and the certificates again only
when they must be: the role is run for real (ansible-playbook
playbooks/secrets.yml on the control node) into a temporary directory, then
again after each change a team makes: nothing, a host's new address, a
lost key, a longer renewal window, a lost password.

One module-scoped directory carries the secrets from one run to the next,
so the tests run in this file's order.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
HOSTS = {"edge-1": "10.9.0.1", "redis-1": "10.9.0.2"}
RECAP = re.compile(r"^localhost\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", re.M)


class Secrets:
    """The secrets directory, its inventory, and a run of secrets.yml."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # As the default (role_path ~ '/../../.secrets'), a path through "..".
        self.dir = root / "work" / ".." / "secrets"
        self.addresses = dict(HOSTS)

    def run(self, *extra: str) -> int:
        """secrets.yml once; the number of changed tasks (the run must pass)."""
        inventory = {
            "all": {
                "vars": {"loyalty_secrets_dir": str(self.dir)},
                "hosts": {name: {"private_address": a} for name, a in self.addresses.items()},
                "children": {
                    "router": {"hosts": {"edge-1": None}},
                    "redis": {"hosts": {"redis-1": None}},
                },
            }
        }
        (self.root / "hosts.json").write_text(json.dumps(inventory))
        env = {
            **os.environ,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(self.root / "facts"),
        }
        result = subprocess.run(
            [
                str(ANSIBLE_PLAYBOOK),
                "-i",
                str(self.root / "hosts.json"),
                "playbooks/secrets.yml",
                *extra,
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        recap = RECAP.search(result.stdout)
        assert result.returncode == 0 and recap, result.stdout[-3000:] + result.stderr[-2000:]
        return int(recap[1])

    def certificate(self, name: str) -> x509.Certificate:
        path = self.dir / "tls" / ("ca.crt" if name == "ca" else f"hosts/{name}.crt")
        return x509.load_pem_x509_certificate(path.read_bytes())

    def serials(self) -> dict[str, int]:
        return {name: self.certificate(name).serial_number for name in ["ca", *HOSTS]}

    def addresses_in(self, name: str) -> list[str]:
        names = self.certificate(name).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
        return [str(a) for a in names.value.get_values_for_type(x509.IPAddress)]

    def contents(self) -> dict[str, bytes]:
        return {
            str(path.relative_to(self.dir)): path.read_bytes()
            for path in sorted(self.dir.rglob("*"))
            if path.is_file()
        }


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Secrets:
    made = Secrets(tmp_path_factory.mktemp("platform-secrets"))
    assert made.run() > 0
    return made


def test_every_secret_is_made_with_owner_only_modes(secrets: Secrets) -> None:
    files = secrets.contents()
    for expected in [
        "jwt/ed25519.key",
        "jwt/ed25519.pub",
        "redis/admin.password",
        "redis/loyalty.password",
        "redis/sentinel.password",
        "users/demo.password",
        "users/alice.hash",
        "keepalived/vrrp.password",
        "tls/ca.key",
        "tls/ca.crt",
        "tls/hosts/edge-1.key",
        "tls/hosts/edge-1.crt",
        "tls/hosts/redis-1.crt",
        "backup/id_ed25519",
    ]:
        assert expected in files, expected
    for path in [secrets.dir / "tls" / "ca.key", secrets.dir / "redis" / "admin.password"]:
        assert path.stat().st_mode & 0o077 == 0, path
    for directory in [secrets.dir, secrets.dir / "tls" / "hosts"]:
        assert directory.stat().st_mode & 0o777 == 0o700, directory
    assert secrets.addresses_in("edge-1") == ["10.9.0.1", "127.0.0.1"]


def test_a_second_run_changes_nothing(secrets: Secrets) -> None:
    before = secrets.contents()
    assert secrets.run() == 0
    assert secrets.contents() == before


def test_a_new_address_signs_that_host_again_and_no_other(secrets: Secrets) -> None:
    serials = secrets.serials()
    key = (secrets.dir / "tls" / "hosts" / "redis-1.key").read_bytes()
    secrets.addresses["redis-1"] = "10.9.0.22"
    assert secrets.run() > 0
    after = secrets.serials()
    assert after["redis-1"] != serials["redis-1"]
    assert secrets.addresses_in("redis-1") == ["10.9.0.22", "127.0.0.1"]
    assert {n: after[n] for n in ("ca", "edge-1")} == {n: serials[n] for n in ("ca", "edge-1")}
    assert (secrets.dir / "tls" / "hosts" / "redis-1.key").read_bytes() == key
    assert secrets.run() == 0


def test_a_lost_host_key_is_made_again_with_a_certificate_for_it(secrets: Secrets) -> None:
    serials = secrets.serials()
    (secrets.dir / "tls" / "hosts" / "edge-1.key").unlink()
    assert secrets.run() > 0
    after = secrets.serials()
    assert after["edge-1"] != serials["edge-1"]
    key_pem = (secrets.dir / "tls" / "hosts" / "edge-1.key").read_bytes()
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert key.public_key() == secrets.certificate("edge-1").public_key()
    assert {n: after[n] for n in ("ca", "redis-1")} == {n: serials[n] for n in ("ca", "redis-1")}


def test_a_renewal_window_longer_than_a_host_certificate_renews_the_hosts_not_the_ca(
    secrets: Secrets,
) -> None:
    serials = secrets.serials()
    assert secrets.run("-e", "platform_secrets_tls_renew_days=400") > 0
    after = secrets.serials()
    assert after["ca"] == serials["ca"]
    assert all(after[host] != serials[host] for host in HOSTS)


def test_a_lost_password_is_made_again_and_the_others_are_kept(secrets: Secrets) -> None:
    before = secrets.contents()
    (secrets.dir / "redis" / "sentinel.password").unlink()
    assert secrets.run() > 0
    after = secrets.contents()
    assert len(after["redis/sentinel.password"].strip()) == 32
    assert {k: v for k, v in after.items() if k != "redis/sentinel.password"} == {
        k: v for k, v in before.items() if k != "redis/sentinel.password"
    }
