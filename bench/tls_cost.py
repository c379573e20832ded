#!/usr/bin/env python3
"""What encryption costs, measured side by side in one run on loopback.

Two copies of the same path run at once, one in plain text and one with
TLS on every hop, configured the way the roles configure the platform:

    wrk --HTTP(S), keep-alive--> HAProxy --HTTP(S), client certificate-->
        Transaction API (gunicorn) --Redis protocol (over TLS)--> redis-server

Prints requests/s of POST /transactions through each router and their ratio
(target >= 0.8); the CPU time per request of each part (router, API, Redis,
and wrk, the client) in each copy, which depends far less than the rates on
what else the machine runs; then XADD/s of one redis-py connection to each
server and their ratio. The TLS copy uses ECDSA P-256 certificates of a CA made here,
TLS 1.2/1.3 only, ALPN h2,http/1.1 at the router, client certificates
required by the API and by Redis, and HAProxy's TLS session reuse towards
the API. wrk keeps its connections open (keep-alive), so the client side
pays a handshake per connection, not per request.

Usage: .venv/bin/python bench/tls_cost.py [--seconds 12] [--rounds 3]
       [--clients 8] [--workers 2] [--xadds 20000] [--json FILE]
Needs haproxy, redis-server and wrk (scripts/bootstrap installs them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import http_load
from probes import http_status, make_token, wait_until

from services import BIN, HOST, REDIS_SERVER, Processes, free_port

# The router's TLS settings, as roles/router writes them (Mozilla intermediate).
CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
CIPHERSUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
HAPROXY_CONFIG = """\
global
    maxconn 4096
    ssl-default-bind-ciphers {ciphers}
    ssl-default-bind-ciphersuites {ciphersuites}
    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets
    ssl-default-server-options ssl-min-ver TLSv1.2

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    option http-buffer-request
    http-reuse safe
"""
# One HAProxy per copy, so that each copy's CPU is its own.
HAPROXY_PLAIN = """
frontend plain
    bind {host}:{port}
    default_backend api

backend api
    server api {host}:{api_port}
"""
HAPROXY_TLS = """
frontend tls
    bind {host}:{port} ssl crt {tmp}/host.pem alpn h2,http/1.1
    http-response set-header Strict-Transport-Security "max-age=63072000"
    default_backend api

backend api
    server api {host}:{api_port} ssl verify required verifyhost localhost \
        ca-file {tmp}/ca.pem crt {tmp}/host.pem
