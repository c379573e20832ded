"""The certificate filters (playbooks/filter_plugins/tls.py): the names a
host's certificate carries, and the one-phrase verdict on a certificate and
its key that the roles' preflight checks print. Certificates are made here
with the cryptography library, as platform_secrets makes them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def certificate_pem(key: ec.EllipticCurvePrivateKey, not_before: datetime, days: int) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "host-1")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def problem(load_filter: Callable[[str], Callable[..., Any]]) -> Callable[..., str]:
    return load_filter("tls_certificate_problem")


def test_a_valid_certificate_with_its_key_has_no_problem(problem, key):
    pem = certificate_pem(key, NOW - timedelta(days=1), 365)
    assert problem(pem, key_pem(key), 30, now=NOW) == ""


def test_a_chain_after_the_certificate_is_accepted(problem, key):
    pem = certificate_pem(key, NOW - timedelta(days=1), 365)
    other = certificate_pem(ec.generate_private_key(ec.SECP256R1()), NOW, 3650)
    assert problem(pem + other, key_pem(key), "30", now=NOW) == ""


def test_an_expired_certificate_says_when(problem, key):
    pem = certificate_pem(key, NOW - timedelta(days=400), 365)
    assert problem(pem, key_pem(key), 30, now=NOW) == "expired on 2026-10-25 12:00 UTC"


def test_a_certificate_inside_the_renewal_window_is_refused(problem, key):
    pem = certificate_pem(key, NOW - timedelta(days=350), 365)
    verdict = problem(pem, key_pem(key), 30, now=NOW)
    assert verdict == "expires on 2026-12-14 12:00 UTC, within the renewal window of 30 days"
    assert problem(pem, key_pem(key), 10, now=NOW) == ""


def test_a_certificate_not_yet_valid_is_refused(problem, key):
    pem = certificate_pem(key, NOW + timedelta(days=2), 365)
    assert problem(pem, key_pem(key), 30, now=NOW).startswith("is not valid before 2026-12-01")


def test_a_certificate_of_another_key_is_refused(problem, key):
    pem = certificate_pem(key, NOW - timedelta(days=1), 365)
    other_key = ec.generate_private_key(ec.SECP256R1())
    assert problem(pem, key_pem(other_key), 30, now=NOW) == "does not match its private key"


def test_text_that_is_no_certificate_or_key_is_named(problem, key):
    pem = certificate_pem(key, NOW - timedelta(days=1), 365)
    assert problem("not a certificate", key_pem(key), 30).startswith("is not a PEM certificate")
    assert problem(pem, "not a key", 30).startswith("has a private key that cannot be read")


@pytest.fixture
def names(load_filter: Callable[[str], Callable[..., Any]]) -> Callable[..., list[str]]:
    return load_filter("platform_tls_subject_alt_names")


def test_a_host_gets_its_name_address_and_loopback(names):
    host_vars = {"private_address": "10.0.0.11", "group_names": ["redis"]}
    assert names("loyalty-redis", host_vars) == [
        "DNS:loyalty-redis",
        "IP:10.0.0.11",
        "DNS:localhost",
        "IP:127.0.0.1",
    ]


def test_a_router_also_gets_the_floating_address(names):
    host_vars = {
        "private_address": "10.0.0.10",
        "router_vip_address": "10.0.0.100",
        "group_names": ["router"],
    }
    assert "IP:10.0.0.100" in names("edge-1", host_vars)
    # Only router hosts carry it, though the inventory sets it for all.
    host_vars["group_names"] = ["redis"]
    assert "IP:10.0.0.100" not in names("redis-1", host_vars)


def test_extra_names_and_ipv6_addresses_are_typed_and_kept_once(names):
    host_vars = {
        "private_address": "fd00::11",
        "platform_secrets_tls_extra_names": ["api.example.com", "IP:203.0.113.5", "127.0.0.1"],
    }
    assert names("10.0.0.11", host_vars) == [
        "IP:10.0.0.11",
        "IP:fd00::11",
        "DNS:localhost",
        "IP:127.0.0.1",
        "DNS:api.example.com",
        "IP:203.0.113.5",
    ]


@pytest.fixture
def plan(load_filter: Callable[[str], Callable[..., Any]]) -> Callable[..., dict[str, Any]]:
    return load_filter("platform_tls_plan")


HOST_VARS = {"h1": {"private_address": "10.0.0.1"}, "h2": {"private_address": "10.0.0.2"}}
SANS = {
    "h1": ["DNS:h1", "IP:10.0.0.1", "DNS:localhost", "IP:127.0.0.1"],
    "h2": ["DNS:h2", "IP:10.0.0.2", "DNS:localhost", "IP:127.0.0.1"],
}
ALL_FILES = ["ca.key", "ca.csr", "ca.crt"] + [
    f"hosts/{h}.{ext}" for h in HOST_VARS for ext in ("key", "csr", "crt")
]


def info(item: str, renewal: bool = True, sans: list[str] | None = None) -> dict[str, Any]:
    """One result of x509_certificate_info, as the role registers it."""
    return {"item": item, "valid_at": {"renewal": renewal}, "subject_alt_name": sans or []}


def found(**overrides: dict[str, Any]) -> list[dict[str, Any]]:
    results = {"ca": info("ca")} | {f"hosts/{h}": info(f"hosts/{h}", sans=SANS[h]) for h in SANS}
    return list((results | overrides).values())


def test_nothing_to_make_when_everything_is_in_place(plan):
    assert plan(["h1", "h2"], found(), ALL_FILES, HOST_VARS) == {
        "ca_key": False,
        "ca": False,
        "renew": [],
        "keys": [],
        "sign": [],
    }


def test_names_in_another_order_are_the_same_names(plan):
    reordered = {"hosts/h1": info("hosts/h1", sans=list(reversed(SANS["h1"])))}
    assert plan(["h1", "h2"], found(**reordered), ALL_FILES, HOST_VARS)["sign"] == []


def test_a_changed_address_signs_that_host(plan):
    moved = {"h1": {"private_address": "10.0.0.9"}, "h2": HOST_VARS["h2"]}
    assert plan(["h1", "h2"], found(), ALL_FILES, moved)["sign"] == ["h1"]


def test_a_certificate_in_the_renewal_window_is_renewed(plan):
    result = plan(
        ["h1", "h2"],
        found(**{"hosts/h2": info("hosts/h2", False, SANS["h2"])}),
        ALL_FILES,
        HOST_VARS,
    )
    assert (result["renew"], result["sign"], result["ca"]) == (["hosts/h2"], ["h2"], False)


def test_a_missing_key_or_request_or_certificate_signs_that_host(plan):
    without_key = [f for f in ALL_FILES if f != "hosts/h1.key"]
    assert plan(["h1", "h2"], found(), without_key, HOST_VARS)["keys"] == ["h1"]
    assert plan(["h1", "h2"], found(), without_key, HOST_VARS)["sign"] == ["h1"]
    without_csr = [f for f in ALL_FILES if f != "hosts/h2.csr"]
    assert plan(["h1", "h2"], found(), without_csr, HOST_VARS)["sign"] == ["h2"]
    missing = {"hosts/h2": {"item": "hosts/h2", "failed": True}}
    assert plan(["h1", "h2"], found(**missing), ALL_FILES, HOST_VARS)["sign"] == ["h2"]


def test_a_new_ca_key_makes_the_ca_and_signs_every_host(plan):
    result = plan(["h1", "h2"], found(), [f for f in ALL_FILES if f != "ca.key"], HOST_VARS)
    assert (result["ca_key"], result["ca"], result["sign"]) == (True, True, ["h1", "h2"])


def test_a_ca_in_its_renewal_window_is_signed_again_with_its_key(plan):
    result = plan(["h1", "h2"], found(ca=info("ca", False)), ALL_FILES, HOST_VARS)
    assert (result["ca_key"], result["ca"], result["renew"], result["sign"]) == (
        False,
        True,
        ["ca"],
        [],
    )
