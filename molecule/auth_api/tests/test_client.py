"""A second host asks the Auth API for tokens over the network."""

import base64
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key

testinfra_hosts = ["auth-api-client"]

URL = "https://172.30.5.10:5000"
SECRETS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "secrets"
TLS = "/tmp/client-tls"

# Runs on the client host with its own python3 (no extra packages); presents
# the client host's platform certificate, as the router does.
CONTEXT = f"""
import ssl
context = ssl.create_default_context(cafile="{TLS}/ca.pem")
context.load_cert_chain("{TLS}/cert.pem", "{TLS}/key.pem")
"""
CLIENT = (
    CONTEXT
    + """
import json, sys, urllib.error, urllib.parse, urllib.request
url, username, password = sys.argv[1:4]
data = urllib.parse.urlencode({"username": username, "password": password}).encode()
try:
    with urllib.request.urlopen(url + "/token", data=data, timeout=10, context=context) as answer:
        print(json.dumps({"status": answer.status, "body": json.load(answer)}))
except urllib.error.HTTPError as error:
    print(json.dumps({"status": error.code, "body": json.load(error)}))
"""
)


@pytest.fixture(scope="module", autouse=True)
def client_certificate(host):
    """The client host's certificate and key (platform CA), and the CA, in TLS."""
    tls = SECRETS / "tls"
    host.run(f"mkdir -p {TLS}")
    for src, dest in (
        (tls / "hosts" / "auth-api-client.crt", "cert.pem"),
        (tls / "hosts" / "auth-api-client.key", "key.pem"),
        (tls / "ca.crt", "ca.pem"),
    ):
        host.ansible("copy", f"src={src} dest={TLS}/{dest} mode=0600", become=True, check=False)


def ask_token(host, username, password):
    # testinfra quotes each argument for the shell.
    result = host.run("python3 -c %s %s %s %s", CLIENT, URL, username, password)
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


def b64(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.fixture(scope="module")
def demo_password():
    return (SECRETS / "users" / "demo.password").read_text().strip()


def test_health_over_the_network(host):
    code = CONTEXT + (
        "import sys, urllib.request\n"
        "print(urllib.request.urlopen(sys.argv[1], timeout=5, context=context).status)"
    )
    assert host.check_output("python3 -c %s %s", code, URL + "/health").strip() == "200"


def test_plain_text_to_the_api_port_is_refused(host):
    code = (
        "import sys, urllib.request\n"
        "try:\n"
        "    print(urllib.request.urlopen(sys.argv[1], timeout=5).status)\n"
        "except Exception as error:\n"
        "    print('refused', type(error).__name__)"
    )
    out = host.check_output("python3 -c %s %s", code, "http://172.30.5.10:5000/health")
    assert out.startswith("refused"), out


def health_over_tls(host, certificate_lines: str = "") -> str:
    """GET /health from `host` trusting the platform's CA, with whatever
    client certificate `certificate_lines` loads (none when empty); the
    status, or "refused" and the error's type."""
    code = (
        "import ssl, sys, urllib.request\n"
        f"context = ssl.create_default_context(cafile='{TLS}/ca.pem')\n"
        f"{certificate_lines}"
        "try:\n"
        "    print(urllib.request.urlopen(sys.argv[1], timeout=5, context=context).status)\n"
        "except Exception as error:\n"
        "    print('refused', type(error).__name__)"
    )
    return host.check_output("python3 -c %s %s", code, URL + "/health")


def test_no_client_certificate_is_refused(host):
    out = health_over_tls(host)
    assert out.startswith("refused"), out


def test_client_certificate_from_another_ca_is_refused(host):
    host.run(
        f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=intruder"
        f" -days 1 -keyout {TLS}/intruder.key -out {TLS}/intruder.crt"
    )
    out = health_over_tls(
        host, f"context.load_cert_chain('{TLS}/intruder.crt', '{TLS}/intruder.key')\n"
    )
    assert out.startswith("refused"), out


def test_token_signed_with_the_platform_key(host, demo_password):
    answer = ask_token(host, "alice", demo_password)
    assert answer["status"] == 200, answer
    token = answer["body"]["token"]
    header, payload, signature = token.split(".")
    assert json.loads(b64(header))["alg"] == "EdDSA"
    claims = json.loads(b64(payload))
    assert claims["username"] == "alice"
    assert claims["can_transact"] is True
    assert claims["iss"] == "loyalty-auth"
    assert claims["exp"] - claims["iat"] == 30
    public_key = load_pem_public_key((SECRETS / "jwt" / "ed25519.pub").read_bytes())
    # Raises InvalidSignature when the token was not signed by the platform key.
    public_key.verify(b64(signature), f"{header}.{payload}".encode())


def test_user_who_may_not_transact(host, demo_password):
    answer = ask_token(host, "charlie", demo_password)
    assert answer["status"] == 200, answer
    claims = json.loads(b64(answer["body"]["token"].split(".")[1]))
    assert claims["can_transact"] is False


def test_wrong_password_refused(host):
    assert ask_token(host, "alice", "not-the-password")["status"] == 401


def test_unknown_user_refused(host, demo_password):
    assert ask_token(host, "bob", demo_password)["status"] == 401