"""
PARTS = ("router", "api", "redis")


def make_certificates(directory: Path) -> None:
    """ca.pem, and host.crt/host.key (+ host.pem, both) for loopback, signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("bench CA"))
        .issuer_name(name("bench CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    host = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "host.crt").write_bytes(host.public_bytes(pem))
    (directory / "host.key").write_bytes(key_pem)
    (directory / "host.pem").write_bytes(host.public_bytes(pem) + key_pem)


def xadd_rate(client: Any, count: int) -> float:
    """XADDs per second of one connection, one round trip each."""
    start = time.perf_counter()
    for n in range(count):
        client.xadd("bench:tls", {"n": n, "amount": 2000, "currency": "GBP"}, maxlen=1000)
    return count / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="load per target in all")
    parser.add_argument("--rounds", type=int, default=3, help="alternating turns per target")
    parser.add_argument("--clients", type=int, default=8, help="wrk's open connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per API")
    parser.add_argument("--xadds", type=int, default=20000, help="XADDs per connection and round")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        raise SystemExit("bench: haproxy is missing; run scripts/bootstrap (it installs it).")

    import redis
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="loyalty-bench-tls-"))
    figures: dict[str, Any] = {"cpus": os.cpu_count(), "clients": args.clients}
    try:
        make_certificates(tmp)
        tls_files = {
            "ssl_ca_certs": str(tmp / "ca.pem"),
            "ssl_certfile": str(tmp / "host.crt"),
            "ssl_keyfile": str(tmp / "host.key"),
        }
        key = Ed25519PrivateKey.generate()
        (tmp / "jwt.pub").write_bytes(
            key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )
        token = make_token(key, 1)

        # The processes of each copy by part, for their CPU per request.
        pids: dict[str, dict[str, int]] = {"plain": {}, "tls": {}}
        # Two Redis servers: one plain, one TLS only (port 0), clients' certificates required.
        ports = {name: free_port() for name in ("redis_plain", "redis_tls")}
        common = ["--bind", HOST, "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
        for name in ports:
            workdir = tmp / name
            workdir.mkdir()
            listen = (
                ["--port", str(ports[name])]
                if name == "redis_plain"
                else ["--port", "0", "--tls-port", str(ports[name]),
                      "--tls-cert-file", tls_files["ssl_certfile"],
                      "--tls-key-file", tls_files["ssl_keyfile"],
                      "--tls-ca-cert-file", tls_files["ssl_ca_certs"],
                      "--tls-auth-clients", "yes",
                      "--tls-protocols", "TLSv1.2 TLSv1.3"]
            )  # fmt: skip
            server = procs.start(
                [REDIS_SERVER, *listen, *common, "--dir", str(workdir)],
                dict(os.environ),
                tmp / f"{name}.log",
            )
            pids[name.removeprefix("redis_")]["redis"] = server.pid
        plain_redis = redis.Redis(host=HOST, port=ports["redis_plain"])
        tls_redis = redis.Redis(
            host=HOST, port=ports["redis_tls"], ssl=True, ssl_cert_reqs="required", **tls_files
        )
        for client in (plain_redis, tls_redis):
            wait_until(lambda c=client: _pings(c), 10, "redis-server")

        # Two Transaction APIs, each on its own Redis.
        api_ports = {"plain": free_port(), "tls": free_port()}
        base_env = {
            **os.environ,
            "HTTP_HOST": HOST,
            "WEB_CONCURRENCY": str(args.workers),
            "LOG_LEVEL": "WARNING",
            "JWT_PUBLIC_KEY_FILE": str(tmp / "jwt.pub"),
        }
        envs = {
            "plain": {
                **base_env,
                "HTTP_PORT": str(api_ports["plain"]),
                "REDIS_URL": f"redis://{HOST}:{ports['redis_plain']}/0",
            },
            "tls": {
                **base_env,
                "HTTP_PORT": str(api_ports["tls"]),
                "TLS_CERT_FILE": tls_files["ssl_certfile"],
                "TLS_KEY_FILE": tls_files["ssl_keyfile"],
                "TLS_CLIENT_CA_FILE": tls_files["ssl_ca_certs"],
                "REDIS_URL": f"rediss://{HOST}:{ports['redis_tls']}/0",
                "REDIS_TLS_CA_FILE": tls_files["ssl_ca_certs"],
                "REDIS_TLS_CERT_FILE": tls_files["ssl_certfile"],
                "REDIS_TLS_KEY_FILE": tls_files["ssl_keyfile"],
            },
        }
        for name, env in envs.items():
            pids[name]["api"] = procs.start(
                [str(BIN / "transaction-api")], env, tmp / f"api-{name}.log"
            ).pid

        router_ports = {"plain": free_port(), "tls": free_port()}
        for name, frontend in (("plain", HAPROXY_PLAIN), ("tls", HAPROXY_TLS)):
            config = tmp / f"haproxy-{name}.cfg"
            config.write_text(
                HAPROXY_CONFIG.format(ciphers=CIPHERS, ciphersuites=CIPHERSUITES)
                + frontend.format(
                    host=HOST, port=router_ports[name], api_port=api_ports[name], tmp=tmp
                )
            )
            pids[name]["router"] = procs.start(
                [haproxy, "-db", "-f", str(config)], dict(os.environ), tmp / f"haproxy-{name}.log"
            ).pid
        wait_until(
            lambda: http_status(HOST, router_ports["plain"], "/ready") == 200, 30, "plain path"
        )
        wait_until(lambda: _https_ready(HOST, router_ports["tls"], tmp), 30, "TLS path")

        targets = [
            http_load.Target("plain", f"http://{HOST}:{router_ports['plain']}/transactions", token),
            http_load.Target("tls", f"https://{HOST}:{router_ports['tls']}/transactions", token),
        ]
        # A copy's processes idle while the other copy is loaded, so the CPU
        # each one used over all turns is what its own requests cost.
        cpu_before = {copy: {part: tree_cpu_seconds(pid) for part, pid in parts.items()}
                      for copy, parts in pids.items()}  # fmt: skip
        http_load.drive(targets, args.seconds, args.rounds, args.clients)
        plain, tls = targets
        cpu_us: dict[str, dict[str, float]] = {}
        for target in targets:
            served = target.requests - target.failures
            used = {part: tree_cpu_seconds(pid) - cpu_before[target.name][part]
                    for part, pid in pids[target.name].items()}  # fmt: skip
            used["client"] = target.client_cpu_seconds
            cpu_us[target.name] = {
                part: round(seconds / served * 1e6, 1) if served else 0.0
                for part, seconds in used.items()
            }
        http_ratio = tls.rps / plain.rps if plain.rps else 0.0

        xadd = {"plain": 0.0, "tls": 0.0}
        for _ in range(args.rounds):
            xadd["plain"] += xadd_rate(plain_redis, args.xadds) / args.rounds
            xadd["tls"] += xadd_rate(tls_redis, args.xadds) / args.rounds
        redis_ratio = xadd["tls"] / xadd["plain"] if xadd["plain"] else 0.0

        figures.update(
            router_plain_rps=round(plain.rps, 1),
            router_plain_failures=plain.failures,
            router_tls_rps=round(tls.rps, 1),
            router_tls_failures=tls.failures,
            router_tls_ratio=round(http_ratio, 3),
            xadd_plain_per_second=round(xadd["plain"], 1),
            xadd_tls_per_second=round(xadd["tls"], 1),
            xadd_tls_ratio=round(redis_ratio, 3),
            client_cores=http_load.client_cores(targets),
            cpu_microseconds_per_request=cpu_us,
        )
        print(
            f"machine: {os.cpu_count()} CPUs; gunicorn workers per API: {args.workers}; "
            f"wrk connections: {args.clients}; {args.seconds:g} s per target in "
            f"{args.rounds} alternating rounds"
        )
        print(f"POST /transactions via router, plain : {plain.rps:8.0f} requests/s "
              f"({plain.failures} failed)")  # fmt: skip
        print(f"POST /transactions via router, TLS   : {tls.rps:8.0f} requests/s "
              f"({tls.failures} failed)  ratio {http_ratio:.2f} (target >= 0.80)")  # fmt: skip
        print("CPU per request, microseconds (plain / TLS):")
        for part in (*PARTS, "client"):
            print(f"  {part:<7}{cpu_us['plain'][part]:8.0f} / {cpu_us['tls'][part]:<8.0f}")
        totals = {copy: sum(cpu_us[copy].values()) for copy in cpu_us}
        servers = {copy: sum(cpu_us[copy][p] for p in PARTS) for copy in cpu_us}
        print(f"  {'all':<7}{totals['plain']:8.0f} / {totals['tls']:<8.0f}"
              f"ratio {totals['plain'] / totals['tls']:.2f}; router, API and Redis alone: "
              f"ratio {servers['plain'] / servers['tls']:.2f}")  # fmt: skip
        print(f"XADD, one plain Redis connection     : {xadd['plain']:8.0f} per second")
        print(f"XADD, one TLS Redis connection       : {xadd['tls']:8.0f} per second  "
              f"ratio {redis_ratio:.2f}")  # fmt: skip
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def tree_cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and of its descendants, alive or waited for."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, and cutime, cstime of children already waited for
        total += sum(int(value) for value in fields[11:15])
        pending += children.get(current, [])
    return total / ticks


def _pings(client: Any) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _https_ready(host: str, port: int, tmp: Path) -> bool:
    import http.client
    import ssl

    context = ssl.create_default_context(cafile=str(tmp / "ca.pem"))
    connection = http.client.HTTPSConnection(host, port, timeout=2, context=context)
    try:
        connection.request("GET", "/ready")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


if __name__ == "__main__":
    sys.exit(main())
