"""Helpers shared by this scenario's tests: tokens signed with the
scenario's key (as the Auth API would sign them) and HTTP calls made from a
test host with its own python3."""

import json
import os
import time
import uuid
from pathlib import Path

import pytest
from tokens import mint

SECRETS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "secrets"

# Runs on a test host: method, url, token (or "-"), JSON body (or "-"), then
# the host's CA, certificate and key: HTTPS, verified, with a client
# certificate (the API requires one of the platform's CA).
HTTP_CLIENT = """
import json, ssl, sys, urllib.error, urllib.request
method, url, token, body, ca, certificate, key = sys.argv[1:8]
context = ssl.create_default_context(cafile=ca)
context.load_cert_chain(certificate, key)
headers = {"Content-Type": "application/json"}
if token != "-":
    headers["Authorization"] = "Bearer " + token
data = None if body == "-" else body.encode()
request = urllib.request.Request(url, data=data, headers=headers, method=method)
try:
    with urllib.request.urlopen(request, timeout=10, context=context) as answer:
        print(json.dumps({"status": answer.status, "body": json.load(answer)}))
except urllib.error.HTTPError as error:
    print(json.dumps({"status": error.code, "body": json.load(error)}))
"""


def make_token(user_id, username, can_transact, issuer="loyalty-auth", ttl=60, key_path=None):
    """A token with the claims the Auth API writes, signed with the scenario's key."""
    now = int(time.time())
    claims = {
        "user_id": user_id,
        "username": username,
        "can_transact": can_transact,
        "sub": str(user_id),
        "iat": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
        "iss": issuer,
    }
    return mint(claims, key_path or SECRETS / "jwt" / "ed25519.key")


# Where each host has its TLS files: the Redis host's from the redis role.
TLS_FILES = {
    "transaction-api-redis": (
        "/etc/redis/tls/ca.pem",
        "/etc/redis/tls/certificate.pem",
        "/etc/redis/tls/private-key.pem",
    ),
    "transaction-api-1": (
        "/etc/transaction-api/tls-ca.pem",
        "/etc/transaction-api/tls-certificate.pem",
        "/etc/transaction-api/tls-private-key.pem",
    ),
}


def http(host, method, url, token=None, body=None):
    """Call url from host over HTTPS with the host's certificate; return
    {"status": int, "body": JSON}."""
    result = host.run(
        "python3 -c %s %s %s %s %s %s %s %s",
        HTTP_CLIENT,
        method,
        url,
        token or "-",
        "-" if body is None else json.dumps(body),
        *TLS_FILES[host.backend.get_hostname()],
    )
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="session")
def admin_password():
    return (SECRETS / "redis" / "admin.password").read_text().strip()
