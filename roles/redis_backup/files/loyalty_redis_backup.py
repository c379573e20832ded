#!/usr/bin/python3
"""Backups of the loyalty platform's Redis data (installed by the role redis_backup).

  take           on a Redis host: when it is the primary, copy its AOF directory
                 with rewrites paused, load the copy into a throwaway
                 redis-server (unix socket only), and store it when it loads
                 (on the backup target over SSH, or locally without one);
                 on a replica, do nothing
  receive        on the backup target (the SSH forced command): store one
                 backup read as a tar stream from standard input
  list           the stored backups' metadata as JSON, newest first
  verify FILE    load a backup archive into a throwaway redis-server; print its keys
  install FILE   (root, redis-server stopped) put the archive's AOF directory
                 in place of the current one, which is kept beside it

Settings come from /etc/loyalty-redis-backup/config.json (written by the role).
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

CONFIG_FILE = Path(
    os.environ.get("LOYALTY_REDIS_BACKUP_CONFIG", "/etc/loyalty-redis-backup/config.json")
)
NAME = re.compile(r"^loyalty-redis-\d{8}T\d{6}Z$")
AOF_DIR = "appendonlydir"


class Failure(Exception):
    """One line for the journal, then exit status 1."""


def config() -> dict[str, Any]:
    try:
        return json.loads(CONFIG_FILE.read_text())
    except (OSError, ValueError) as error:
        raise Failure(f"cannot read {CONFIG_FILE}: {error}") from None


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# --- Redis ----------------------------------------------------------------------


def redis_cli(cfg: dict[str, Any], *args: str, timeout: float = 30) -> str:
    """One command to the local redis-server over TLS as the admin user."""
    tls = cfg["tls_dir"]
    env = dict(os.environ, REDISCLI_AUTH=Path(cfg["password_file"]).read_text().strip())
    command = [
        "redis-cli", "--tls", "--cacert", f"{tls}/ca.pem", "--cert", f"{tls}/certificate.pem",
        "--key", f"{tls}/private-key.pem", "-h", cfg["redis_address"], "-p",
        str(cfg["redis_port"]), "--no-auth-warning", *args,
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    out = result.stdout.strip()
    if result.returncode != 0 or out.startswith(("ERR", "NOAUTH", "WRONGPASS", "NOPERM")):
        raise Failure(f"redis-cli {args[0]} failed: {out or result.stderr.strip()}")
    return out


def info(cfg: dict[str, Any], section: str) -> dict[str, str]:
    lines = redis_cli(cfg, "INFO", section).splitlines()
    return dict(line.strip().split(":", 1) for line in lines if ":" in line)


def copy_aof_directory(cfg: dict[str, Any], dest: Path) -> dict[str, str]:
    """The AOF directory, copied while no rewrite can replace its files
    (Redis's documented way to back up AOF persistence from 7.0 on);
    returns the replication and server facts of that moment."""
    before = redis_cli(cfg, "CONFIG", "GET", "auto-aof-rewrite-percentage").splitlines()[-1]
    redis_cli(cfg, "CONFIG", "SET", "auto-aof-rewrite-percentage", "0")
    try:
        deadline = time.monotonic() + cfg["rewrite_wait_seconds"]
        while True:
            persistence = info(cfg, "persistence")
            busy = persistence.get("aof_rewrite_in_progress") != "0"
            if not busy and persistence.get("aof_rewrite_scheduled") == "0":
                break
            if time.monotonic() > deadline:
                raise Failure("an AOF rewrite is still running; try again later")
            time.sleep(0.5)
        if persistence.get("aof_enabled") != "1":
            raise Failure("redis-server does not use append-only persistence (appendonly no)")
        facts = info(cfg, "replication") | info(cfg, "server")
        facts["dbsize"] = redis_cli(cfg, "DBSIZE")
        source = Path(cfg["data_dir"]) / AOF_DIR
        # The manifest first: it names the files, which rewrites cannot
        # change now; the last file only grows (a partial last command is
        # what aof-load-truncated accepts).
        dest.mkdir()
        manifest = next(source.glob("*.manifest"))
        shutil.copy2(manifest, dest / manifest.name)
        for path in sorted(source.iterdir()):
            if path.is_file() and path != manifest:
                shutil.copy2(path, dest / path.name)
    finally:
        redis_cli(cfg, "CONFIG", "SET", "auto-aof-rewrite-percentage", before)
    return facts


def extract(tar: tarfile.TarFile, dest: Path, members: list[tarfile.TarInfo]) -> None:
    """Files and directories only, never outside `dest`."""
    for member in members:
        if member.name.startswith("/") or ".." in Path(member.name).parts:
            raise Failure(f"refused: unsafe member {member.name}")
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, members=members, filter="data")
    else:  # Python without extraction filters; the names were checked above
        tar.extractall(dest, members=members)


def verify(cfg: dict[str, Any], archive: Path) -> dict[str, Any]:
    """Load the archive into a throwaway redis-server (no TCP port, a unix
    socket in a private directory); its key count when it loads."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=cfg["work_dir"], prefix="verify-") as tmp:
        work = Path(tmp)
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
            for member in members:
                if not (member.name == AOF_DIR or member.name.startswith(AOF_DIR + "/")):
                    raise Failure(f"{archive.name}: unexpected member {member.name}")
            extract(tar, work, members)
        sock = work / "redis.sock"
        server = subprocess.Popen(
            [
                "redis-server", "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
                "--dir", str(work), "--appendonly", "yes", "--appenddirname", AOF_DIR,
                "--appendfilename", cfg["aof_file_name"], "--save", "", "--daemonize", "no",
                "--logfile", str(work / "redis.log"), "--aof-load-truncated", "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + cfg["verify_timeout_seconds"]
            while True:
                if server.poll() is not None:
                    tail = (work / "redis.log").read_text(errors="replace").splitlines()[-3:]
                    raise Failure(f"{archive.name} does not load: {' / '.join(tail)}")
                reply = subprocess.run(
                    ["redis-cli", "-s", str(sock), "PING"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout.strip()
                if reply == "PONG":
                    break
                if time.monotonic() > deadline:
                    raise Failure(
                        f"{archive.name} did not load within {cfg['verify_timeout_seconds']} s"
                    )
                time.sleep(0.2)
            keys = subprocess.run(
                ["redis-cli", "-s", str(sock), "DBSIZE"], capture_output=True, text=True, timeout=60
            ).stdout.strip()
            subprocess.run(
                ["redis-cli", "-s", str(sock), "SHUTDOWN", "NOSAVE"],
                capture_output=True,
                timeout=30,
            )
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    if not keys.isdigit():
        raise Failure(f"{archive.name}: DBSIZE answered {keys!r}")
    return {"keys": int(keys), "verify_seconds": round(time.monotonic() - started, 2)}


# --- The store: where good backups are kept, with retention --------------------


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stored(store: Path) -> list[dict[str, Any]]:
    """Metadata of every complete backup in the store, newest first."""
    backups = []
    for path in store.glob("loyalty-redis-*.json"):
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if NAME.match(meta.get("name", "")) and (store / meta["file"]).is_file():
            backups.append(meta)
    return sorted(backups, key=lambda m: m["created_epoch"], reverse=True)


def prune(store: Path, keep_hourly: int, keep_daily: int) -> list[str]:
    """Keep the `keep_hourly` newest backups (one an hour from the timer)
    and the newest of each of the last `keep_daily` days that have one;
    remove the rest."""
    backups = stored(store)
    keep = {meta["name"] for meta in backups[:keep_hourly]}
    days: set[str] = set()
    for meta in backups:
        day = meta["created"][:10]
        if day not in days and len(days) < keep_daily:
            days.add(day)
            keep.add(meta["name"])
    removed = []
    for meta in backups:
        if meta["name"] not in keep:
            (store / meta["file"]).unlink(missing_ok=True)
            (store / f"{meta['name']}.json").unlink(missing_ok=True)
            removed.append(meta["name"])
    return removed


def write_textfile(cfg: dict[str, Any], store: Path) -> None:
    """The last good backup's time (and age when written) for node exporter's
    textfile collector; alert on time() - ..._last_good_timestamp_seconds."""
    backups = [m for m in stored(store) if m.get("verified")]
    last = backups[0] if backups else None
    stamp = last["created_epoch"] if last else 0
    metrics = [
        (
            "last_good_timestamp_seconds",
            "Time the newest verified backup was taken (0: none).",
            stamp,
        ),
        (
            "last_good_age_seconds",
            "Age of the newest verified backup when this file was written (-1: none).",
            round(time.time() - stamp) if last else -1,
        ),
        (
            "last_good_keys",
            "Keys the newest verified backup loaded with.",
            last["keys"] if last else 0,
        ),
        (
            "last_good_size_bytes",
            "Size of the newest verified backup.",
            last["size_bytes"] if last else 0,
        ),
        ("stored", "Verified backups kept.", len(backups)),
    ]
    lines = []
    for name, text, value in metrics:
        metric = f"loyalty_redis_backup_{name}"
        lines += [f"# HELP {metric} {text}", f"# TYPE {metric} gauge", f"{metric} {value}"]
    target = Path(cfg["textfile"])
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.tmp")
    partial.write_text("\n".join(lines) + "\n")
    partial.chmod(0o644)
    partial.replace(target)


def store_backup(cfg: dict[str, Any], meta: dict[str, Any], archive: Path) -> None:
    """Move a checked archive and its metadata into the store, then prune."""
    store = Path(cfg["store_dir"])
    if sha256(archive) != meta["sha256"]:
        raise Failure(f"{meta['name']}: checksum mismatch, not stored")
    # Another file system possibly (the working directory): moved under a
    # temporary name first, renamed in place once complete.
    partial = store / f".{meta['file']}.tmp"
    shutil.move(archive, partial)
    partial.replace(store / meta["file"])
    metadata = store / f".{meta['name']}.json.tmp"
    metadata.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    metadata.replace(store / f"{meta['name']}.json")
    removed = prune(store, cfg["keep_hourly"], cfg["keep_daily"])
    write_textfile(cfg, store)
    size = meta["size_bytes"]
    print(f"stored {meta['name']} ({meta['keys']} keys, {size} bytes); removed {removed or 'none'}")


def check_meta(meta: dict[str, Any]) -> None:
    if not NAME.match(str(meta.get("name", ""))) or meta.get("file") != f"{meta['name']}.tar.gz":
        raise Failure(f"refused: bad backup name in metadata {str(meta)[:80]}")
    if meta.get("verified") is not True:
        raise Failure(f"refused: {meta['name']} was not verified")


# --- Commands ---------------------------------------------------------------------


def sentinels_primary(cfg: dict[str, Any]) -> str | None:
    """The address most Sentinels name as the primary (None: no majority)."""
    sentinel = cfg["sentinel"]
    tls = cfg["tls_dir"]
    password = Path(sentinel["password_file"]).read_text().strip()
    named: list[str] = []
    for address in sentinel["addresses"]:
        result = subprocess.run(
            [
                "redis-cli", "--tls", "--cacert", f"{tls}/ca.pem", "--cert",
                f"{tls}/certificate.pem", "--key", f"{tls}/private-key.pem", "-h", address,
                "-p", str(sentinel["port"]), "--no-auth-warning",
                "SENTINEL", "get-master-addr-by-name", sentinel["master_name"],
            ],
            env=dict(os.environ, REDISCLI_AUTH=password),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )  # fmt: skip
        lines = result.stdout.split()
        if result.returncode == 0 and len(lines) == 2:
            named.append(lines[0])
    for address in set(named):
        if named.count(address) * 2 > len(sentinel["addresses"]):
            return address
    return None


def take(cfg: dict[str, Any]) -> int:
    role = redis_cli(cfg, "ROLE").splitlines()[0]
    if role != "master":
        print(f"this Redis is a {role}, not the primary: no backup taken here")
        return 0
    # A former primary that starts again answers "master" until the
    # Sentinels make it a replica: its data is stale. Only the host that
    # most Sentinels name takes the backup.
    if cfg.get("sentinel"):
        primary = sentinels_primary(cfg)
        if primary != cfg["private_address"]:
            named = primary or "no agreed primary"
            print(f"the Sentinels name {named}, not this host: no backup taken here")
            return 0
    created = now_utc().replace(microsecond=0)
    name = "loyalty-redis-" + created.strftime("%Y%m%dT%H%M%SZ")
    work = Path(cfg["work_dir"])
    with tempfile.TemporaryDirectory(dir=work, prefix="take-") as tmp:
        staging = Path(tmp)
        started = time.monotonic()
        facts = copy_aof_directory(cfg, staging / AOF_DIR)
        copy_seconds = round(time.monotonic() - started, 2)
        archive = staging / f"{name}.tar.gz"
        with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
            tar.add(staging / AOF_DIR, arcname=AOF_DIR)
        shutil.rmtree(staging / AOF_DIR)
        checked = verify(cfg, archive)
        meta = {
            "name": name,
            "file": archive.name,
            "format": "redis-aof-directory",
            "created": created.isoformat().replace("+00:00", "Z"),
            "created_epoch": int(created.timestamp()),
            "primary": cfg["host"],
            "primary_address": cfg["private_address"],
            "replication_id": facts.get("master_replid", ""),
            "replication_offset": int(facts.get("master_repl_offset", "0")),
            "redis_version": facts.get("redis_version", ""),
            "os_release": os_codename(),
            "primary_keys": int(facts["dbsize"]),
            "keys": checked["keys"],
            "verified": True,
            "verify_seconds": checked["verify_seconds"],
            "copy_seconds": copy_seconds,
            "size_bytes": archive.stat().st_size,
            "sha256": sha256(archive),
        }
        if cfg.get("target"):
            send(cfg, meta, archive)
        else:
            store_backup(cfg, meta, archive)
    return 0


def os_codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip()
    return ""


def send(cfg: dict[str, Any], meta: dict[str, Any], archive: Path) -> None:
    """To the backup target over SSH as one tar stream: metadata, then archive."""
    target = cfg["target"]
    payload = json.dumps(meta).encode()
    command = [
        "ssh", "-F", "/dev/null", "-i", cfg["ssh_key"], "-p", str(target["port"]),
        "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={cfg['known_hosts']}", "-o", "ConnectTimeout=15",
        f"{target['user']}@{target['address']}", "receive",
    ]  # fmt: skip
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as ssh:
        assert ssh.stdin is not None
        with tarfile.open(fileobj=ssh.stdin, mode="w|") as tar:
            info_ = tarfile.TarInfo(f"{meta['name']}.json")
            info_.size = len(payload)
            tar.addfile(info_, io.BytesIO(payload))
            tar.add(archive, arcname=archive.name)
        ssh.stdin.close()
        out = ssh.stdout.read().decode(errors="replace").strip() if ssh.stdout else ""
        err = ssh.stderr.read().decode(errors="replace").strip() if ssh.stderr else ""
        if ssh.wait(timeout=cfg["send_timeout_seconds"]) != 0:
            raise Failure(f"copy to {target['address']} failed: {err or out}")
    print(f"{out} on {target['address']}")


def receive(cfg: dict[str, Any]) -> int:
    store = Path(cfg["store_dir"])
    with tempfile.TemporaryDirectory(dir=store, prefix=".receive-") as tmp:
        work = Path(tmp)
        meta: dict[str, Any] | None = None
        archive: Path | None = None
        with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tar:
            for member in tar:
                if not member.isfile() or "/" in member.name:
                    raise Failure(f"refused: unexpected member {member.name}")
                handle = tar.extractfile(member)
                assert handle is not None
                if member.name.endswith(".json") and meta is None:
                    meta = json.loads(handle.read(1 << 16))
                    check_meta(meta)
                elif meta is not None and member.name == meta["file"] and archive is None:
                    archive = work / member.name
                    with archive.open("wb") as out:
                        shutil.copyfileobj(handle, out)
                else:
                    raise Failure(f"refused: unexpected member {member.name}")
        if meta is None or archive is None:
            raise Failure("refused: incomplete backup")
        store_backup(cfg, meta, archive)
    return 0


def listing(cfg: dict[str, Any]) -> int:
    print(json.dumps(stored(Path(cfg["store_dir"]))))
    return 0


def install(cfg: dict[str, Any], archive: Path) -> int:
    """Replace the AOF directory with the archive's; redis-server must be stopped."""
    data = Path(cfg["data_dir"])
    pid = subprocess.run(
        ["systemctl", "show", "--property=MainPID", "--value", "redis-server.service"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    if pid not in ("", "0"):
        raise Failure("redis-server is running: stop it before installing a backup")
    incoming = Path(tempfile.mkdtemp(dir=data, prefix=".restore-"))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            extract(tar, incoming, [m for m in tar.getmembers() if m.isfile() or m.isdir()])
        if not (incoming / AOF_DIR).is_dir():
            raise Failure(f"{archive.name} holds no {AOF_DIR}")
        for path in [incoming / AOF_DIR, *(incoming / AOF_DIR).iterdir()]:
            shutil.chown(path, "redis", "redis")
            path.chmod(0o750 if path.is_dir() else 0o640)
        stamp = now_utc().strftime("%Y%m%dT%H%M%SZ")
        # One replaced copy is kept (the newest); older ones go.
        for old in data.glob(f"{AOF_DIR}.replaced-*"):
            shutil.rmtree(old)
        current = data / AOF_DIR
        if current.exists():
            current.rename(data / f"{AOF_DIR}.replaced-{stamp}")
        # With AOF on, redis-server ignores dump.rdb; an old one would only
        # mislead whoever looks later.
        (data / "dump.rdb").unlink(missing_ok=True)
        (incoming / AOF_DIR).rename(current)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    print(f"installed {archive.name} into {data / AOF_DIR}")
    return 0


def main(argv: list[str]) -> int:
    os.umask(0o027)
    # Through SSH's forced command the words the client sent are in
    # SSH_ORIGINAL_COMMAND; only "receive" and "list" are allowed there.
    if os.environ.get("SSH_ORIGINAL_COMMAND") is not None:
        argv = os.environ["SSH_ORIGINAL_COMMAND"].split()[:1]
        if argv not in (["receive"], ["list"]):
            raise Failure("only receive and list are allowed over SSH")
    cfg = config()
    match argv:
        case ["take"]:
            return take(cfg)
        case ["receive"]:
            return receive(cfg)
        case ["list"]:
            return listing(cfg)
        case ["verify", path]:
            print(json.dumps(verify(cfg, Path(path))))
            return 0
        case ["install", path]:
            return install(cfg, Path(path))
    raise Failure(__doc__.strip().split("\n\n")[1] if __doc__ else "usage")


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Failure as failure:
        print(f"loyalty-redis-backup: {failure}", file=sys.stderr)
        sys.exit(1)
    except (OSError, subprocess.SubprocessError, tarfile.TarError, ValueError, KeyError) as error:
        print(f"loyalty-redis-backup: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
