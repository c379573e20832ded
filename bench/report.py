"""The bench's report: latest.json, latest.md (each figure with the command
and hosts that produced it) and latest.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hosts import log

DEBIAN_VERSIONS = {"trixie": "13", "bookworm": "12"}


def write_results(figures: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(figures, indent=2) + "\n")
    (out_dir / "latest.md").write_text(markdown(figures))
    try:
        chart(figures, out_dir / "latest.png")
    except Exception as error:  # noqa: BLE001 -- the figures matter more than the chart
        log(f"chart failed: {error}")


def markdown(f: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str]] = []
    setup5 = (
        "5 fresh bench-* hosts (edge: router+auth+backup, redis+monitoring, api, worker-1/2), "
        "docker connection"
    )
    fl = f.get("floor")
    if fl:
        rows.append(
            (
                "Floor: apt-get of the roles' packages",
                f"{fl['apt_seconds']} s",
                "apt-get update && apt-get install " + " ".join(fl["apt_packages"]),
                "1 fresh host",
            )
        )
        rows.append(
            (
                "Floor: venv + pip from the wheelhouse (3 venvs)",
                f"{fl['pip_seconds']} s",
                "python3 -m venv; pip install --no-index --find-links WH",
                "same host",
            )
        )
    prov = f.get("provisioning", {})
    if "first" in prov:
        ratio = prov.get("first_to_floor_ratio")
        rows.append(
            (
                "First converge of the site",
                f"{prov['first']['seconds']} s"
                + (f" ({ratio}x floor, target <= 2x)" if ratio else ""),
                prov["first"]["command"],
                setup5,
            )
        )
    if "first_linear" in prov:
        first_linear = prov["first_linear"]
        rows.append(
            (
                "First converge of the site, plain linear (no Mitogen)",
                f"{first_linear['seconds']} s",
                first_linear["command"],
                setup5,
            )
        )
    for name, second in prov.get("second", {}).items():
        rows.append(
            (
                f"Second converge, {name}",
                f"{second['seconds']} s, changed={second['changed']}"
                + (" (target < 12 s)" if name.startswith("configured") else ""),
                second["command"],
                setup5,
            )
        )
    rows += throughput_rows(f.get("throughput", {}))
    for row in f.get("scale", []):
        rows.append(
            (
                f"First converge, {row['worker_hosts']} worker host(s)",
                f"{row['seconds']} s",
                row["command"],
                row.get("setup", ""),
            )
        )
    lines = [
        f"Run {f['started_at']} on {f['machine']['cpus']} CPUs; load average at start "
        f"{f['machine']['load_average_start']}, at end {f['machine'].get('load_average_end')} "
        "(the machine is shared with other test runs). Whole run: "
        f"{f.get('duration_seconds')} s.",
    ]
    release = f.get("debian_release")
    if release:
        version = DEBIAN_VERSIONS.get(release)
        lines.append(
            f"Hosts: Debian {version} ({release})" if version else f"Hosts: Debian {release}"
        )
        lines[-1] += f", image `{f['host_image']}` ({f['host_image_id'][:19]})."
    lines += [
        "",
        "| figure | value | command | host set-up |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | `{c}` | {d} |" for a, b, c, d in rows]
    lines += by_role_table(prov)
    if f.get("errors"):
        lines += ["", "Errors: " + "; ".join(f["errors"])]
    if f.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(f["skipped"])]
    return "\n".join(lines) + "\n"


def by_role_table(prov: dict[str, Any]) -> list[str]:
    """Seconds and tasks per role in the first and second converge as configured."""
    first = prov.get("first", {}).get("by_role")
    second = prov.get("second", {}).get("configured", {}).get("by_role")
    if not first:
        return []
    second_by_role = {e["role"]: e for e in second or []}
    lines = [
        "",
        "Time per role (the sum of its tasks' times from profile_tasks; a task's time is",
        "until the last host finished it):",
        "",
        "| role | first converge | second converge |",
        "|---|---|---|",
    ]
    for entry in first:
        again = second_by_role.get(entry["role"])
        lines.append(
            f"| {entry['role']} | {entry['seconds']} s, {entry['tasks']} tasks | "
            + (f"{again['seconds']} s, {again['tasks']} tasks" if again else "")
            + " |"
        )
    return lines


def throughput_rows(t: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The rows of the throughput parts that ran (each part adds its own keys)."""
    rows: list[tuple[str, str, str, str]] = []
    if "hello_rps" in t:
        setup = (
            f"bench-api, gunicorn {t['gunicorn_workers']} gthread workers, "
            f"wrk with {t['clients']} connections from here, loyalty workers paused"
        )
        rows += [
            ("Bare Bottle app, POST", f"{t['hello_rps']} req/s", t["http_command"], setup),
            (
                "Transaction API, POST /transactions (token reused)",
                f"{t['transactions_rps']} req/s, ratio {t['ratio']} (target >= 0.5)",
                t["http_command"],
                setup,
            ),
            (
                "Transaction API, new token per request",
                f"{t['transactions_fresh_token_rps']} req/s, ratio {t['ratio_fresh_token']}",
                t["http_command"],
                setup,
            ),
        ]
    if "router_transactions_rps" in t:
        rows.append(
            (
                "Transaction API through the router",
                f"{t['router_transactions_rps']} req/s",
                t.get("router_command", "same load to bench-edge:80/transactions/transactions"),
                "router on bench-edge, loyalty workers paused",
            )
        )
    for count, w in t.get("workers", {}).items():
        rows.append(
            (
                f"Loyalty workers x{count}",
                f"{w['tps']} tx/s ({w['awarded']}/{w['backlog']} awarded)",
                t["workers_command"],
                ", ".join(w["instances"]),
            )
        )
    if "stamp_p50_ms" in t:
        rows.append(
            (
                "202 -> award visible (p50 / p99)",
                f"{t['stamp_p50_ms']} / {t['stamp_p99_ms']} ms",
                t["stamp_command"],
                "2 worker hosts x 2 instances",
            )
        )
    return rows


