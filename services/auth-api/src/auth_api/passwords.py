"""Password hashing with scrypt: ``scrypt$<n>$<r>$<p>$<salt>$<hash>``.

Standard library only, on purpose: the Ansible control node runs this file as
a plain script (``python3 passwords.py < password``) to hash the demo users'
passwords without installing the package.  ``auth-api-hash-password`` is the
installed command for the same thing.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
import sys

__all__ = [
    "DEFAULT_N",
    "DEFAULT_P",
    "DEFAULT_R",
    "HashParams",
    "hash_password",
    "main",
    "parse_hash",
    "verify_password",
]

DEFAULT_N = 16384
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
SCHEME = "scrypt"
# Bounds on what a users file may ask for: enough for any sensible cost, and
# a typo like n=2**30 cannot exhaust memory at start-up.
_MAX_N = 2**20
_MAX_R = 32
_MAX_P = 16
_MAXMEM = 256 * 1024 * 1024

HashParams = tuple[int, int, int, bytes, bytes]


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not text or not all(c.isalnum() or c in "-_" for c in text):
        raise ValueError("not unpadded URL-safe base64")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=_MAXMEM,
        dklen=HASH_BYTES,
    )


def hash_password(
    password: str,
    *,
    n: int = DEFAULT_N,
    r: int = DEFAULT_R,
    p: int = DEFAULT_P,
    salt: bytes | None = None,
) -> str:
    """Hash ``password`` with a fresh random salt (unless one is given)."""
    if salt is None:
        salt = os.urandom(SALT_BYTES)
    digest = _scrypt(password, salt, n, r, p)
    return f"{SCHEME}${n}${r}${p}${_b64encode(salt)}${_b64encode(digest)}"


def parse_hash(encoded: str) -> HashParams:
    """Split a hash into (n, r, p, salt, digest); ValueError when malformed."""
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise ValueError("expected scrypt$<n>$<r>$<p>$<salt>$<hash>")
    try:
        n, r, p = (int(x) for x in parts[1:4])
    except ValueError:
        raise ValueError("n, r and p must be integers") from None
    if n < 2 or n > _MAX_N or n & (n - 1):
        raise ValueError(f"n must be a power of two between 2 and {_MAX_N}")
    if not 1 <= r <= _MAX_R or not 1 <= p <= _MAX_P:
        raise ValueError(f"r must be 1..{_MAX_R} and p 1..{_MAX_P}")
    salt = _b64decode(parts[4])
    digest = _b64decode(parts[5])
    if len(digest) != HASH_BYTES:
        raise ValueError(f"hash must be {HASH_BYTES} bytes")
    return n, r, p, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches; the comparison is constant-time.

    A malformed hash verifies nothing (False) rather than raising, but the
    users file is validated at start-up so that cannot happen in service.
    """
    try:
        n, r, p, salt, digest = parse_hash(encoded)
    except ValueError:
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), digest)


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise SystemExit("passwords do not match")
        return first
    # One line from a pipe; only the line ending is removed, so spaces that
    # are part of the password survive.
    line = sys.stdin.readline()
    return line.removesuffix("\n")


def main(argv: list[str] | None = None) -> int:
    """Read a password from a prompt or standard input, print its hash."""
    args = sys.argv[1:] if argv is None else argv
    if args:
        print(
            "usage: auth-api-hash-password < password-file\n"
            "Reads one password (prompting on a terminal) and prints "
            "scrypt$<n>$<r>$<p>$<salt>$<hash>.",
            file=sys.stderr,
        )
        return 0 if args[0] in ("-h", "--help") else 2
    password = _read_password().rstrip("\r")
    if not password:
        print("auth-api-hash-password: the password is empty", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def console_main() -> None:
    """Console-script entry point (``auth-api-hash-password``)."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    console_main()
