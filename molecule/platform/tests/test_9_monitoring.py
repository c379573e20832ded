"""The monitoring host (platform-redis): every target scraped, counts that
agree with what was sent, /metrics never routed, alerts on real faults that
reach a webhook receiver (on platform-outsider) and resolve, the dashboard.

The scenario's monitoring scrapes and evaluates every 5 s and notifies after
5 s (host_vars/platform-redis.yml); the rules' own `for:` durations are the
production ones (1 minute for a target down, a worker or Redis missing).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from helpers import (
    ADDRESSES,
    FIGURES,
    REPO,
    TOKENS,
    WORKER_HOSTS,
    curl_ready_from_edge,
    host_python,
    log,
    redis_cli,
    request,
    wait_until_drained,
)
from host_commands import dexec, docker

MONITOR = "platform-redis"
RECEIVER_HOST = "platform-outsider"
RECEIVED = "/tmp/alerts.jsonl"
# Jobs and how many targets each has in the scenario's inventory.
TARGETS = {
    "prometheus": 1,
    "alertmanager": 1,
    "node": 6,
    "auth-api": 1,
    "transaction-api": 2,
    "loyalty-worker": 4,
    "haproxy": 1,
    "redis": 1,
}

# A webhook receiver: appends each notification, with the time it came, to
# RECEIVED; ends by itself after 15 minutes.
RECEIVER = f"""
import http.server, json, os, threading, time
open("/tmp/receiver.pid", "w").write(str(os.getpid()))
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with open({RECEIVED!r}, "a") as out:
            out.write(json.dumps({{"received": time.time(), "payload": json.loads(body)}}) + "\\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("0.0.0.0", 9099), Handler)
threading.Timer(900, server.shutdown).start()
server.serve_forever()
"""

API_GET = """
import json, sys, urllib.request
with urllib.request.urlopen("http://127.0.0.1:9090" + sys.argv[1], timeout=10) as reply:
    sys.stdout.write(reply.read().decode())
"""


def prometheus(path: str) -> Any:
    return json.loads(host_python(MONITOR, API_GET, path, timeout=30))


def query(expr: str) -> list[dict[str, Any]]:
    answer = prometheus("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def scalar(expr: str) -> float:
    result = query(expr)
    return float(result[0]["value"][1]) if result else 0.0


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        time.sleep(1)
    return time.monotonic() - started


def notifications(since: float) -> list[tuple[str, str, dict[str, str]]]:
    """(status, alertname, labels) of each alert notified after `since`."""
    out = dexec(RECEIVER_HOST, "cat", RECEIVED, check=False).stdout
    found = []
    for line in out.splitlines():
        record = json.loads(line)
        if record["received"] < since:
            continue
        for alert in record["payload"]["alerts"]:
            labels = alert["labels"]
            found.append((alert["status"], labels["alertname"], labels))
    return found


def notified(status: str, alertname: str, since: float, **labels: str) -> bool:
    return any(
        s == status and a == alertname and all(got.get(k) == v for k, v in labels.items())
        for s, a, got in notifications(since)
    )


def test_monitoring_units_run_hardened():
    for unit in ("prometheus", "prometheus-alertmanager", "prometheus-redis-exporter"):
        assert (
            dexec(MONITOR, "systemctl", "is-active", unit, check=False).stdout.strip() == "active"
        )
    for host in ADDRESSES:
        if host == RECEIVER_HOST:
            continue
        state = dexec(host, "systemctl", "is-active", "prometheus-node-exporter", check=False)
        assert state.stdout.strip() == "active", host
    scores = {}
    for unit in ("prometheus", "prometheus-alertmanager", "prometheus-redis-exporter"):
        out = dexec(MONITOR, "systemd-analyze", "security", "--no-pager", unit, check=False).stdout
        scores[unit] = float(
            out.rsplit("Overall exposure level for ", 1)[1].split(":")[1].split()[0]
        )
    FIGURES["monitoring_exposure"] = scores
    assert all(score <= 4.0 for score in scores.values()), scores


def test_every_target_is_scraped():
    def all_up() -> bool:
        targets = prometheus("/api/v1/targets?state=active")["data"]["activeTargets"]
        jobs: dict[str, int] = {}
        for target in targets:
            if target["health"] == "up":
                jobs[target["labels"]["job"]] = jobs.get(target["labels"]["job"], 0) + 1
        return jobs == TARGETS

    # After test_7's restarts every target has had time; a few scrapes more at most.
    seconds = wait_for("every target up", all_up, timeout=90)
    log(f"every target up after {seconds:.0f} s more")
    # The Redis exporter reached Redis over TLS, and HAProxy reports its servers.
    assert scalar('redis_up{job="redis"}') == 1
    assert scalar('sum(haproxy_server_status{proxy="transaction_api",state="UP"})') == 2


def test_metrics_are_never_routed():
    for path in (
        "/transactions/metrics",
        "/authentication/metrics",
        "/authentication/metrics/",
        "/authentication/%6detrics",
        "/transactions//METRICS",
    ):
        status, _, body = request("GET", path)
        assert status == 404, f"{path}: {status} {body}"


def scraped_since(expressions: list[str], since: float) -> bool:
    """Every series of every expression has a sample newer than `since`
    (Prometheus's values lag the services' by up to a scrape interval)."""
    return all(scalar(f"min(timestamp({e}))") > since for e in expressions)


def test_counts_agree_with_what_was_sent():
    queued = 'loyalty_transactions_queued_total{job="transaction-api"}'
    awarded = 'loyalty_worker_awards_total{result="awarded"}'
    wait_until_drained()
    drained = time.time()
    # The counts before are read from samples taken after the drain, or
    # awards of earlier tests not yet scraped would count as this test's.
    wait_for("a scrape after the drain", lambda: scraped_since([queued, awarded], drained), 60)
    before_queued, before_awarded = scalar(f"sum({queued})"), scalar(f"sum({awarded})")
    sent = 30
    accepted = 0
    for i in range(sent):
        status, _, body = request(
            "POST",
            "/transactions/transactions",
            {"amount": "250", "currency": "EUR"},
            {
                "Authorization": f"Bearer {TOKENS.get('bob')}",
                "Idempotency-Key": f"monitoring-{time.time()}-{i}",
            },
        )
        assert status == 202, body
        accepted += 1
    wait_until_drained()
    drained = time.time()
    wait_for("a scrape after the load", lambda: scraped_since([queued, awarded], drained), 60)
    counted = (
        scalar(f"sum({queued})") - before_queued,
        scalar(f"sum({awarded})") - before_awarded,
    )
    assert counted == (accepted, accepted), (
        f"{accepted} accepted, but Prometheus counted (queued, awarded) {counted}"
    )
    FIGURES["monitoring_counted"] = f"{accepted} 202s = {accepted} queued = {accepted} awarded"


def test_alerts_fire_on_real_faults_and_resolve():
    docker("exec", "-d", RECEIVER_HOST, "python3", "-c", RECEIVER)
    wait_for(
        "the receiver",
        lambda: (
            dexec(RECEIVER_HOST, "test", "-s", "/tmp/receiver.pid", check=False).returncode == 0
        ),
        timeout=10,
    )
    timings: dict[str, float] = {}
    kept = "loyalty:dead:kept-by-test-9"
    moved = redis_cli("EXISTS", "loyalty:dead") == "1"
    try:
        # A dead letter: the dead-letter stream is set aside first, so that
        # the alert is quiet before the malformed entry arrives.
        if moved:
            redis_cli("RENAME", "loyalty:dead", kept)
        wait_for("DeadLetters quiet", lambda: not query('ALERTS{alertname="DeadLetters"}'), 60)
        start = time.time()
        entry = redis_cli("XADD", "loyalty:dead", "*", "reason", "malformed entry of test_9")
        timings["dead_letter"] = wait_for(
            "DeadLetters notified", lambda: notified("firing", "DeadLetters", start), 90
        )
        redis_cli("XDEL", "loyalty:dead", entry)

        # Every worker stopped, and Redis stopped.
        start = time.time()
        for host in WORKER_HOSTS:
            dexec(host, "systemctl", "stop", "loyalty-worker@1", "loyalty-worker@2", timeout=60)
        dexec(MONITOR, "systemctl", "stop", "redis-server", timeout=60)
        for name, labels in (
            ("TargetDown", {"job": "loyalty-worker", "host": "platform-worker-1"}),
            ("NoWorkerConsuming", {}),
            ("RedisDown", {"host": MONITOR}),
        ):
            wait_for(
                f"{name} notified",
                lambda n=name, lb=labels: notified("firing", n, start, **lb),
                180,
            )
            timings[name] = time.time() - start
        # Back: each resolves.
        start = time.time()
        dexec(MONITOR, "systemctl", "start", "redis-server", timeout=60)
        for host in WORKER_HOSTS:
            dexec(host, "systemctl", "start", "loyalty-worker@1", "loyalty-worker@2", timeout=60)
        for name in ("TargetDown", "NoWorkerConsuming", "RedisDown"):
            wait_for(f"{name} resolved", lambda n=name: notified("resolved", n, start), 120)
            timings[f"{name}_resolved"] = time.time() - start
    finally:
        dexec(MONITOR, "systemctl", "start", "redis-server", timeout=60, check=False)
        for host in WORKER_HOSTS:
            dexec(host, "systemctl", "start", "loyalty-worker@1", "loyalty-worker@2", check=False)
        if moved:
            redis_cli("RENAME", kept, "loyalty:dead")
        dexec(RECEIVER_HOST, "sh", "-c", "kill $(cat /tmp/receiver.pid)", check=False)
    FIGURES["alert_seconds"] = {k: round(v) for k, v in timings.items()}
    log(f"alert notifications after (s): {FIGURES['alert_seconds']}")
    curl_ready_from_edge()


# A real browser (Debian's headless Chromium) on the control machine, which
# host_vars/platform-redis.yml lets reach Prometheus through the firewall.
BROWSER = "chromium-headless-shell"
DASHBOARD_URL = f"http://{ADDRESSES[MONITOR]}:9090/consoles/loyalty.html"


def browse(*options: str) -> subprocess.CompletedProcess[str]:
    command = [BROWSER, "--no-sandbox", "--disable-gpu", "--timeout=20000", *options, DASHBOARD_URL]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"{BROWSER}: {result.stderr[-2000:]}"
    return result


def test_dashboard_shows_the_platform():
    # The page as the browser built it: Prometheus evaluated every number,
    # the browser parsed the HTML (a cell outside its table would be gone).
    page = browse("--dump-dom").stdout
    for section in ("alerts", "services", "queue", "redis", "hosts", "router"):
        assert f'<h2 id="{section}">' in page
    for service in ("auth-api", "transaction-api"):
        assert f'data-service="{service}"' in page
    queued = int(scalar('sum(loyalty_transactions_queued_total{job="transaction-api"})'))
    shown = page.split('<td id="queued">', 1)[1].split("<", 1)[0]
    assert int(shown) == queued, (shown, queued)
    hosts_up = page.count('<tr class="ok"><td>platform-')
    assert hosts_up >= 6, page[page.find('id="hosts"') :][:2000]
    assert "no service metrics" not in page
    # What a person sees, kept for docs/observability.md.
    screenshot = REPO / "build" / "dashboard.png"
    screenshot.parent.mkdir(exist_ok=True)
    screenshot.unlink(missing_ok=True)
    browse(f"--screenshot={screenshot}", "--window-size=1280,1300", "--hide-scrollbars")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    FIGURES["dashboard_screenshot_bytes"] = screenshot.stat().st_size
