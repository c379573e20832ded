"""schemathesis hooks for the Transaction API's fuzz (test_api_fuzz.py): a
valid bearer token on every case, from the Auth API through the router.

Tokens live 30 seconds, so schemathesis asks for a new one every
REFRESH_SECONDS (and at once after a 401 it did not provoke itself). The
router allows each client a few token requests per period on
/authentication/token; a 429 is waited out as its Retry-After says.

Environment (set by test_api_fuzz.py):
  API_FUZZ_TOKEN_URL       the router's /authentication/token
  API_FUZZ_USERNAME        a user who may transact
  API_FUZZ_PASSWORD_FILE   that user's password on its first line
  API_FUZZ_CA_FILE         the CA the router's HTTPS certificate is verified
                           against (the compose CA)
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import schemathesis
from schemathesis import AuthContext, Case

# The router's certificate, verified against the compose CA.
TLS = ssl.create_default_context(cafile=os.environ.get("API_FUZZ_CA_FILE") or None)
# Well inside the tokens' 30 s, so a token handed to a case that waits for
# the rate limiter or a slow answer is still valid when the case is sent.
REFRESH_SECONDS = 15
# How often a 429 is waited out before the fetch counts as failed.
RATE_LIMITED_ATTEMPTS = 4


def fetch_token(url: str, username: str, password: str) -> str:
    """A token as the originals' form fields ask for one; waits out 429s."""
    form = urllib.parse.urlencode({"username": username, "password": password}).encode()
    for _ in range(RATE_LIMITED_ATTEMPTS):
        request = urllib.request.Request(url, data=form, method="POST")
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(request, timeout=10, context=TLS) as answer:
                token: str = json.load(answer)["token"]
                return token
        except urllib.error.HTTPError as error:
            if error.code != 429:
                raise
            time.sleep(float(error.headers.get("Retry-After") or 1))
    raise RuntimeError(f"{url} kept answering 429 after {RATE_LIMITED_ATTEMPTS} waits")


@schemathesis.auth(refresh_interval=REFRESH_SECONDS)
class RouterBearerToken:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.fetched = 0

    def get(self, case: Case, context: AuthContext) -> str:
        password = Path(os.environ["API_FUZZ_PASSWORD_FILE"]).read_text().splitlines()[0]
        token = fetch_token(
            os.environ["API_FUZZ_TOKEN_URL"], os.environ["API_FUZZ_USERNAME"], password
        )
        self.fetched += 1
        # In the run's log: how often the token was renewed, and when.
        print(
            f"api_fuzz_hooks: token {self.fetched} at {time.monotonic() - self.started:.1f} s",
            file=sys.stderr,
        )
        return token

    def set(self, case: Case, data: str, context: AuthContext) -> None:
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
