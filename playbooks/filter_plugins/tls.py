"""The platform's certificates, as Ansible filters.

``platform_tls_subject_alt_names`` lists the names a host's certificate
carries; ``platform_tls_plan`` says which keys, requests and certificates
platform_secrets must make; ``tls_certificate_problem`` says in one sentence what is wrong with
a certificate and its key, or returns an empty string. Both are pure
functions of their arguments (PEM text, not paths: the roles read the files
on the control node and pass inventory-supplied PEM the same way).

Ansible finds them beside the playbooks (playbooks/filter_plugins) and
through ansible.cfg's filter_plugins. Tests: tests/plugins/.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

LOOPBACK_NAMES = ("DNS:localhost", "IP:127.0.0.1")


def _address_entry(address: str) -> str:
    """``IP:`` for an address, ``DNS:`` for a name."""
    try:
        return f"IP:{ipaddress.ip_address(address)}"
    except ValueError:
        return f"DNS:{address}"


def platform_tls_subject_alt_names(host: str, host_vars: Mapping[str, Any]) -> list[str]:
    """The subject alternative names of ``host``'s certificate.

    Its inventory name, its private address (Sentinel announces addresses,
    so clients verify IPs), the floating address on router hosts, loopback
    for the checks a role runs on the host itself, and any
    ``platform_secrets_tls_extra_names`` of the host, in that order, each once.
    """
    names = [_address_entry(host)]
    private = host_vars.get("private_address")
    if private:
        names.append(_address_entry(str(private)))
    if "router" in host_vars.get("group_names", []):
        vip = host_vars.get("router_vip_address")
        if vip:
            names.append(_address_entry(str(vip)))
    names += LOOPBACK_NAMES
    extra: Iterable[str] = host_vars.get("platform_secrets_tls_extra_names") or []
    names += [name if name.startswith(("DNS:", "IP:")) else _address_entry(name) for name in extra]
    return list(dict.fromkeys(names))


def platform_tls_plan(
    hosts: Sequence[str],
    certificates: Sequence[Mapping[str, Any]],
    files: Iterable[str],
    host_vars: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """What platform_secrets must make, from one look at the certificates.

    ``certificates`` are the results of x509_certificate_info over ``ca`` and
    ``hosts/<host>`` (with ``valid_at.renewal``); one without ``valid_at``
    is missing. ``files`` names the keys and requests present (``ca.key``,
    ``hosts/<host>.csr``...). The plan: ``ca_key`` (make the CA's key),
    ``ca`` (write its request and sign it), ``renew`` (the certificates
    within the renewal window), ``keys`` (hosts without a key) and ``sign``
    (hosts whose certificate is missing, renewed, names other names than the
    host's, or whose key, request or CA key is made anew).
    """
    present = set(files)
    found = {c["item"]: c for c in certificates if "valid_at" in c}
    renew = [item for item, c in found.items() if not c["valid_at"].get("renewal")]
    ca_key = "ca.key" not in present
    keys = [host for host in hosts if f"hosts/{host}.key" not in present]

    def needs_signing(host: str) -> bool:
        item = f"hosts/{host}"
        if ca_key or item not in found or item in renew or host in keys:
            return True
        if f"{item}.csr" not in present:
            return True
        wanted = platform_tls_subject_alt_names(host, host_vars[host])
        return sorted(found[item].get("subject_alt_name") or []) != sorted(wanted)

    return {
        "ca_key": ca_key,
        "ca": ca_key or "ca" not in found or "ca" in renew or "ca.csr" not in present,
        "renew": renew,
        "keys": keys,
        "sign": [host for host in hosts if needs_signing(host)],
    }


def tls_certificate_problem(
    certificate_pem: str,
    private_key_pem: str,
    renew_days: int | str = 0,
    now: datetime | None = None,
) -> str:
    """What is wrong with this certificate and key, or ``""``.

    The first certificate of ``certificate_pem`` (a chain may follow) must
    parse, be valid now and for ``renew_days`` more days, and carry the
    public key of ``private_key_pem``.
    """
    moment = now or datetime.now(UTC)
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
    except ValueError as error:
        return f"is not a PEM certificate ({error})"
    try:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    except (ValueError, TypeError) as error:
        return f"has a private key that cannot be read ({error})"
    not_after = certificate.not_valid_after_utc
    if moment < certificate.not_valid_before_utc:
        return f"is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    if moment >= not_after:
        return f"expired on {not_after:%Y-%m-%d %H:%M} UTC"
    if moment + timedelta(days=int(renew_days)) >= not_after:
        return (
            f"expires on {not_after:%Y-%m-%d %H:%M} UTC, within the renewal window "
            f"of {int(renew_days)} days"
        )
    pem = serialization.Encoding.PEM
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if certificate.public_key().public_bytes(pem, spki) != key.public_key().public_bytes(pem, spki):
        return "does not match its private key"
    return ""


class FilterModule:
    """Ansible's entry point for the filters of this file."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "platform_tls_subject_alt_names": platform_tls_subject_alt_names,
            "platform_tls_plan": platform_tls_plan,
            "tls_certificate_problem": tls_certificate_problem,
        }