def chart(f: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5))
    ax = axes[0]
    labels, values = [], []
    if f.get("floor"):
        labels.append("floor (apt+pip)")
        values.append(f["floor"]["seconds"])
    prov = f.get("provisioning", {})
    if "first_linear" in prov:
        labels.append("first (linear)")
        values.append(prov["first_linear"]["seconds"])
    if "first" in prov:
        labels.append("first")
        values.append(prov["first"]["seconds"])
    for name, second in prov.get("second", {}).items():
        labels.append("2nd: " + name)
        values.append(second["seconds"])
    colors = ["grey" if label.startswith("floor") else "tab:blue" for label in labels]
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(values)), labels, fontsize=7, rotation=40, ha="right")
    ax.axhline(20, color="red", linestyle=":", linewidth=1)
    ax.set_ylabel("seconds")
    ax.set_title("Provisioning, 5 hosts")
    ax = axes[1]
    scale = sorted(f.get("scale", []), key=lambda r: r["worker_hosts"])
    if scale:
        ax.plot([r["worker_hosts"] for r in scale], [r["seconds"] for r in scale], "o-")
        for r in scale:
            ax.annotate(f"{r['seconds']:.0f} s", (r["worker_hosts"], r["seconds"]), fontsize=8)
    ax.set_xlabel("worker hosts (+ edge, redis, api)")
    ax.set_ylabel("first converge, seconds")
    ax.set_title("Scale: provisioning time")
    ax = axes[2]
    t = f.get("throughput", {})
    bars = [
        ("bare\nBottle", t.get("hello_rps"), "grey"),
        ("POST\n/transactions", t.get("transactions_rps"), "tab:green"),
        ("new token\neach", t.get("transactions_fresh_token_rps"), "tab:green"),
        ("via\nrouter", t.get("router_transactions_rps"), "tab:green"),
    ]
    bars += [(f"workers\nx{n}", w["tps"], "tab:orange") for n, w in t.get("workers", {}).items()]
    bars = [bar for bar in bars if bar[1] is not None]
    if bars:
        ax.bar(range(len(bars)), [b[1] for b in bars], color=[b[2] for b in bars])
        ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=7)
        ax.set_ylabel("per second")
    title = "Throughput (HTTP load from wrk)"
    if "stamp_p50_ms" in t:
        title += f", 202->award p50 {t['stamp_p50_ms']} ms, p99 {t['stamp_p99_ms']} ms"
    ax.set_title(title, fontsize=9)
    hosts = f" on {f['debian_release']} hosts" if f.get("debian_release") else ""
    fig.suptitle(
        f"bench/run {f['started_at']}{hosts}, "
        f"load average at start {f['machine']['load_average_start'][0]}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
