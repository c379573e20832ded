"""A bad certificate stops a role before anything on the host changes.

The router role is run for real (ansible-playbook, local connection) with
an expired certificate, one inside the renewal window and one that belongs
to another key. Each run must fail in the preflight check with one sentence
naming the file and the host, and must not reach the role's first task that
changes a host (installing HAProxy).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
PLAYBOOK = """
- hosts: router
  gather_facts: false
  roles:
    - role: router
"""


def write_pair(directory: Path, name: str, not_after: datetime, other_key: bool = False) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge-1")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - timedelta(days=365))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    stored_key = ec.generate_private_key(ec.SECP256R1()) if other_key else key
    (directory / f"{name}.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / f"{name}.key").write_bytes(
        stored_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (directory / "ca.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


@pytest.mark.parametrize(
    ("days_left", "other_key", "phrase"),
    [
        (-2, False, "expired on"),
        (10, False, "within the renewal window of 30 days"),
        (200, True, "does not match its private key"),
    ],
)
def test_router_stops_before_any_change(tmp_path, days_left, other_key, phrase):
    name = f"case-{days_left}"
    write_pair(tmp_path, name, datetime.now(UTC) + timedelta(days=days_left), other_key)
    inventory = {
        "all": {
            "children": {
                "router": {
                    "hosts": {
                        "edge-1": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": sys.executable,
                            "private_address": "127.0.0.1",
                            "router_tls_certificate_src": str(tmp_path / f"{name}.crt"),
                            "router_tls_private_key_src": str(tmp_path / f"{name}.key"),
                            "router_tls_ca_src": str(tmp_path / "ca.crt"),
                        }
                    }
                },
                "auth_api": {"hosts": {"api-1": {"private_address": "127.0.0.2"}}},
                "transaction_api": {"hosts": {"api-1": {}}},
            }
        }
    }
    (tmp_path / "hosts.json").write_text(json.dumps(inventory))
    (tmp_path / "site.yml").write_text(PLAYBOOK)
    result = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(tmp_path / "hosts.json"), str(tmp_path / "site.yml")],
        env=dict(
            os.environ,
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_ROLES_PATH=str(REPO / "roles"),
            ANSIBLE_FILTER_PLUGINS=str(REPO / "playbooks" / "filter_plugins"),
        ),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    sentence = (
        f"{tmp_path / name}.crt (the TLS certificate presented to the APIs of the router on edge-1)"
    )
    assert sentence in output.replace("\n", " "), output[-3000:]
    assert phrase in output, output[-3000:]
    assert "Install HAProxy and socat" not in output, "the role went on past its checks"
