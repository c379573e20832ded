"""Nothing secret crossed the network in clear text.

The capture (conftest.py) ran through the HTTPS walkthrough, the access
tests, the load with faults, the rolling upgrade and the restarts. Searched
now: the demo password, each Redis password and any token. The marker sent
in clear text at the start must be found, and each hop must have carried
packets, so that an empty or blind capture cannot pass.
"""

from __future__ import annotations

from capture import TrafficCapture, secrets_in, tokens_in
from helpers import FIGURES, SECRETS, STATE, log

# Each hop the platform encrypts, as tcpdump filters.
HOPS = {
    "client to router (HTTPS)": "tcp dst port 443",
    "router to the APIs": "tcp dst port 5000 or tcp dst port 5001",
    "services to Redis": "tcp dst port 6379",
}


def test_no_secret_or_token_in_clear_text():
    capture = STATE.get("capture")
    assert isinstance(capture, TrafficCapture), "the capture did not start"
    data = capture.stop()
    FIGURES["capture_packets"] = capture.packets("tcp")
    FIGURES["capture_megabytes"] = round(len(data) / 1e6, 1)
    log(f"capture: {FIGURES['capture_packets']} TCP packets, {FIGURES['capture_megabytes']} MB")

    assert capture.marker.encode() in data, "the clear-text marker is missing: the capture is blind"
    for hop, expression in HOPS.items():
        assert capture.packets(expression) > 0, f"no packet of the hop {hop} was captured"

    secrets = {
        "the demo password": (SECRETS / "users" / "demo.password").read_text().strip(),
        "Redis's admin password": (SECRETS / "redis" / "admin.password").read_text().strip(),
        "Redis's loyalty password": (SECRETS / "redis" / "loyalty.password").read_text().strip(),
        "Sentinel's password": (SECRETS / "redis" / "sentinel.password").read_text().strip(),
    }
    assert secrets_in(data, secrets) == [], "found in clear text on the network"
    marker_token = f"eyJ{capture.marker}".encode()
    leaked = [token for token in tokens_in(data) if not token.startswith(marker_token)]
    assert tokens_in(data), "the token search found not even the marker's"
    assert leaked == [], f"{len(leaked)} token(s) in clear text, the first: {leaked[0][:40]!r}"
