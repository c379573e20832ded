"""The compose platform's secrets, made on first start and kept after.

The `secrets` service runs this once per `up`, before every other service
(they wait with `depends_on: condition: service_completed_successfully`).
The same kinds and strengths as the platform_secrets role:

* two Redis passwords and the demo users' password, 32 letters and digits;
* an Ed25519 key pair for the tokens (PKCS#8 PEM, and its public key);
* the users file: alice and bob may transact, charlie may not, each with an
  scrypt hash (own salt) of the demo password, by the Auth API's own code;
* a certificate authority (ECDSA P-384, 3650 days, pathlen 0) and the
  router's certificate (ECDSA P-256, 365 days) for router, localhost and
  127.0.0.1, signed again when it expires within the renewal window.

Everything is kept in the volume mounted at SECRETS_DIR (0700, root only);
each service's volume under SECRETS_OUT gets only the files it reads, written
only when they changed (a running router takes a renewed certificate up on a
reload). Nothing that exists is made again.

Usage: init.py             make what is missing, copy, print the demo password
       init.py password    print the demo users' password
       init.py ca          print the CA's certificate (for clients' --verify)

Environment (validated at start):
  SECRETS_DIR               where the secrets are kept (/secrets)
  SECRETS_OUT               the services' volumes, one directory each (/out)
  SECRETS_TLS_RENEW_DAYS    renewal window of the router's certificate (30)
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import string
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auth_api.passwords import hash_password
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PASSWORD_LENGTH = 32
PASSWORD_ALPHABET = string.ascii_letters + string.digits
DEMO_USERS = ((1, "alice", True), (2, "bob", True), (3, "charlie", False))
CA_NAME = "Loyalty platform CA"
CA_DAYS = 3650
HOST_DAYS = 365
ROUTER_NAMES = ("router", "localhost")
ROUTER_ADDRESSES = ("127.0.0.1",)

# Which service reads which file (the name each finds under /run/secrets/).
CONSUMERS: dict[str, tuple[str, ...]] = {
    "auth-api": ("jwt_private_key", "users_json"),
    "transaction-api": ("jwt_public_key", "redis_loyalty_password"),
    "loyalty-worker": ("redis_loyalty_password",),
    "redis": ("redis_admin_password", "redis_loyalty_password"),
    "router": ("router_pem",),
}


class ConfigError(Exception):
    pass


def settings() -> tuple[Path, Path, int]:
    store = Path(os.environ.get("SECRETS_DIR", "/secrets"))
    out = Path(os.environ.get("SECRETS_OUT", "/out"))
    raw = os.environ.get("SECRETS_TLS_RENEW_DAYS", "30")
    try:
        renew = int(raw)
    except ValueError:
        message = f"SECRETS_TLS_RENEW_DAYS must be a whole number of days, not {raw!r}"
        raise ConfigError(message) from None
    if not 0 <= renew <= CA_DAYS:
        raise ConfigError(f"SECRETS_TLS_RENEW_DAYS must be between 0 and {CA_DAYS}, not {renew}")
    for name, path in (("SECRETS_DIR", store), ("SECRETS_OUT", out)):
        if not path.is_dir():
            raise ConfigError(f"{name} {path} is not a directory (is its volume mounted?)")
    return store, out, renew


def write(path: Path, content: bytes, mode: int) -> bool:
    """Write content to path atomically unless it is there already; True if written."""
    if path.exists() and path.read_bytes() == content:
        return False
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(content)
    temporary.chmod(mode)
    temporary.replace(path)
    return True


def password() -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def pem_key(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_or_make_key(path: Path, make: Callable[[], Any]) -> Any:
    """The private key kept in path, made (once) by make() if missing."""
    if path.exists():
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    key = make()
    write(path, pem_key(key), 0o600)
    return key


def needs_signing(path: Path, renew_days: int, issuer: x509.Certificate | None) -> bool:
    """A certificate is signed (again) when missing, expiring within the
    renewal window, or not signed by the current CA."""
    if not path.exists():
        return True
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    window = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=renew_days)
    if certificate.not_valid_after_utc <= window:
        return True
    if issuer is not None:
        try:
            certificate.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            return True
    return False


def sign_ca(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            key_usage(signs_certificates=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """A CA's key signs certificates and CRLs; a host's signs its TLS handshakes."""
    return x509.KeyUsage(
        digital_signature=not signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def sign_router(
    key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in ROUTER_NAMES]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ROUTER_ADDRESSES]
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "router")]))
        .issuer_name(ca.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=HOST_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False)
        .add_extension(
            key_usage(signs_certificates=False),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def make(store: Path, renew_days: int) -> list[str]:
    """Make what is missing in store; the names of what was made."""
    made = []
    for name in ("redis_admin_password", "redis_loyalty_password", "demo_password"):
        if not (store / name).exists():
            write(store / name, (password() + "\n").encode(), 0o600)
            made.append(name)
            if name == "demo_password":
                (store / "users_json").unlink(missing_ok=True)

    if not (store / "jwt_private_key").exists():
        made.append("jwt_private_key")
    jwt_key = load_or_make_key(store / "jwt_private_key", ed25519.Ed25519PrivateKey.generate)
    public = jwt_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if write(store / "jwt_public_key", public, 0o600):
        made.append("jwt_public_key")

    if not (store / "users_json").exists():
        demo = (store / "demo_password").read_text(encoding="utf-8").splitlines()[0]
        users = [
            {"id": i, "username": n, "can_transact": c, "password_hash": hash_password(demo)}
            for i, n, c in DEMO_USERS
        ]
        write(store / "users_json", (json.dumps(users, indent=2) + "\n").encode(), 0o600)
        made.append("users_json")

    ca_key = load_or_make_key(store / "ca.key", lambda: ec.generate_private_key(ec.SECP384R1()))
    if needs_signing(store / "ca.crt", renew_days, None):
        write(store / "ca.crt", sign_ca(ca_key).public_bytes(serialization.Encoding.PEM), 0o644)
        made.append("ca.crt")
    ca = x509.load_pem_x509_certificate((store / "ca.crt").read_bytes())
    router_key = load_or_make_key(
        store / "router.key", lambda: ec.generate_private_key(ec.SECP256R1())
    )
    if needs_signing(store / "router.crt", renew_days, ca):
        certificate = sign_router(router_key, ca, ca_key)
        write(store / "router.crt", certificate.public_bytes(serialization.Encoding.PEM), 0o600)
        made.append("router.crt")
    # HAProxy reads one file: the certificate, then its key.
    pem = (store / "router.crt").read_bytes() + pem_key(router_key)
    write(store / "router_pem", pem, 0o600)
    return made


def distribute(store: Path, out: Path) -> list[str]:
    """Each service's volume gets its files (0644: its one user reads them)."""
    changed = []
    for service, names in CONSUMERS.items():
        target = out / service
        if not target.is_dir():
            raise ConfigError(f"{target} is missing: the {service} volume is not mounted")
        target.chmod(0o755)
        for name in names:
            if write(target / name, (store / name).read_bytes(), 0o644):
                changed.append(f"{service}/{name}")
    return changed


def main(argv: list[str]) -> int:
    try:
        store, out, renew_days = settings()
        if argv[1:] not in ([], ["password"], ["ca"]):
            raise ConfigError(f"unknown arguments {argv[1:]}: give none, 'password' or 'ca'")
        os.umask(0o077)
        store.chmod(0o700)
        made = make(store, renew_days)
        changed = distribute(store, out)
    except ConfigError as error:
        print(f"secrets: {error}", file=sys.stderr)
        return 2
    demo = (store / "demo_password").read_text(encoding="utf-8").splitlines()[0]
    if argv[1:] == ["password"]:
        print(demo)
        return 0
    if argv[1:] == ["ca"]:
        sys.stdout.write((store / "ca.crt").read_text(encoding="ascii"))
        return 0
    print(f"secrets: made {', '.join(made)}" if made else "secrets: all kept from the last start")
    if changed:
        print(f"secrets: written to the services' volumes: {', '.join(changed)}")
    users = ", ".join(name for _, name, _ in DEMO_USERS)
    print(f"secrets: demo users {users} (charlie may not transact); password: {demo}")
    print(
        "secrets: the router's CA certificate, for clients' --verify:"
        " docker compose run --rm -T secrets ca > ca.crt"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
